"""Differentially private training (DP-SGD, Abadi et al. 2016) through Opacus.

Each step the Trainer draws a Poisson sample of the training set (every example
independently with probability q = batch_size / N), the family computes its mean
loss as usual, and the private update replaces the plain gradient by

    g = ( sum_i clip_C(g_i) + N(0, sigma^2 C^2 I) ) / (q N),   clip_C(v) = v * min(1, C / ||v||),

where g_i is example i's own gradient (Opacus' per-sample hooks, ``GradSampleModule``),
C = --dp-max-grad-norm and (q N) the expected batch size. One example then moves the sum
by at most C in L2, so each step is a subsampled Gaussian mechanism. sigma is chosen
before training by Opacus' ``get_noise_multiplier`` so that the RDP accountant spends at
most --dp-epsilon over the planned --steps at --dp-delta; the accountant then counts every
update actually made, and the spent epsilon it reports (not the target) is what the run
records: metrics.jsonl, privacy.json, the checkpoint (restored on --resume) and the
sampling manifest.

What is private: the weights, and so the samples, the EMA and the best/ selection (the
validation split is not the training set), and a table's encoding (ranges, percentiles, modes,
category counts: fitted from noisy histograms by genzoo.train.dp_table_encoding when api.train starts a
DP run; the accountant counts those releases before the first step). What is not: the
training-loss values in metrics.jsonl (means over the private batch, logged unnoised), and
anything else a family computes from the data before training (a BPE tokenizer).

Randomness: the guarantee needs the noise and the Poisson batches to be unpredictable to
whoever sees the weights. By default both come from the operating system's CSPRNG
(``os.urandom``): uniforms from 53 random bits, Gaussians by Box-Muller in float64, and each
noise value is the sum of 4 such draws halved (same variance; as Opacus' ``secure_mode``, it
blunts floating-point attacks on a single Gaussian draw). Such a run cannot be replayed, and a
resume continues with fresh randomness. ``GENZOO_DP_SEEDED_NOISE=1`` (tests, debugging) seeds
both by (seed, step) instead: reproducible and exactly resumable, but the guarantee then holds
only while the seed stays secret. privacy.json says which ("randomness"), and the run says
so when it starts.

Families: any whose loss is a mean of per-example losses through layers Opacus knows
(Linear, Conv, Embedding, GroupNorm, LayerNorm, ...; other layers with their own
parameters go through functorch). Checked on digits: vae, diffusion, realnvp, gan
(dcgan with --set spectral_norm=false); on tables: tvae, copula (its correlation factor is
a layer of its own), with the table's encoding fitted privately (genzoo.train.dp_table_encoding). Refused clearly: pixelcnn and gated-pixelcnn
(their masked convolutions keep the mask as a buffer, which Opacus' functorch path
refuses), spectral normalisation, glow, ebm, cyclegan, stylegan, BatchNorm (it mixes examples), a
step that updates a private optimizer more than once (GAN critic steps), PacGAN packs
and gradient penalties, token streams (windows overlap, so a document is in many
"examples"), several processes, gradient accumulation, fp16/bf16, torch.compile and
a --minutes budget without --steps. GANs: only the discriminator sees real data, so
only its optimizer is private; the generator learns through the private discriminator
(post-processing).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import warnings
from pathlib import Path

import torch

from genzoo.core.atomic import write_atomic_file
from genzoo.core.errors import GenzooError
from genzoo.models.base import Updater
from genzoo.train.ghost import LinearGhost, linear_only

ACCOUNTANT = "rdp"
# Opacus' RDP orders (1.1 .. 63) and larger ones: every order gives a valid bound, and at small epsilon the best one
# is past 63 (a table's encoding at 0.1 of --dp-epsilon 1, delta 2e-6: no order up to 63 certifies below 0.21)
ALPHAS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [80, 96, 128, 192, 256, 384, 512, 768, 1024]
EPSILON_TOLERANCE = 0.01  # the noise search stops within this of the target (from below)
NOISE_SEED_SALT = 0x5EED_D9  # the noise stream differs from the batch stream of the same (seed, step)
SEEDED_ENV = "GENZOO_DP_SEEDED_NOISE"  # "1": reproducible (insecure) noise and batches, for tests
SECURE = "os.urandom (secure)"
SEEDED = "a torch generator seeded by (seed, step): reproducible, NOT secure (the guarantee assumes the seed is secret)"
PRIVATE_ONLY = ("discriminator",)  # an optimizer with this name is the only one that sees real data
# Families whose update cannot be made private here, with the reason a user reads.
REFUSED = {
    "ebm": "its Langevin inner loop back-propagates through the energy network, which Opacus' per-example hooks "
           "cannot tell apart from the update",
    "cyclegan": "it updates its two discriminators and generators from both domains' data in one step",
    "stylegan": "its R1/path-length penalties need second-order per-example gradients, which Opacus does not compute",
    "glow": "its actnorm layers initialise themselves from the first training batch, which no noise protects",
}


def seeded_randomness() -> bool:
    """Whether GENZOO_DP_SEEDED_NOISE asks for reproducible (insecure) DP randomness."""
    value = os.environ.get(SEEDED_ENV, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise GenzooError(f"{SEEDED_ENV} must be 1 (seeded, reproducible DP noise) or 0 (secure, the default), got {value!r}")


def secure_uniform(n: int) -> torch.Tensor:
    """n float64 uniforms on [0, 1) from os.urandom: the top 53 bits of each 64-bit word, times 2^-53."""
    import numpy as np

    words = np.frombuffer(os.urandom(8 * n), dtype=np.uint64) >> np.uint64(11)
    return torch.from_numpy(words.astype(np.float64) * 2.0 ** -53)


def secure_normal(n: int) -> torch.Tensor:
    """n float64 standard normals from os.urandom: Box-Muller, z = sqrt(-2 ln(1-u1)) (cos 2 pi u2, sin 2 pi u2),
    and each returned value is (z1 + z2 + z3 + z4) / 2 (variance 1) so no value is one draw's rounding."""
    m = (4 * n + 1) // 2
    u = secure_uniform(2 * m)
    r = torch.sqrt(-2.0 * torch.log1p(-u[:m]))  # 1 - u1 lies in (0, 1]: the log is finite
    theta = 2.0 * math.pi * u[m:]
    z = torch.cat([r * torch.cos(theta), r * torch.sin(theta)])[: 4 * n]
    return z.view(4, n).sum(0) / 2.0


def default_delta(n: int) -> float:
    """delta = 1 / (10 N): well below 1/N, since delta ~ 1/N allows releasing one whole record."""
    return 1.0 / (10 * n)


@contextlib.contextmanager
def _quiet():
    """Opacus warns when the best RDP order is the largest it tries (short runs, large epsilon) or the smallest
    (a noise level far below the one a search is after): the bound is then looser than it could be, never below
    the truth, so the epsilon reported stays an upper bound."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the (largest|smallest) alpha")
        yield


def noise_multiplier(epsilon: float, delta: float, sample_rate: float, steps: int, prior: list | None = None) -> float:
    """sigma for which the RDP accountant spends at most ``epsilon`` after ``steps`` Poisson-sampled steps
    (after the releases in ``prior`` [(sigma, q, count)], e.g. a table's private encoding, where given)."""
    from opacus.accountants.utils import get_noise_multiplier

    if prior:
        return _noise_after(epsilon, delta, sample_rate, steps, prior)
    try:
        with _quiet():
            return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate,
                                              steps=steps, accountant=ACCOUNTANT, epsilon_tolerance=EPSILON_TOLERANCE))
    except ValueError as e:
        raise GenzooError(f"no noise level reaches epsilon {epsilon} at delta {delta} over {steps} steps ({e}); "
                          "raise --dp-epsilon or lower --steps or --batch-size") from None


def _noise_after(epsilon: float, delta: float, sample_rate: float, steps: int, prior: list) -> float:
    try:
        return calibrate(lambda sigma: spent_epsilon([*prior, (sigma, sample_rate, steps)], delta), epsilon, tolerance=EPSILON_TOLERANCE)
    except ValueError:
        raise GenzooError(f"no noise level reaches epsilon {epsilon} at delta {delta} over {steps} steps after the table's "
                          "private encoding; raise --dp-epsilon or lower --steps or --batch-size") from None


def calibrate(spent, epsilon: float, *, lo: float = 1e-6, hi: float = 1e6, tolerance: float = 0.0) -> float:
    """The smallest noise multiplier sigma (to 0.1%, or once within ``tolerance`` below the target) for which
    ``spent(sigma)`` <= ``epsilon``; bisection on a log scale (the spent epsilon falls as sigma grows).
    ValueError when even ``hi`` spends more."""
    if spent(hi) > epsilon:
        raise ValueError(f"epsilon {epsilon} is out of reach at sigma {hi:g}")
    for _ in range(100):
        mid = math.sqrt(lo * hi)
        e = spent(mid)
        if e > epsilon:
            lo = mid
        else:
            hi = mid
            if epsilon - e < tolerance:
                break
        if hi / lo < 1.001:
            break
    return hi


def spent_epsilon(history: list, delta: float) -> float:
    """epsilon the RDP accountant spends for ``history`` [(sigma, q, steps), ...] at ``delta``."""
    from opacus.accountants import RDPAccountant

    if not history:
        return 0.0
    acc = RDPAccountant()
    acc.history = [tuple(h) for h in history]
    with _quiet():
        return float(acc.get_epsilon(delta, alphas=ALPHAS))


def check_supported(model, config, *, world_size: int, amp: bool, stream: bool) -> None:
    """Refuse, with what to do, whatever DP-SGD here cannot make private."""
    family = model.family or type(model).__name__
    if family in REFUSED:
        raise GenzooError(f"{family} cannot be trained with differential privacy: {REFUSED[family]}; "
                          "train vae, diffusion, realnvp or gan (--set spectral_norm=false) instead")
    if config.steps is None:
        raise GenzooError("--dp-epsilon needs --steps: the noise is calibrated for a known number of steps "
                          "(a --minutes budget alone cannot say how many)")
    if world_size > 1:
        raise GenzooError("--dp-epsilon runs in one process; drop torchrun / --nproc")
    if config.grad_accum != 1:
        raise GenzooError("--dp-epsilon needs --grad-accum 1 (the per-example gradients of one Poisson batch are clipped together)")
    if amp:
        raise GenzooError("--dp-epsilon needs --precision fp32 (per-example gradients under autocast are not supported)")
    if config.compile:
        raise GenzooError("--dp-epsilon does not work with --compile; drop --compile")
    if config.divergence_retries:
        raise GenzooError("--dp-epsilon does not work with --divergence-retries (retried steps would spend privacy twice)")
    if stream:
        raise GenzooError("--dp-epsilon cannot protect a token stream: its windows overlap, so one document lies in many "
                          "examples; DP for text needs per-document sampling, which genzoo does not have yet")
    c = model.config
    if getattr(c, "pack", 1) > 1:
        raise GenzooError(f"--dp-epsilon: PacGAN packs {c.pack} real examples into one critic input, so a clipped gradient "
                          "would bound a pack, not an example; use --set pack=1")
    if getattr(c, "gp_weight", 0):
        raise GenzooError("--dp-epsilon: the gradient penalty needs second-order per-example gradients, which Opacus "
                          "does not compute; use --set gp_weight=0 (e.g. the dcgan variant with a hinge or non-saturating loss)")
    if getattr(c, "spectral_norm", False):
        raise GenzooError("--dp-epsilon: spectral normalisation keeps power-iteration buffers in its layers, which Opacus' "
                          "per-example gradients do not support; use --set spectral_norm=false")
    if getattr(c, "critic_steps", 1) > 1:
        raise GenzooError(f"--dp-epsilon: {c.critic_steps} critic steps per step reuse one private batch; use --set critic_steps=1")
    from opacus.validators import ModuleValidator

    was = model.training
    model.train()
    errors = ModuleValidator.validate(model, strict=False)
    model.train(was)
    if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        # ModuleValidator.fix would swap in GroupNorm, but the saved config would then build another model
        raise GenzooError(f"{family} uses BatchNorm, which mixes the examples of a batch, so one example's influence "
                          "cannot be bounded; choose a config without batch norm (GroupNorm or LayerNorm) to train it privately")
    if errors:
        raise GenzooError(f"{family} cannot be trained with differential privacy: {str(errors[0]).splitlines()[0][:200]}")


class PrivateTraining:
    """The private side of a Trainer: Poisson batches, the DP updater and the accountant."""

    def __init__(self, model, optimizers: dict, config, num_examples: int):
        from opacus import GradSampleModule

        # The first layer's input needs no gradient; torch warns that its full backward hook fires anyway (harmless).
        warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients are computed with respect to module outputs")
        n = int(num_examples)
        if config.batch_size >= n:
            raise GenzooError(f"--batch-size {config.batch_size} must be below the {n} training examples for DP sampling")
        self.n = n
        self.epsilon_target = float(config.dp_epsilon)
        self.delta = float(config.dp_delta) if config.dp_delta is not None else default_delta(n)
        if not 0 < self.delta < 1:
            raise GenzooError(f"--dp-delta must lie in (0, 1), got {self.delta}")
        self.max_grad_norm = float(config.dp_max_grad_norm)
        self.sample_rate = config.batch_size / n
        self.expected_batch = config.batch_size
        self.planned_steps = int(config.steps)
        # a table's encoding fitted privately (genzoo.train.dp_table_encoding) spent part of the budget before training
        table = (getattr(model, "data_spec", None) or {}).get("table")
        self.schema = (table or {}).get("privacy")
        if table and not self.schema:
            print("warning: this table's encoding (ranges, percentiles, category counts) was fitted without noise, so the "
                  "checkpoint publishes it outside epsilon; api.train / genzoo train fit it privately", file=sys.stderr)
        self.encoding = self.schema or ("NOT private: fitted on the training rows without noise" if table else "not data-dependent")
        self.prior = [(self.schema["noise_multiplier"], 1.0, self.schema["releases"])] if self.schema else []
        self.delta_rdp = self.delta - (self.schema["delta_threshold"] if self.schema else 0.0)
        if self.schema and not math.isclose(self.schema["delta"], self.delta):
            raise GenzooError(f"the table's private encoding was fitted for delta {self.schema['delta']:g}, this run asks for "
                              f"{self.delta:g}; train with the same --dp-delta")
        self.sigma = noise_multiplier(self.epsilon_target, self.delta_rdp, self.sample_rate, self.planned_steps, self.prior)
        self.history: list[list] = []  # the accountant's [(sigma, q, steps)], merged like Opacus' RDPAccountant
        self.seed = config.seed
        self.seeded = seeded_randomness()
        self.randomness = {SEEDED if self.seeded else SECURE}  # over resumes, every source a step of this run used
        print(f"differential privacy: noise and Poisson batches drawn from {SEEDED if self.seeded else SECURE}"
              + ("" if self.seeded else f"; set {SEEDED_ENV}=1 for reproducible (insecure) noise"), file=sys.stderr)
        names = [k for k in optimizers if k in PRIVATE_ONLY] or list(optimizers)
        self.private = set(names)
        # Parameters on the model itself (a TVAE's shared decoder scale) are used in the family's own code, not in a
        # layer's forward, so no hook sees their per-example gradients: they stay at their initial values (an
        # untrained parameter reveals nothing), and privacy.json lists them.
        own = {id(p) for p in model.parameters(recurse=False)}
        names_of = {id(p): n for n, p in model.named_parameters()}
        self.frozen = [names_of[id(p)] for k in names for g in optimizers[k].param_groups for p in g["params"] if id(p) in own]
        self.params = {k: [p for g in optimizers[k].param_groups for p in g["params"] if p.requires_grad and id(p) not in own]
                       for k in names}
        self._frozen_params = [p for p in model.parameters(recurse=False) if names_of[id(p)] in self.frozen]
        if self.frozen:
            print(f"note: --dp-epsilon keeps {', '.join(self.frozen)} at its initial value (a parameter outside any layer: "
                  "no per-example gradient)", file=sys.stderr)
        # loss_reduction "sum": Opacus leaves each row as it comes (1/B of example i's gradient, the family's
        # loss being a batch mean) and ``clip_and_noise`` scales by the batch size it knows to be right.
        # Modules made of Linear layers get ghost clipping (genzoo.train.ghost: no B x out x in per-example
        # gradients); every other module goes through Opacus' per-example hooks.
        modules = _private_modules(model, {id(p) for ps in self.params.values() for p in ps})
        ghost = [m for m in modules if linear_only(m)]
        self.ghost = LinearGhost(ghost) if ghost else None
        self._ghost_params = {id(p) for p in self.ghost.parameters()} if self.ghost else set()
        try:
            self.hooks = [GradSampleModule(m, batch_first=True, loss_reduction="sum", strict=False)
                          for m in modules if m not in ghost]
        except (NotImplementedError, ValueError) as e:
            raise GenzooError(f"{model.family or type(model).__name__} cannot be trained with differential privacy: Opacus "
                              f"cannot compute per-example gradients of one of its layers ({str(e).splitlines()[0][:150]})") from None
        if not self.hooks and not self.ghost:
            raise GenzooError(f"{model.family or type(model).__name__}: no layer holds the parameters to train privately")
        self.batch_len = 0
        self.step = 0
        self._updates = 0  # private updates in the current step: one at most

    # ---- sampling -----------------------------------------------------------
    def sample_rows(self, step: int) -> torch.Tensor:
        """Poisson sampling: each training example joins step ``step``'s batch with probability q,
        independently (the subsampling the accountant assumes): from os.urandom, or with
        GENZOO_DP_SEEDED_NOISE=1 a function of (seed, step)."""
        if self.seeded:
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + step * 7_919 + 31) % (2**63))
            u = torch.rand(self.n, generator=g)
        else:
            u = secure_uniform(self.n)
        rows = torch.nonzero(u < self.sample_rate).flatten()
        self.batch_len, self.step, self._updates = len(rows), step, 0
        return rows

    # ---- the update ---------------------------------------------------------
    def clip_and_noise(self, name: str) -> float:
        """Replace each private parameter's .grad by the noisy sum of clipped per-example gradients over the
        expected batch size; returns the mean per-example gradient norm before clipping."""
        params = self.params[name]
        B = self.batch_len
        hooked = [p for p in params if id(p) not in self._ghost_params]  # the rest are the ghost layers'
        missing = [p for p in hooked if getattr(p, "grad_sample", None) is None]
        if missing:
            raise GenzooError(f"--dp-epsilon: {len(missing)} parameter tensor(s) got no per-example gradient (they are used "
                              "outside a layer Opacus can hook, e.g. a bare nn.Parameter in the model's own code); "
                              "this family cannot be trained privately yet")
        rows = [p.grad_sample for p in hooked]
        if any(isinstance(r, list) for r in rows):  # Opacus keeps a list when backward ran more than once
            raise GenzooError("--dp-epsilon: the private loss was back-propagated more than once in one update; "
                              "this family cannot be trained privately yet")
        bad = [r.shape[0] for r in rows if r.shape[0] != B]
        if bad:
            raise GenzooError(f"--dp-epsilon: per-example gradients came with {bad[0]} rows for a batch of {B}: the family "
                              "reshapes its batch inside a layer, so an example's gradient cannot be bounded")
        # Row i of a grad_sample is 1/B of example i's gradient (the family's loss is a batch mean). The norms and
        # the clipped sum are taken tensor by tensor: concatenating B x P per-example rows first cost 2/3 of a DP
        # step through Opacus' hooks (tvae/diamonds, batch ~500, one thread, loaded cores: 1.47 -> 4.16 steps/s).
        device = params[0].device
        sq, sums = self.ghost.per_example(B) if self.ghost else (torch.zeros(B, dtype=torch.float64, device=device), {})
        for p, r in zip(hooked, rows):
            r = r.reshape(B, p.numel())
            sq += torch.linalg.vector_norm(r, dim=1).double() ** 2  # no B x P copy, unlike r.pow(2)
            sums[p] = lambda f, r=r: f.to(r.dtype) @ r
        norms = (sq.sqrt() * B).float()
        factor = (self.max_grad_norm / (norms + 1e-6)).clamp(max=1.0) * B  # B undoes the 1/B in each row
        total = sum(p.numel() for p in params)
        if self.seeded:
            g = torch.Generator(device=device).manual_seed(
                (self.seed * 1_000_003 + self.step * 7_919 + NOISE_SEED_SALT + len(self.history)) % (2**63))
            z = torch.randn(total, generator=g, device=device)
        else:
            z = secure_normal(total).to(device=device, dtype=torch.float32)
        z *= self.sigma * self.max_grad_norm
        i = 0
        for p in params:
            k = p.numel()
            summed = sums[p](factor).reshape(-1)  # sum_i clip_C(g_i) for this tensor
            p.grad = ((summed + z[i : i + k].to(summed.dtype)) / self.expected_batch).view_as(p).to(p.dtype)
            i += k
        return float(norms.mean()) if B else 0.0

    def account(self) -> None:
        """One private update made: the accountant counts a subsampled Gaussian step."""
        if self.history and self.history[-1][:2] == [self.sigma, self.sample_rate]:
            self.history[-1][2] += 1
        else:
            self.history.append([self.sigma, self.sample_rate, 1])

    def clear(self) -> None:
        """Drop per-example gradients (before a private backward pass; the ghost layers' records of this
        step's forward pass stay: they are the inputs its backward pass pairs with)."""
        for h in self.hooks:
            for p in h.parameters():
                p.grad_sample = None

    def reset(self) -> None:
        """After any update: drop what the hooks kept (activations of a forward pass that a non-private
        backward never consumed, Opacus' per-parameter counters), so the next private pass starts clean."""
        self.clear()
        if self.ghost:
            self.ghost.clear()
        for h in self.hooks:
            for m in h.modules():
                if hasattr(m, "activations"):
                    m.activations = []
                if hasattr(m, "max_batch_len"):
                    del m.max_batch_len
            for p in h.parameters():
                if hasattr(p, "_current_grad_sample"):
                    del p._current_grad_sample
                p._forward_counter = 0

    def hooks_enabled(self, on: bool) -> None:
        if self.ghost:
            self.ghost.enabled = on
        for h in self.hooks:
            h.enable_hooks() if on else h.disable_hooks()

    def empty_step(self, optimizers: dict) -> dict[str, float]:
        """A Poisson batch with no example: the update is the noise alone (still accounted)."""
        for name in self.private:
            params = self.params[name]
            for p in params:
                p.grad_sample = p.new_zeros((0, *p.shape))
            self.clip_and_noise(name)
            optimizers[name].step()
            self.account()
        self.reset()
        return {}

    # ---- what the run records ----------------------------------------------
    @property
    def steps_taken(self) -> int:
        return sum(h[2] for h in self.history)

    def epsilon(self) -> float:
        """Spent so far: the encoding's releases (tables) and every private step, at delta less the share
        that a rare category's publication may take."""
        return spent_epsilon([*self.prior, *self.history], self.delta_rdp)

    def log_fields(self) -> dict:
        return {"dp_epsilon_spent": round(self.epsilon(), 4), "dp_delta": self.delta}

    def summary(self) -> dict:
        return {"epsilon": self.epsilon(), "epsilon_target": self.epsilon_target, "delta": self.delta,
                "noise_multiplier": self.sigma, "max_grad_norm": self.max_grad_norm, "sample_rate": self.sample_rate,
                "expected_batch_size": self.expected_batch, "steps": self.steps_taken, "planned_steps": self.planned_steps,
                "accountant": ACCOUNTANT, "sampling": "poisson", "private_optimizers": sorted(self.private),
                "frozen_parameters": self.frozen, "randomness": " + ".join(sorted(self.randomness)),
                "training_examples": self.n, "table_encoding": self.encoding}

    def write(self, out_dir: Path) -> None:
        write_atomic_file(Path(out_dir) / "privacy.json", json.dumps(self.summary(), indent=2))

    def state_dict(self) -> dict:
        return {"history": [list(h) for h in self.history], "sigma": self.sigma, "delta": self.delta,
                "sample_rate": self.sample_rate, "planned_steps": self.planned_steps, "randomness": sorted(self.randomness)}

    def load_state_dict(self, state: dict | None, total_steps: int | None) -> None:
        if not state:
            raise GenzooError("this checkpoint was trained without --dp-epsilon; resume it without the DP flags, or start a new run")
        if not math.isclose(state["sample_rate"], self.sample_rate) or not math.isclose(state["delta"], self.delta):
            raise GenzooError("resume a DP run with the --batch-size and --dp-delta it started with")
        self.history, self.sigma, self.planned_steps = [list(h) for h in state["history"]], state["sigma"], state["planned_steps"]
        # a checkpoint from before the secure default used seeded randomness
        self.randomness |= set(state.get("randomness", [SEEDED]))
        if total_steps is not None and total_steps > self.planned_steps:
            raise GenzooError(f"the noise was calibrated for {self.planned_steps} steps; running to {total_steps} would spend "
                              f"more than epsilon {self.epsilon_target}: start a new run with the larger --steps")

    def detach(self) -> None:
        """Remove the per-example hooks (before the model is copied or sampled at the end)."""
        self.reset()
        if self.ghost:
            self.ghost.remove()
        for h in self.hooks:
            h.remove_hooks()


def _private_modules(model, private: set) -> list:
    """The modules to hook: the model's children that hold private parameters (a GAN's discriminator, every
    layer of a VAE). Hooking the children, not the model, keeps Opacus from treating a model with parameters
    of its own as one opaque layer."""
    return [m for m in model.children() if any(id(p) in private for p in m.parameters())]


class PrivateUpdater(Updater):
    """``Updater`` whose private optimizers take the DP-SGD step (per-example clipping + noise) in
    place of plain back-propagation and global clipping; other optimizers (a GAN's generator) step as usual."""

    def __init__(self, optimizers: dict, privacy: PrivateTraining, device_type: str = "cpu", grad_clip: float | None = None):
        super().__init__(optimizers, grad_clip, None, 1, device_type)
        self.privacy = privacy

    def step(self, name: str, loss: torch.Tensor) -> None:
        pt = self.privacy
        if name not in pt.private:  # e.g. a GAN's generator: an ordinary update, the per-example hooks off
            pt.hooks_enabled(False)
            try:
                super().step(name, loss)
            finally:
                pt.hooks_enabled(True)
                pt.reset()
            return
        if not torch.isfinite(loss.detach()).all():
            raise FloatingPointError(f"loss for optimizer {name!r} is {loss.item()}")
        pt._updates += 1
        if pt._updates > 1:
            raise GenzooError("--dp-epsilon: this family updates its private optimizer more than once per step on one "
                              "batch, which DP-SGD's accounting here does not cover")
        pt.clear()
        params = self.params(name)
        for p in params:
            p.grad = None
        loss.backward()  # fills p.grad_sample (per example) through Opacus' hooks; p.grad is replaced below
        self.grad_norms[name] = pt.clip_and_noise(name)
        for p in pt._frozen_params:
            p.grad = None  # no per-example gradient: not updated (see PrivateTraining.frozen)
        self.optimizers[name].step()
        pt.account()
        pt.reset()
