"""Conformance: every registered family, each variant and each data kind it declares, held to one contract.

A family added later gets every check here by registering (``@register`` in ``genzoo.family``):
it builds; one training step changes the weights; every parameter receives a gradient (a layer
kept in a plain list is caught); save then load gives identical outputs; the same seed gives the
same samples; exact resume; 2 processes equal 1 process at the same global batch; every declared
capability works and every undeclared one is refused with a clear error; ``log_prob`` is finite
where declared. Each check is a plain function, so ``test_the_suite_catches_broken_families``
can show that it fails on a family with the bug it looks for.

Models are the family's ``tiny_overrides`` (dropout kept on where the family has it), so the
whole module runs in about a minute on one core.
"""

from __future__ import annotations

import dataclasses

import functools
from dataclasses import dataclass

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from genzoo import api
from genzoo.data import load_dataset
from genzoo.core.errors import GenzooError
from genzoo.family import FAMILIES, register
from genzoo.models.base import (
    CAPABILITIES,
    CLASSIFY,
    COMPLETE,
    EMBED,
    INFILL,
    INTERPOLATE,
    LABEL_CONDITION,
    LOG_PROB,
    SAMPLE,
    SCORE,
    SEQ2SEQ,
    TEXT_CONDITION,
    TRANSLATE,
    GenerativeModel,
    ModelConfig,
)
from genzoo.registry import families, get_family
from genzoo.train import Trainer, TrainConfig, distributed
from interrupt import crash_at

KIND_DATA = {"image": "digits", "points": "toy2d:moons", "tokens": "pydocs", "domains": "digits2typed", "pairs": "docsig"}  # a built-in dataset per data kind


KIND_DATA["table"] = "penguins"  # 344 rows: numbers, categories, missing values
AUDIO_SAMPLES = 1024
KIND_DATA["audio"] = "spoken-digits"  # mu-law clips, 1 s at 8 kHz (built once, cached)
KIND_DATA["image+text"] = "captioned-digits"  # captioned images, for a family that refuses plain ones (clip)


def _data_key(info, variant: str, kind: str) -> str:
    """The KIND_DATA key a case runs on: its kind, or ``kind+text`` where the family refuses the
    kind's dataset (clip needs captions) and a captioned one exists."""
    if f"{kind}+text" not in KIND_DATA:
        return kind
    try:
        info.model_class.default_config(load_dataset(KIND_DATA[kind]).spec(), variant)
        return kind
    except GenzooError:
        return f"{kind}+text"


def _cases() -> list:
    out = []
    for name, info in sorted(families().items()):
        if name.startswith("test-"):
            continue
        for variant in info.variants:
            for kind in info.kinds_of(variant):  # a variant may handle fewer kinds (labelled images only)
                key = _data_key(info, variant, kind)
                out.append(pytest.param(name, variant, key, id=f"{name}-{variant}-{key}"))
    return out


CASES = _cases()


@functools.lru_cache(maxsize=None)
def dataset(kind: str, split: str = "train"):
    if kind not in KIND_DATA:
        pytest.fail(f"no conformance data for data kind {kind!r}: add a small built-in dataset to KIND_DATA")
    data = load_dataset(KIND_DATA[kind], split)
    if kind == "audio":  # the contract, not the sound: 1/8 s clips (full 1 s clips made the 40 audio cases take 200 s)
        data = dataclasses.replace(data, x=data.x[..., :AUDIO_SAMPLES].contiguous())
    return data


def examples(model: GenerativeModel, kind: str, split: str = "test", n: int = 8) -> torch.Tensor:
    """``n`` examples of the split as the model sees them (a token stream: its windows)."""
    return model.prepare_data(dataset(kind, split)).eval_examples()[0][:n]


def check_sample_shape(model: GenerativeModel, x: torch.Tensor, n: int, kind: str) -> None:
    data = dataset(kind)
    if kind == "tokens":  # token ids of the model's vocabulary, as many rows as asked
        assert x.ndim == 2 and len(x) == n and x.dtype == torch.long
        assert x.min() >= 0 and x.max() < data.meta["vocab_size"]
        return
    assert x.shape == (n, *data.shape) and torch.isfinite(x).all()
    if data.levels:
        assert torch.equal(x, x.round()) and x.min() >= 0 and x.max() <= data.levels - 1


def build(family: str, variant: str, kind: str, seed: int = 0) -> GenerativeModel:
    data = dataset(kind)
    overrides = get_family(family).model_class.tiny_overrides(data.spec())
    return api.build_model(family, data, variant, overrides, seed)


def train_config(**changes) -> TrainConfig:
    base = dict(steps=3, batch_size=16, lr=1e-3, warmup_steps=1, ema_decay=0.9, val_every=0, progress=False,
                checkpoint_every=1000, log_every=1, num_samples=4, seed=0)
    return TrainConfig(**{**base, **changes})


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(a: dict, b: dict, exact: bool = True) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if exact:
            assert torch.equal(a[k], b[k]), f"{k} differs"
        else:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)


def draw(model: GenerativeModel, n: int = 6, seed: int = 0, **options) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return model.sample(n, generator=g, **options)


# ---- the checks ------------------------------------------------------------


def check_builds(family, variant, kind):
    model = build(family, variant, kind)
    info = get_family(family)
    assert isinstance(model, GenerativeModel) and model.family == family
    assert model.config.variant == variant
    assert model.capabilities <= CAPABILITIES, f"unknown capabilities {set(model.capabilities) - CAPABILITIES}"
    assert kind.removesuffix("+text") in info.data_kinds
    # a family fitted in one pass from counts (privbayes) holds its fit in buffers, not parameters
    assert model.num_parameters() > 0 or (getattr(model, "fits_once", False) and any(b.numel() for b in model.buffers()))
    assert (model.likelihood in ("exact", "bound")) == (LOG_PROB in model.capabilities), "likelihood kind and capability disagree"


_TORCH_INTERNALS = set(vars(nn.Module()))  # _modules, _parameters, _buffers, hooks: torch's own registries


def check_modules_are_registered(family, variant, kind):
    """A layer kept in a plain list, tuple or dict is never trained, moved or saved."""
    model = build(family, variant, kind)
    for owner_name, owner in model.named_modules():
        for attr, value in vars(owner).items():
            if attr in _TORCH_INTERNALS:
                continue
            items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple, set)) else ()
            for item in items:
                assert not isinstance(item, (nn.Module, nn.Parameter)), (
                    f"{owner_name or type(model).__name__}.{attr} keeps a {type(item).__name__} in a plain "
                    f"{type(value).__name__}: use nn.ModuleList / nn.ModuleDict / nn.ParameterList")


def check_training_step_changes_weights(family, variant, kind):
    model = build(family, variant, kind)
    before = state(model)
    summary = Trainer(model, dataset(kind), train_config(steps=1, ema_decay=None)).fit()
    assert all(torch.isfinite(torch.tensor(v)) for v in summary["final"].values() if isinstance(v, float))
    changed = [k for k, v in state(model).items() if not torch.equal(v, before[k])]
    assert changed, "one training step changed no weight"


def check_every_parameter_gets_a_gradient(family, variant, kind):
    """Over a few steps (a zero-initialised output layer blocks the gradient of the layers before it
    at the first step only), every parameter gets a non-zero gradient."""
    model = build(family, variant, kind)
    if getattr(model, "fits_once", False):
        assert model.num_parameters() == 0 and not model.configure_optimizers(1e-3, 0.0), "a fits_once family has nothing to step"
        return
    trainer = Trainer(model, dataset(kind), train_config(steps=3, ema_decay=None))
    reached: set[str] = set()
    names = {id(p): n for n, p in model.named_parameters()}
    original = trainer.updater.step

    def spy(name, loss):
        original(name, loss)
        reached.update(names[id(p)] for p in trainer.updater.params(name) if p.grad is not None and p.grad.abs().sum() > 0)

    trainer.updater.step = spy
    trainer.fit()
    missing = sorted(set(names.values()) - reached)
    assert not missing, f"parameters that never received a gradient: {missing[:10]}"
    in_optimizers = {id(p) for name in trainer.optimizers for p in trainer.updater.params(name)}
    assert in_optimizers == {id(p) for p in model.parameters() if p.requires_grad}, "a parameter is in no optimizer"


def check_save_then_load(family, variant, kind, tmp_path):
    model = build(family, variant, kind)
    Trainer(model, dataset(kind), train_config(steps=1, ema_decay=None)).fit()
    model.eval()
    model.save_pretrained(tmp_path / "ckpt")
    torch.manual_seed(12345)  # a different global RNG: loading must not depend on it
    loaded = GenerativeModel.from_pretrained(tmp_path / "ckpt")
    assert type(loaded) is type(model) and loaded.config == model.config
    assert_same_state(state(model), state(loaded))
    if SAMPLE in model.capabilities:
        assert torch.equal(draw(model), draw(loaded))
    if LOG_PROB in model.capabilities:
        x = examples(model, kind)
        torch.testing.assert_close(model.log_prob(x), loaded.log_prob(x), rtol=0, atol=0, equal_nan=True)
    if CLASSIFY in model.capabilities:
        x = examples(model, kind)
        assert torch.equal(model.predict_proba(x), loaded.predict_proba(x))
    if SCORE in model.capabilities:
        x = examples(model, kind)
        assert torch.equal(model.score(x, ["a handwritten seven", "the digit 3"]), loaded.score(x, ["a handwritten seven", "the digit 3"]))
    if SEQ2SEQ in model.capabilities:  # the tokenizer travels with the weights
        assert model.generate_text(["def f(x):"], max_new_tokens=4) == loaded.generate_text(["def f(x):"], max_new_tokens=4)


def check_same_seed_same_samples(family, variant, kind):
    model = build(family, variant, kind).eval()
    if SAMPLE not in model.capabilities:
        pytest.skip("cannot sample")
    torch.manual_seed(1)
    a = draw(model, seed=7)
    torch.manual_seed(2)  # the global RNG must not matter: the generator decides
    assert torch.equal(a, draw(model, seed=7))
    assert not torch.equal(a, draw(model, seed=8)), "a different seed gave the same samples"
    again = build(family, variant, kind).eval()  # the same seed builds the same weights
    assert_same_state(state(model), state(again))


def check_exact_resume(family, variant, kind, tmp_path):
    cfg = train_config(steps=6, checkpoint_every=2)
    straight = build(family, variant, kind)
    Trainer(straight, dataset(kind), cfg, out_dir=tmp_path / "straight").fit()
    if getattr(straight, "fits_once", False):  # one pass, nothing to crash in the middle of: resuming a fitted run changes nothing
        fresh = api.train(family, KIND_DATA[kind], out=tmp_path / "straight", resume=True, progress=False)[0]
        assert_same_state(state(straight), state(fresh))
        assert fresh.config == straight.config
        return

    model = build(family, variant, kind)
    crash_at(model, 5)
    with pytest.raises(KeyboardInterrupt):
        Trainer(model, dataset(kind), cfg, out_dir=tmp_path / "resumed").fit()
    torch.manual_seed(999)  # a stranger's global RNG: everything must come from the checkpoint
    fresh = build(family, variant, kind, seed=123)
    Trainer(fresh, dataset(kind), cfg, out_dir=tmp_path / "resumed").fit(resume=True)
    assert_same_state(state(straight), state(fresh))
    assert_same_state(state(api.load(tmp_path / "straight" / "checkpoint")), state(api.load(tmp_path / "resumed" / "checkpoint")))


def check_capabilities(family, variant, kind):
    """Each declared capability works; each undeclared one is refused with a GenzooError."""
    model = build(family, variant, kind).eval()
    test = examples(model, kind)
    caps = model.capabilities

    def refused(call):
        with pytest.raises(GenzooError):
            call()

    if SAMPLE in caps:
        check_sample_shape(model, draw(model, 4), 4, kind)
    else:
        refused(lambda: model.sample(2))
    if LOG_PROB in caps:
        lp = model.log_prob(test[:8])
        assert lp.shape == (8,) and torch.isfinite(lp).all(), f"log_prob not finite: {lp}"
    else:
        refused(lambda: model.log_prob(test[:2]))
    if SAMPLE in caps:
        if LABEL_CONDITION in caps and getattr(model.config, "num_classes", 0):
            check_sample_shape(model, draw(model, 4, condition=1), 4, kind)
            refused(lambda: model.sample(2, condition=model.config.num_classes))  # an unknown class
        else:
            refused(lambda: model.sample(2, condition=1))
        if TEXT_CONDITION in caps and getattr(model.config, "text_encoder", ""):
            check_sample_shape(model, draw(model, 4, condition="a handwritten seven"), 4, kind)
            refused(lambda: model.sample(2, condition=""))  # an empty prompt
        else:  # no text capability, or a model of a text-capable family built without a text encoder
            refused(lambda: model.sample(2, condition="a handwritten seven"))
    if COMPLETE in caps:
        mask = torch.zeros_like(test[:2], dtype=torch.bool)
        mask[..., : mask.shape[-2] // 2, :] = True
        label = 1 if getattr(model.config, "num_classes", 0) else None
        filled = model.complete(test[:2], mask, condition=label, generator=torch.Generator().manual_seed(0))
        assert filled.shape == test[:2].shape and torch.equal(filled[mask], test[:2][mask])
    else:
        refused(lambda: model.complete(test[:2], torch.ones_like(test[:2], dtype=torch.bool)))
    if INTERPOLATE in caps:
        path = model.interpolate(test[0], test[1], 4)
        assert path.shape == (4, *test.shape[1:]) and torch.isfinite(path).all()
    else:
        refused(lambda: model.interpolate(test[0], test[1], 4))
    if TRANSLATE in caps:  # two-domain data: each example is an (A, B) pair of images
        for side, col in (("A", 0), ("B", 1)):
            moved = model.translate(test[:3, col], side)
            assert moved.shape == test[:3, col].shape and torch.isfinite(moved).all()
            if dataset(kind).levels:
                assert torch.equal(moved, moved.round()) and moved.min() >= 0 and moved.max() <= dataset(kind).levels - 1
        refused(lambda: model.translate(test[:2, 0], "C"))  # no such domain
    else:
        refused(lambda: model.translate(test[:2], "A"))
    if SEQ2SEQ in caps:  # text in, text out: one string per input, the same again under greedy decoding
        texts = ["Return the sum of a and b.", "Close the file."]
        outputs = model.generate_text(texts, max_new_tokens=4)
        assert isinstance(outputs, list) and len(outputs) == 2 and all(isinstance(t, str) for t in outputs)
        assert outputs == model.generate_text(texts, max_new_tokens=4)
    else:
        refused(lambda: model.generate_text(["Close the file."]))
    if CLASSIFY in caps:  # class probabilities, one row per example; predict is their argmax
        probs = model.predict_proba(test[:4])
        assert probs.shape == (4, model.config.num_classes) and torch.allclose(probs.sum(1), torch.ones(4))
        assert torch.equal(model.predict(test[:4]), probs.argmax(1))
        refused(lambda: model.predict_proba(torch.full_like(test[:2], float("nan"))))
    else:
        refused(lambda: model.predict_proba(test[:2]))
    if SCORE in caps:  # example-text agreement: one finite score per (example, text)
        scores = model.score(test[:3], ["a handwritten seven", "the digit 3"])
        assert scores.shape == (3, 2) and torch.isfinite(scores).all()
        refused(lambda: model.score(test[:2], [""]))  # an empty text
    else:
        refused(lambda: model.score(test[:2], ["a handwritten seven"]))
    if INFILL in caps and getattr(model.config, "mlm_head", True):  # one candidate list per [MASK], best first
        (filled,) = model.fill(["the [MASK] of a file"], top_k=3)
        assert isinstance(filled["text"], str) and len(filled["masks"]) == 1 and len(filled["masks"][0]) == 3
        probs = [p for _, p in filled["masks"][0]]
        assert probs == sorted(probs, reverse=True) and all(0 <= p <= 1 for p in probs)
    else:
        refused(lambda: model.fill(["the [MASK] of a file"]))
    if EMBED in caps:  # one finite vector per text, the same text the same vector
        v = model.embed(["open a file", "close it", "open a file"])
        assert v.ndim == 2 and len(v) == 3 and torch.isfinite(v).all() and torch.allclose(v[0], v[2])
    else:
        refused(lambda: model.embed(["open a file"]))
    for cap in caps - {SAMPLE, LOG_PROB, LABEL_CONDITION, TEXT_CONDITION, COMPLETE, INTERPOLATE, TRANSLATE, SEQ2SEQ, CLASSIFY, SCORE,
                       INFILL, EMBED}:
        pytest.fail(f"no conformance check for capability {cap!r} yet: add one to check_capabilities")


def check_provenance(family, variant, kind, tmp_path):
    """Sampling hands back its manifest; regenerating from it is bit-identical."""
    from genzoo.runs import manifest as provenance

    model = build(family, variant, kind).eval()
    if SAMPLE not in model.capabilities:
        pytest.skip("cannot sample")
    model.save_pretrained(tmp_path / "ckpt")
    gen = provenance.generate(model, 4, seed=3, checkpoint=tmp_path / "ckpt")
    assert gen.manifest["family"] == family and gen.manifest["seed"] == 3 and gen.manifest["checkpoint_sha256"]
    assert provenance.reproduce(gen.manifest)["identical"]


CHECKS = [check_builds, check_modules_are_registered, check_training_step_changes_weights,
          check_every_parameter_gets_a_gradient, check_same_seed_same_samples, check_capabilities]
CHECKS_WITH_FILES = [check_save_then_load, check_exact_resume, check_provenance]


@pytest.mark.parametrize("family, variant, kind", CASES)
@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_family(check, family, variant, kind):
    check(family, variant, kind)


@pytest.mark.parametrize("family, variant, kind", CASES)
@pytest.mark.parametrize("check", CHECKS_WITH_FILES, ids=lambda c: c.__name__.removeprefix("check_"))
def test_family_on_disk(check, family, variant, kind, tmp_path):
    check(family, variant, kind, tmp_path)


def test_every_registered_family_is_covered():
    covered = {p.values[0] for p in CASES}
    registered = {n for n in families() if not n.startswith("test-")}
    assert covered == registered and {"vae", "diffusion", "pixelcnn", "gated-pixelcnn", "realnvp", "glow", "gpt"} <= covered
    print("conformance covers: " + ", ".join(sorted(covered)))


# ---- 2 processes = 1 process (one spawn for every case) --------------------

DDP_STEPS = 3


def with_sgd(model: GenerativeModel) -> GenerativeModel:
    """The family's own optimizers and parameter groups, stepped by plain SGD. Adam divides each
    gradient by its own magnitude, so a gradient that is zero up to rounding (an actnorm bias right
    after its data-dependent initialisation) gets a full-size step whose sign is the rounding's:
    1 and 2 processes then differ by ~lr for reasons that are not bugs. SGD keeps the comparison
    sensitive to every real difference (rows, noise, masks, averaging, clipping) and to nothing else."""
    own = model.configure_optimizers

    def configure(lr, weight_decay, betas=(0.9, 0.999)):
        return {name: torch.optim.SGD(opt.param_groups, lr=lr) for name, opt in own(lr, weight_decay, betas).items()}

    model.configure_optimizers = configure
    return model


def _ddp_worker(rank, world, init_file, out, cases):
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    results = {}
    for case in cases:
        model = with_sgd(build(*case))
        Trainer(model, dataset(case[2]), train_config(steps=DDP_STEPS, lr=1e-2)).fit()
        results[case] = state(model)
    if rank == 0:
        torch.save(results, out)
    distributed.shutdown()


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    cases = [tuple(p.values) for p in CASES if not _fits_once(p.values[0])]
    mp.spawn(_ddp_worker, args=(2, str(tmp / "init"), str(tmp / "ddp.pt"), cases), nprocs=2, join=True)
    return torch.load(tmp / "ddp.pt")


def _fits_once(family: str) -> bool:
    return bool(getattr(get_family(family).model_class, "fits_once", False))


@pytest.mark.parametrize("family, variant, kind", CASES)
def test_two_processes_equal_one(family, variant, kind, two_process_results):
    if _fits_once(family):
        pytest.skip(f"{family} fits in one pass on one process (the Trainer refuses 2)")
    single = with_sgd(build(family, variant, kind))
    Trainer(single, dataset(kind), train_config(steps=DDP_STEPS, lr=1e-2)).fit()
    assert_same_state(two_process_results[(family, variant, kind)], state(single), exact=False)


# ---- the suite catches broken families --------------------------------------


@dataclass
class BrokenConfig(ModelConfig):
    width: int = 16


class _BrokenBase(GenerativeModel):
    """A small working 2-D density model (a learned Gaussian through an MLP); subclasses break one thing."""

    config_class = BrokenConfig
    capabilities = frozenset({SAMPLE, LOG_PROB})
    likelihood = "exact"

    def __init__(self, config):
        super().__init__(config)
        self._bind_data_spec()
        self.net = nn.Sequential(nn.Linear(2, config.width), nn.Tanh(), nn.Linear(config.width, 2))
        self.log_std = nn.Parameter(torch.zeros(2))

    def transform(self, z):
        return self.net(z)

    def loss(self, batch):
        return -self.log_prob(batch.x).mean()

    def log_prob(self, x, **options):
        z = (x - self.transform(torch.ones_like(x))) * torch.exp(-self.log_std)
        return (-0.5 * z**2 - self.log_std - 0.9189385).sum(1)

    def sample(self, n, *, condition=None, generator=None):
        self.check_condition(condition, n)
        eps = torch.randn(n, 2, generator=generator)
        return self.transform(torch.ones(n, 2)) + eps * self.log_std.exp()


class _PlainListLayer(_BrokenBase):
    def __init__(self, config):
        super().__init__(config)
        self.extra = [nn.Linear(2, 2)]  # the bug: never registered, so never trained or saved

    def transform(self, z):
        return self.net(z) + self.extra[0](z + 1)


class _IgnoresGenerator(_BrokenBase):
    def sample(self, n, *, condition=None, generator=None):
        return super().sample(n, condition=condition, generator=None)  # the bug: the global RNG


class _NaNLikelihood(_BrokenBase):
    def log_prob(self, x, **options):
        out = super().log_prob(x)
        return out if self.training else out * float("nan")  # the bug: declared, but not finite


class _DeadParameter(_BrokenBase):
    def __init__(self, config):
        super().__init__(config)
        self.unused = nn.Linear(2, 2)  # the bug: registered but never used


BROKEN = {
    "test-broken-plain-list": (_PlainListLayer, [check_modules_are_registered, check_save_then_load, check_exact_resume, check_provenance]),
    "test-broken-ignores-generator": (_IgnoresGenerator, [check_same_seed_same_samples, check_save_then_load, check_provenance]),
    "test-broken-nan-likelihood": (_NaNLikelihood, [check_capabilities]),
    "test-broken-dead-parameter": (_DeadParameter, [check_every_parameter_gets_a_gradient]),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_the_suite_catches_broken_families(name, tmp_path):
    cls, catching = BROKEN[name]
    broken = type(cls.__name__, (cls,), {})
    register(name, description="deliberately broken", data_kinds=("points",))(broken)
    try:
        for check in CHECKS + CHECKS_WITH_FILES:
            args = (name, "default", "points") + ((tmp_path / check.__name__,) if check in CHECKS_WITH_FILES else ())
            if check in catching:
                with pytest.raises(AssertionError):
                    check(*args)
            else:
                check(*args)  # the other checks pass: each check looks for its own bug
    finally:
        FAMILIES.pop(name)
