"""CycleGAN: the cycle loss, translation, the `genzoo translate` command, and that it learns."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from genzoo import api
from genzoo.cli.main import app
from genzoo.data import load_dataset
from genzoo.data.domains import domain_images
from genzoo.core.errors import GenzooError
from genzoo.train import Trainer, TrainConfig

TINY = {"width": 8, "blocks": 1, "disc_width": 8}


def tiny(**overrides):
    return api.build_model("cyclegan", load_dataset("digits2typed", "train"), overrides={**TINY, **overrides})


def test_cycle_loss_is_zero_for_identity_generators():
    model = tiny()
    a, b = torch.rand(4, 1, 8, 8) * 2 - 1, torch.rand(4, 1, 8, 8) * 2 - 1
    model.g_ab, model.g_ba = nn.Identity(), nn.Identity()
    terms = model.cycle_terms(a, b)
    assert terms["cycle"].item() == 0 and terms["identity"].item() == 0
    model.g_ab = _Scale(0.5)  # A -> B halves, B -> A keeps: a round trip no longer returns
    terms = model.cycle_terms(a, b)
    expected = (0.5 * a).sub(a).abs().mean() + (0.5 * b).sub(b).abs().mean()
    torch.testing.assert_close(terms["cycle"], expected)


class _Scale(nn.Module):
    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def test_identity_term_can_be_turned_off():
    assert "identity" not in tiny(lambda_identity=0.0).cycle_terms(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8))


def test_translate_checks_its_input():
    model = tiny().eval()
    x = load_dataset("digits", "test").x[:5]
    for side in ("A", "b"):
        out = model.translate(x, side)
        assert out.shape == x.shape and torch.equal(out, out.round()) and 0 <= out.min() and out.max() <= 16
    with pytest.raises(GenzooError, match="A or B"):
        model.translate(x, "C")
    with pytest.raises(GenzooError, match="shape"):
        model.translate(x.flatten(1), "A")
    with pytest.raises(GenzooError, match="levels"):
        model.translate(x + 0.5, "A")


def test_cyclegan_refuses_single_domain_data():
    with pytest.raises(GenzooError, match="domains"):
        api.build_model("cyclegan", load_dataset("digits", "train"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny CycleGAN trained for 60 steps, with its untrained twin (same seed)."""
    out = tmp_path_factory.mktemp("cyclegan") / "run"
    data = load_dataset("digits2typed", "train")
    untrained = tiny().eval()
    model = tiny()
    config = TrainConfig(steps=60, batch_size=32, lr=2e-3, betas=(0.5, 0.999), warmup_steps=0, schedule="constant",
                         grad_clip=None, ema_decay=None, val_every=0, progress=False, checkpoint_every=1000, log_every=20)
    Trainer(model, data, config, out_dir=out).fit()
    return model.eval(), untrained, out


def test_cyclegan_learns_round_trips(trained):
    """After 60 steps the round-trip error on test images is far below the untrained model's
    (measured: 2.4 against 6.4 levels per pixel from A, 2.8 against 7.8 from B)."""
    model, untrained, _ = trained
    test = load_dataset("digits2typed", "test")
    for side in ("A", "B"):
        x = domain_images(test, side)[0]
        before, after = untrained.cycle_error(x, side).mean(), model.cycle_error(x, side).mean()
        assert after < 0.5 * before, f"{side}: round-trip error {after:.2f} levels, untrained {before:.2f}"


def test_training_writes_translation_grids(trained):
    _, _, out = trained
    assert (out / "translate_A.png").stat().st_size > 0 and (out / "translate_B.png").stat().st_size > 0


def test_translate_command(trained, tmp_path):
    _, _, out = trained
    grid = tmp_path / "grid.png"
    result = CliRunner().invoke(app, ["translate", str(out), "--from", "A", "--n", "20", "-o", str(grid)])
    assert result.exit_code == 0, result.output
    assert grid.stat().st_size > 0 and "levels per pixel" in " ".join(result.output.split())
    from PIL import Image

    with Image.open(grid) as im:  # 2 groups of 3 rows (inputs, translations, round trips) of 16 tiles
        assert im.size == (16 * 9 * 4 + 4, 6 * 9 * 4 + 4)
    refused = CliRunner().invoke(app, ["translate", str(out), "--from", "Z", "-o", str(grid)])
    assert refused.exit_code == 2 and "A or B" in refused.output


def test_semantic_variant_reads_labels_and_the_default_never_does():
    from genzoo.models.base import Batch, BatchRandom

    data = load_dataset("digits2typed", "train")
    plain = tiny()
    assert plain.c_a is None and plain.config.lambda_class == 0
    semantic = api.build_model("cyclegan", data, "semantic", TINY)
    assert semantic.config.num_classes == 10 and semantic.c_b(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    x = data.x[:8]
    with pytest.raises(GenzooError, match="needs labels in both domains"):
        semantic._domain_labels(Batch(x, None, BatchRandom(0, 0, 8, 0)))
    with pytest.raises(GenzooError, match="num_classes"):
        semantic._domain_labels(Batch(x, torch.full((8, 2), 12), BatchRandom(0, 0, 8, 0)))
    with pytest.raises(GenzooError, match="lambda_class > 0 and num_classes > 0 together"):
        tiny(lambda_class=1.0)
    # the class term is the translated images' cross entropy under the other domain's classifier
    y = data.y[:8]
    a = semantic.to_unit(x[:, 0])
    expected = torch.nn.functional.cross_entropy(semantic.c_b(semantic.g_ab(a)), y[:, 0])
    assert expected.item() > 0 and torch.isfinite(expected)
