import numpy as np
import pytest
import torch
from PIL import Image

from genzoo.data import builtin_names, dequantize, from_signed_unit, load_dataset, to_signed_unit
from genzoo.core.errors import GenzooError


def test_digits_fixed_split_and_levels():
    sizes = {s: len(load_dataset("digits", s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 1000, "val": 350, "test": 447}
    train = load_dataset("digits", "train")
    assert train.shape == (1, 8, 8) and train.levels == 17 and train.num_classes == 10
    assert train.x.min() == 0 and train.x.max() == 16 and torch.equal(train.x, train.x.round())
    from sklearn.datasets import load_digits

    raw = load_digits()  # no shuffling: the test split is the last 447 images
    assert np.array_equal(load_dataset("digits", "test").x.numpy()[:, 0], raw.images[1350:])


def test_toy2d_sets_are_deterministic_and_disjoint():
    for name in [n for n in builtin_names() if n.startswith("toy2d")]:
        a, b = load_dataset(name, "test"), load_dataset(name, "test")
        assert a.x.shape == (10_000, 2) and torch.equal(a.x, b.x)
        assert not torch.equal(load_dataset(name, "train").x[:100], a.x[:100])
        assert a.x.abs().max() < 6


def test_level_maps_round_trip_and_dequantization_fills_bins():
    k = torch.arange(17.0)
    assert torch.equal(from_signed_unit(to_signed_unit(k, 17), 17), k)
    lo = dequantize(k, 17, torch.full((17,), 1e-4))
    hi = dequantize(k, 17, torch.full((17,), 0.9999))
    assert dequantize(k, 17, torch.zeros(17))[0] == -1 and hi[-1] < 1
    assert torch.equal(from_signed_unit(lo, 17), k) and torch.equal(from_signed_unit(hi, 17), k)


def _save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_image_folder_with_class_subfolders(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(30):
        _save(tmp_path / ("cat" if i % 2 else "dog") / f"{i}.png", rng.integers(0, 256, (6, 5), dtype=np.uint8))
    parts = [load_dataset(str(tmp_path), s) for s in ("train", "val", "test")]
    assert [len(p) for p in parts] == [24, 3, 3]
    train = parts[0]
    assert train.shape == (1, 6, 5) and train.levels == 256 and train.num_classes == 2
    assert train.meta["class_names"] == ["cat", "dog"]


def test_npy_and_npz(tmp_path):
    pts = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
    np.save(tmp_path / "pts.npy", pts)
    d = load_dataset(str(tmp_path / "pts.npy"), "train")
    assert d.kind == "points" and d.levels is None and len(d) == 40
    imgs = np.random.default_rng(0).integers(0, 4, size=(20, 3, 3)).astype(np.int64)
    np.savez(tmp_path / "imgs.npz", x=imgs, y=np.arange(20) % 2)
    d = load_dataset(str(tmp_path / "imgs.npz"), "train")
    assert d.kind == "image" and d.shape == (1, 3, 3) and d.levels == int(imgs.max()) + 1 and d.num_classes == 2


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: p.mkdir(), "no images"),
        (lambda p: (p.mkdir(), (p / "a.png").write_bytes(b"not an image")), "cannot read image"),
        (lambda p: (_save(p / "a.png", np.zeros((4, 4), np.uint8)), _save(p / "b.png", np.zeros((5, 4), np.uint8))), "different sizes"),
        (lambda p: None, "does not exist"),
    ],
    ids=["empty", "unreadable", "mixed-shapes", "missing"],
)
def test_bad_folders_give_clear_errors(tmp_path, setup, message):
    folder = tmp_path / "data"
    setup(folder)
    with pytest.raises(GenzooError, match=message):
        load_dataset(str(folder), "train")


def test_bad_arrays_give_clear_errors(tmp_path):
    np.save(tmp_path / "nan.npy", np.full((20, 2), np.nan))
    with pytest.raises(GenzooError, match="NaN"):
        load_dataset(str(tmp_path / "nan.npy"), "train")
    np.savez(tmp_path / "nox.npz", images=np.zeros((20, 2)))
    with pytest.raises(GenzooError, match="named 'x'"):
        load_dataset(str(tmp_path / "nox.npz"), "train")
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(GenzooError, match="cannot read"):
        load_dataset(str(tmp_path / "bad.npy"), "train")


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(GenzooError, match="valid datasets: digits"):
        load_dataset("mnist", "train")
    with pytest.raises(GenzooError, match="valid: 8gaussians"):
        load_dataset("toy2d:donut", "train")
    with pytest.raises(GenzooError, match="valid splits"):
        load_dataset("digits", "holdout")


def test_a_dataset_name_is_parsed_once_on_its_way_to_the_trainer(monkeypatch, tmp_path):
    """`genzoo train` resolves --data once (``genzoo.data.resolve``); every split loads from that."""
    import genzoo.data as data
    from genzoo import api

    calls = []
    real = data.resolve
    counted = lambda name: calls.append(name) or real(name)  # noqa: E731
    monkeypatch.setattr(data, "resolve", counted)  # load_dataset's way in
    monkeypatch.setattr(api, "resolve", counted)
    api.train("vae", "toy2d:moons", steps=1, out=tmp_path / "run", progress=False, val_every=1)
    assert calls == ["toy2d:moons"]
    with pytest.raises(GenzooError, match="unknown dataset 'mnist'"):
        data.resolve("mnist")
    with pytest.raises(GenzooError, match="apply to text data"):
        data.resolve("digits").train_tokenizer("bpe", 512)
