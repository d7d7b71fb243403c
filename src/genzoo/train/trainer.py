"""The Trainer: everything around a family's update rule.

A family supplies ``configure_optimizers`` and ``training_step`` (which calls
``opt.step(name, loss)`` once per update, as often as it likes). The Trainer
owns the rest: the step or time budget, LR schedule, gradient clipping,
EMA, precision, multi-process gradient averaging, atomic checkpoints, exact
resume, progress, ``metrics.jsonl``, sample grids and the loss curve,
and model selection: every ``val_every`` steps it measures the family's loss
on the validation split and keeps the best weights in ``best/`` (small
datasets such as digits are overfitted well within a CPU budget).

Exact resume holds because nothing the loop does depends on hidden state:
the batch for step s is a function of (seed, s) and so is the per-example
noise (``BatchRandom``, which also feeds every dropout mask: see
``genzoo.nn.dropout``); the LR is a function of s; optimizer, EMA, scaler and
model buffers are saved, and per process the global RNG and the family's
non-weight state (``training_state``: a replay buffer).

Preemption: SIGTERM and SIGINT finish the current step, write a checkpoint
and stop (``Preempted``); re-running the same command with ``--resume``
continues bit-identically, and ``--resume`` on a folder with no checkpoint yet
starts fresh. Checkpoints are written every ``checkpoint_every`` steps and,
with ``checkpoint_minutes``, after that much wall-clock.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import torch

from genzoo.core.atomic import write_atomic_dir, write_atomic_file
from genzoo.runs.checkpoint import load_trainer_state, resolve_checkpoint
from genzoo.data import Dataset
from genzoo.data.base import batch_indices  # noqa: F401  (re-exported: genzoo.train.batch_indices)
from genzoo.core.errors import GenzooError
from genzoo.models.base import Batch, BatchRandom, GenerativeModel, Updater
from genzoo.nn.dropout import noise_source
from genzoo.train import distributed
from genzoo.train.config import TrainConfig
from genzoo.train.ema import EMA
from genzoo.train.progress import ProgressReporter
from genzoo.train.schedule import base_lrs, lr_multiplier, set_lr

CHECKPOINT = "checkpoint"
DIVERGENCE_SEED_STRIDE = 1009  # a restore after divergence adds this to the seed (far from neighbouring runs' seeds)
BEST = "best"  # the sampling weights with the lowest validation loss
TIMING_STEPS = 20  # steps measured before a --minutes budget is turned into a step count
# ... and re-measured at each further tenth of the budget (up to 90%) from the speed since the last
# measure, moving the end only when it is off by more than RETIME_TOLERANCE. One early estimate was
# not enough: runs sharing the cores with a test suite for their first minute were measured slow and
# stopped at 55-70% of their budget once the other load ended.
RETIME_EVERY = 0.1
RETIME_TOLERANCE = 0.03


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GenzooError("--device cuda asked for, but PyTorch sees no GPU; use --device cpu")
    return torch.device(name)


class Preempted(GenzooError):
    """Training stopped on a signal after writing a checkpoint; the same command with --resume continues."""

    def __init__(self, signum: int, step: int, where: Path | None):
        self.signum, self.step = signum, step
        saved = f"checkpoint at step {step} in {where}; re-run the same command with --resume to continue" if where else "nothing was saved (no --out)"
        super().__init__(f"stopped by {signal.Signals(signum).name}: {saved}")


class _StopSignals:
    """SIGTERM / SIGINT set a flag that the loop reads after each step; a second signal aborts at once."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: int | None = None
        self._previous: dict = {}

    def install(self) -> "_StopSignals":
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread only
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.received is not None:
            raise KeyboardInterrupt  # asked twice: stop now, the last checkpoint stands
        self.received = signum

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether a run folder holds a checkpoint to resume from."""
    try:
        resolve_checkpoint(run_dir, prefer_best=False)
        return True
    except GenzooError:
        return False


class Trainer:
    def __init__(
        self,
        model: GenerativeModel,
        data: Dataset,
        config: TrainConfig,
        out_dir: str | Path | None = None,
        data_name: str | None = None,
        val_data: Dataset | None = None,
    ):
        self.config = config
        self.device = resolve_device(config.device)
        self.dist = distributed.setup(self.device)
        if config.batch_size % self.dist.world_size:
            raise GenzooError(f"batch size {config.batch_size} must divide evenly over {self.dist.world_size} processes")
        self.model = model.to(self.device)
        if config.compile:
            model.compile_for_training()
        self.data = model.prepare_data(data)
        self.data_name = data_name or data.name
        self.out_dir = Path(out_dir) if out_dir else None
        self.optimizers = model.configure_optimizers(config.lr, config.weight_decay, config.betas)
        self.base_lrs = base_lrs(self.optimizers)
        self.fits_once = bool(getattr(model, "fits_once", False))  # fitted in one pass over the rows (privbayes), no steps
        self.ema = EMA(model, config.ema_decay) if config.ema_decay and not self.fits_once else None  # nothing to average
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None
        self.updater = Updater(self.optimizers, config.grad_clip, self.scaler, self.dist.world_size, self.device.type)
        local = config.batch_size // self.dist.world_size
        if local % config.grad_accum:
            raise GenzooError(f"--grad-accum {config.grad_accum} must divide each process's batch of {local}")
        self.privacy = None  # DP-SGD (genzoo.train.dp) when config.dp_epsilon is set: Poisson batches, private updates
        if self.fits_once and self.dist.world_size > 1:
            raise GenzooError(f"{model.family} fits in one pass on one process; drop torchrun / --nproc")
        if config.dp_epsilon is not None and self.fits_once:
            from genzoo.train.dp_marginals import MarginalPrivacy

            self.privacy = MarginalPrivacy(model, config, len(self.data))
        elif config.dp_epsilon is not None:
            from genzoo.train import dp

            dp.check_supported(model, config, world_size=self.dist.world_size, amp=self.amp_dtype is not None,
                               stream=bool(getattr(self.data, "is_stream", False)))
            self.privacy = dp.PrivateTraining(model, self.optimizers, config, len(self.data))
            self.updater = dp.PrivateUpdater(self.optimizers, self.privacy, self.device.type, config.grad_clip)
        self.step = 0
        self.total_steps = config.steps
        self.elapsed = 0.0  # training seconds, summed over resumed runs
        self.history: list[dict] = []
        # the validation examples, cut once (a text model's windows of its val stream)
        self.val_examples = (model.prepare_data(val_data).eval_examples()
                             if config.val_every and val_data is not None and len(val_data.x) else None)
        self.best: dict | None = None  # {"step", "val_loss"} of the best validation so far
        self._best_state: dict | None = None
        self._selected: tuple[int, GenerativeModel] | None = None  # (best step, a model holding its weights)
        self._since_best = 0  # validations since the best one
        self._divergences = 0  # restores after a divergence so far (see divergence_retries)
        if self.dist.world_size > 1:
            distributed.broadcast_module(self.model)
            if self.ema:
                distributed.broadcast_module(self.ema.model)

    # ---- precision ---------------------------------------------------------
    def _amp_dtype(self):
        p = self.config.precision
        if p == "auto":
            if self.device.type != "cuda":
                return None  # measured: fp32 is the right default for small models on CPU
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[p]

    def _autocast(self):
        """Autocast for the forward passes; ``Updater.step`` leaves it for the backward pass."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _train_step(self, rows: torch.Tensor, offset: int) -> dict[str, float]:
        """One optimizer step on this process's ``rows``: ``grad_accum`` micro-batches whose noise
        is the whole batch's (``BatchRandom`` at each micro-batch's offset), then one update."""
        cfg = self.config
        micro = len(rows) // cfg.grad_accum
        means: dict[str, float] = {}
        for m in range(cfg.grad_accum):
            r = rows[m * micro : (m + 1) * micro]
            rng = BatchRandom(cfg.seed, self.step, max(cfg.batch_size, len(rows)), offset + m * micro, self.device)  # a DP (Poisson) batch may exceed batch_size
            x, y = self.data.take(r)
            batch = Batch(x.to(self.device, non_blocking=True), y.to(self.device) if y is not None else None, rng)
            self.updater.begin_micro(m, cfg.grad_accum)
            with self._autocast(), noise_source(rng):
                metrics = self.model.training_step(batch, self.step, self.updater)
            for k, v in metrics.items():
                means[k] = means.get(k, 0.0) + float(v) / cfg.grad_accum
        self.updater.end_iteration()
        return means

    @property
    def sampling_model(self) -> GenerativeModel:
        return self.ema.model if self.ema else self.model

    # ---- the loop ----------------------------------------------------------
    def fit(self, resume: bool = False) -> dict:
        cfg = self.config
        if resume:
            self._load_state()
        elif self.out_dir and self.dist.is_main:
            self._prepare_out_dir()
        cfg = self.config  # a checkpoint written after a divergence carries the seed the run changed to
        if self.fits_once:
            return self._fit_once()
        if cfg.divergence_retries and self.out_dir and not resume:
            self.save_checkpoint()  # something to restore should the very first steps diverge
        local = cfg.batch_size // self.dist.world_size
        offset = self.dist.rank * local
        progress = ProgressReporter(self.total_steps, self.step, cfg.progress and self.dist.is_main, desc=self.model.family)
        window: dict[str, list[float]] = {}
        budget_s = cfg.minutes * 60 if cfg.minutes else math.inf
        run_t0 = time.perf_counter()
        start_elapsed, start_step = self.elapsed, self.step
        timing_t0 = None
        retime = None  # (time, step, share of the budget) of the last estimate, for the next one
        self.model.train()
        self._last_save = time.monotonic()
        stop = _StopSignals().install()
        try:
            while self.total_steps is None or self.step < self.total_steps:
                rows = (self.privacy.sample_rows(self.step) if self.privacy
                        else self.data.batch_rows(self.step, cfg.batch_size, cfg.seed)[offset : offset + local])
                set_lr(self.optimizers, self.base_lrs, lr_multiplier(self.step, self.total_steps, cfg.warmup_steps, cfg.schedule, cfg.min_lr_ratio))
                try:
                    metrics = self.privacy.empty_step(self.optimizers) if self.privacy and not len(rows) else self._train_step(rows, offset)
                except FloatingPointError as e:
                    self._recover_from_divergence(e)  # re-raises when it cannot
                    cfg, window = self.config, {}
                    continue
                if self.ema:
                    self.ema.update(self.model, self.step)
                self.step += 1
                for k, v in metrics.items():
                    window.setdefault(k, []).append(float(v))
                self.elapsed = start_elapsed + time.perf_counter() - run_t0

                # A --minutes budget becomes a fixed step count after a short timing, so the
                # LR schedule (and a resumed run) knows where it ends. The first estimate comes from a
                # few steps and can be far off (a busy machine, a slow start), so it is re-made at each
                # tenth of the budget from the recent speed (see RETIME_EVERY).
                if self.total_steps is None:
                    done = self.step - start_step
                    if done == 3:  # skip the first, slower steps
                        timing_t0 = time.perf_counter()
                    elif done == TIMING_STEPS:
                        per_step = (time.perf_counter() - timing_t0) / (TIMING_STEPS - 3)
                        self._set_total_from_budget(per_step, budget_s, progress)
                        retime = (time.perf_counter(), self.step, RETIME_EVERY)
                retime_due = bool(retime) and self.elapsed - start_elapsed >= retime[2] * budget_s and self.step - retime[1] >= TIMING_STEPS
                timed_save = cfg.checkpoint_minutes is not None and time.monotonic() - self._last_save >= cfg.checkpoint_minutes * 60
                out_of_time, signalled, timed_save, retime_due = distributed.agree_flags(
                    [self.elapsed >= budget_s, stop.received is not None, timed_save, retime_due], self.dist)
                if retime_due:  # every process together (the flag is agreed), so the step counts agree
                    per_step = (time.perf_counter() - retime[0]) / (self.step - retime[1])
                    self._set_total_from_budget(per_step, budget_s, progress, tolerance=RETIME_TOLERANCE)
                    share = retime[2] + RETIME_EVERY
                    retime = (time.perf_counter(), self.step, share) if share < 0.95 else None

                if self.step % cfg.log_every == 0 or out_of_time or self.step == self.total_steps:
                    self._log(window, progress, local)
                    window = {}
                if self.out_dir and cfg.sample_every and self.step % cfg.sample_every == 0:
                    self.save_sample_grid()
                last = out_of_time or self.step == self.total_steps
                if self.val_examples is not None and (self.step % cfg.val_every == 0 or last):
                    if self._validate() and not last:
                        break  # patience ran out
                if self.out_dir and (self.step % cfg.checkpoint_every == 0 or timed_save or signalled):
                    self.save_checkpoint()
                if signalled:
                    raise Preempted(stop.received or signal.SIGTERM, self.step, self.out_dir / CHECKPOINT if self.out_dir else None)
                if out_of_time:
                    break
        except FloatingPointError as e:
            last = f"the last good checkpoint is in {self.out_dir / CHECKPOINT}" if self.out_dir else "nothing was saved"
            raise GenzooError(
                f"training diverged at step {self.step}: {e}. {last}; lower --lr, keep gradient clipping on, "
                "or resume with --resume after changing the settings"
            ) from e
        finally:
            stop.restore()
            progress.close()
        self.total_steps = self.step if self.total_steps is None else self.total_steps
        return self._finish(start_step, start_elapsed)

    def _fit_once(self) -> dict:
        """A ``fits_once`` family: one pass over every training row (``fit_table``), recorded as one step."""
        start_step, start_elapsed = self.step, self.elapsed
        if self.step == 0:  # a resumed run that was fitted is done
            t0 = time.perf_counter()
            metrics = self.model.fit_table(self.data.x, self.privacy, self.config.seed)
            if self.privacy:
                self.privacy.fitted = True
            self.step = self.total_steps = 1
            self.elapsed = time.perf_counter() - t0
            row = {"step": 1, **metrics, **(self.privacy.log_fields() if self.privacy else {})}
            self._record(row)
            if self.out_dir and self.dist.is_main:
                self._write_run_file()  # the fitted network is part of the model's config
        return self._finish(start_step, start_elapsed)

    def _finish(self, start_step: int, start_elapsed: float) -> dict:
        """The end of every fit: privacy record, last checkpoint, samples and plots, the summary."""
        if self.privacy:
            self.privacy.detach()  # no per-example hooks on the model that is copied and sampled from here on
            if self.out_dir and self.dist.is_main:
                self.privacy.write(self.out_dir)
        if self.out_dir:
            self.save_checkpoint()
            self.save_sample_grid()
            selected = self.selected_model
            if selected is not self.sampling_model:  # also show what eval and sample will use
                self.save_sample_grid(selected, f"best_step_{self.best['step']:06d}.png")
            if self.dist.is_main:
                selected.save_plots(self.out_dir, self.data)
                from genzoo.viz.samples import save_loss_curve

                save_loss_curve(self.out_dir / "metrics.jsonl", self.out_dir / "loss.png")
        summary = {
            "steps": self.step,
            "train_seconds": round(self.elapsed, 2),
            "steps_per_s": round((self.step - start_step) / max(1e-9, self.elapsed - start_elapsed), 3),
            "final": self.history[-1] if self.history else {},
        }
        if self.best:
            summary.update(best_step=self.best["step"], best_val_loss=self.best["val_loss"])
        if self.privacy:
            summary["privacy"] = self.privacy.summary()
        return summary

    # ---- validation and model selection -----------------------------------
    def _validate(self) -> bool:
        """Log the validation loss; keep the weights if they are the best yet. True when patience ran out."""
        model = self.sampling_model
        x_val, y_val = self.val_examples
        value = model.validation_loss(x_val, y_val, batch_size=max(self.config.batch_size, 256), seed=self.config.seed)
        if value is None:  # the family has no single loss to select on
            self.val_examples = None
            return False
        row = {"event": "val", "step": self.step, "time": round(self.elapsed, 3), "val_loss": round(value, 6)}
        self._record(row)
        if not self.config.select_best:  # the family's loss is not what its users select on
            return False
        if math.isfinite(value) and (self.best is None or value < self.best["val_loss"]):
            self.best = {"step": self.step, "val_loss": value}
            self._best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self._since_best = 0
            if self.out_dir and self.dist.is_main:
                write_atomic_dir(self.out_dir / BEST, self._write_best)
            return False
        self._since_best += 1
        return bool(self.config.patience) and self._since_best >= self.config.patience

    def _write_best(self, tmp: Path) -> None:
        self.sampling_model.save_pretrained(tmp, self._best_state)
        (tmp / "selection.json").write_text(json.dumps({**self.best, "split": "val", "metric": "validation loss"}))

    @property
    def selected_model(self) -> GenerativeModel:
        """The model to evaluate and sample: the best weights on validation when there was validation,
        else the sampling (EMA) weights."""
        if self._best_state is None or self.best["step"] == self.step:
            return self.sampling_model
        if self._selected is None or self._selected[0] != self.best["step"]:  # one copy per selection
            model = copy.deepcopy(self.sampling_model)
            model.load_state_dict(self._best_state)
            self._selected = (self.best["step"], model.eval())
        return self._selected[1]

    def _set_total_from_budget(self, per_step: float, budget_s: float, progress: ProgressReporter, tolerance: float = 0.0) -> None:
        est = self.step + int(max(0.0, budget_s - self.elapsed) / per_step)
        est = int(distributed.agree(max(est, self.step + 1), self.dist, op=torch.distributed.ReduceOp.MIN))
        if self.total_steps is None or abs(est - self.total_steps) > tolerance * self.total_steps:
            self.total_steps = est
            progress.set_total(self.total_steps)

    def _record(self, row: dict) -> None:
        """One row of the run's history: kept in memory, and appended to metrics.jsonl by the main process."""
        self.history.append(row)
        if self.out_dir and self.dist.is_main:
            with open(self.out_dir / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")

    def _log(self, window: dict, progress: ProgressReporter, local: int) -> None:
        means = distributed.mean_metrics({k: sum(v) / len(v) for k, v in window.items() if v}, self.dist)
        lr = self.optimizers[next(iter(self.optimizers))].param_groups[0]["lr"]
        row = {"event": "train", "step": self.step, "time": round(self.elapsed, 3), "lr": lr, **{k: round(v, 6) for k, v in means.items()}}
        if self.privacy:
            row.update(self.privacy.log_fields())  # the epsilon spent so far, from the accountant
        self._record(row)
        progress.update(self.step, {k: v for k, v in means.items() if k in ("loss", "loss_d", "loss_g")} or means)

    # ---- output folder, checkpoints, resume --------------------------------
    def _prepare_out_dir(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if has_checkpoint(self.out_dir):
            raise GenzooError(
                f"{self.out_dir} already holds a training run; pass --resume to continue it, or choose another --out"
            )
        for stale in (BEST, BEST + ".tmp", BEST + ".old", CHECKPOINT + ".tmp", "samples"):  # a run killed before its first checkpoint
            shutil.rmtree(self.out_dir / stale, ignore_errors=True)
        (self.out_dir / "metrics.jsonl").write_text("")
        self._write_run_file()

    def _write_run_file(self) -> None:
        """run.json: what was trained on what, with which settings (rewritten when a fit changes the model's config)."""
        run = {
            "family": self.model.family,
            "data": self.data_name,
            "model_config": self.model.config.to_dict(),
            "train_config": self.config.to_dict(),
            "parameters": self.model.num_parameters(),
            "world_size": self.dist.world_size,
            "device": str(self.device),
        }
        write_atomic_file(self.out_dir / "run.json", json.dumps(run, indent=2))

    def _process_state(self) -> dict:
        """What each process must restore for itself: its global RNG and the family's non-weight state."""
        state = {"torch_rng": torch.get_rng_state(), "model": self.model.training_state()}
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def save_checkpoint(self) -> None:
        """Write the checkpoint atomically (every process takes part: each hands over its own state)."""
        processes = distributed.gather_objects(self._process_state(), self.dist)
        self._last_save = time.monotonic()
        if not self.dist.is_main:
            return
        state = {
            "step": self.step,
            "total_steps": self.total_steps,
            "elapsed": self.elapsed,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "processes": processes,  # per rank, in rank order
            "best": self.best,
            "since_best": self._since_best,
            "seed": self.config.seed,  # changed by a divergence's restore
            "divergences": self._divergences,
            "privacy": self.privacy.state_dict() if self.privacy else None,  # the accountant's history
            "train_config": self.config.to_dict(),
            "data": self.data_name,
        }

        def fill(tmp: Path) -> None:
            self.sampling_model.save_pretrained(tmp)
            torch.save(state, tmp / "trainer_state.pt")

        write_atomic_dir(self.out_dir / CHECKPOINT, fill)

    def _load_state(self) -> None:
        if not self.out_dir:
            raise GenzooError("--resume needs the run folder (--out) of the run to continue")
        ckpt = resolve_checkpoint(self.out_dir, prefer_best=False)
        state = load_trainer_state(ckpt)
        try:
            self.model.load_state_dict(state["model"])
            if self.ema and state["ema"] is not None:
                self.ema.load_state_dict(state["ema"])
            for k, o in self.optimizers.items():
                o.load_state_dict(state["optimizers"][k])
        except (KeyError, RuntimeError, ValueError) as e:
            raise GenzooError(f"{ckpt} does not match this model and settings ({str(e)[:200]}); resume with the same family and config") from e
        if self.scaler and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self._restore_process_state(state, ckpt)
        self.step, self.total_steps, self.elapsed = state["step"], state["total_steps"], state["elapsed"]
        self.best, self._since_best = state.get("best"), state.get("since_best", 0)
        self._divergences = state.get("divergences", 0)
        if state.get("seed") is not None and state["seed"] != self.config.seed:  # the seed a divergence's restore chose
            self.config = self.config.replace(seed=state["seed"])
        if self.best and (self.out_dir / BEST / "model.safetensors").is_file():
            from safetensors.torch import load_file

            self._best_state = load_file(str(self.out_dir / BEST / "model.safetensors"))
        if self.config.steps is not None and self.config.steps != self.total_steps:
            self.total_steps = self.config.steps  # the user extended (or shortened) the run
        if self.privacy:
            self.privacy.load_state_dict(state.get("privacy"), self.total_steps)
        # Drop log lines written after the checkpoint we resume from, so the log has no repeats.
        log = self.out_dir / "metrics.jsonl"
        if log.exists() and self.dist.is_main:
            kept = [ln for ln in log.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= self.step]
            log.write_text("".join(ln + "\n" for ln in kept))

    def _recover_from_divergence(self, error: FloatingPointError) -> None:
        """After a non-finite loss or a divergence the family reported: restore the last checkpoint, change
        the seed (new data order and noise from there on), log it, and let the loop go on; re-raise when
        recovery is off (``divergence_retries`` 0), impossible (no checkpoint folder, several processes)
        or exhausted."""
        cfg = self.config
        if not cfg.divergence_retries or not self.out_dir or self.dist.world_size > 1 or not has_checkpoint(self.out_dir):
            raise error
        if self._divergences >= cfg.divergence_retries:
            raise FloatingPointError(f"{error}; still diverging after {self._divergences} restore(s) from the last "
                                     f"checkpoint with new seeds (divergence_retries={cfg.divergence_retries})") from error
        diverged_at, total, used = self.step, self.total_steps, self._divergences + 1
        self._load_state()
        self.total_steps = total if total is not None else self.total_steps  # a --minutes budget keeps its end
        self._divergences = used
        self.config = self.config.replace(seed=cfg.seed + DIVERGENCE_SEED_STRIDE)
        row = {"event": "diverged", "step": self.step, "diverged_at": diverged_at, "error": str(error)[:300],
               "new_seed": self.config.seed, "retry": used, "of": cfg.divergence_retries}
        self._record(row)  # retries need a run folder (its checkpoint), so out_dir is set here
        if self.dist.is_main:
            print(f"diverged at step {diverged_at} ({str(error)[:200]}): restored the checkpoint of step {self.step}, "
                  f"seed now {self.config.seed} (retry {used} of {cfg.divergence_retries})", file=sys.stderr)

    def _restore_process_state(self, state: dict, ckpt: Path) -> None:
        processes = state.get("processes") or [{"torch_rng": state["rng"], "model": {}}]  # older checkpoints: one RNG
        if len(processes) != self.dist.world_size and self.dist.is_main:
            print(f"note: {ckpt} was saved by {len(processes)} process(es) and resumes on {self.dist.world_size}; "
                  "per-process state is mapped by rank, so the run is no longer bit-identical to one that kept its size",
                  file=sys.stderr)
        mine = processes[self.dist.rank % len(processes)]
        torch.set_rng_state(mine["torch_rng"])
        if "cuda_rng" in mine and self.device.type == "cuda":
            torch.cuda.set_rng_state(mine["cuda_rng"], self.device)
        try:
            self.model.load_training_state(mine.get("model") or {})
        except (KeyError, RuntimeError, ValueError) as e:
            raise GenzooError(f"{ckpt}: the family's training state does not match this model ({str(e)[:200]})") from e

    def save_sample_grid(self, model: GenerativeModel | None = None, name: str | None = None) -> Path | None:
        if not self.dist.is_main or "sample" not in self.model.capabilities or self.data.kind == "tokens":
            return None  # text samples are written by `genzoo generate`, not as a grid
        from genzoo.viz.samples import save_samples

        model = model or self.sampling_model
        g = torch.Generator(device=self.device).manual_seed(self.config.seed)
        # audio: one clip per digit is enough to hear (an autoregressive clip is 8000 sequential steps)
        n = self.config.num_samples if self.data.kind == "image" else min(self.config.num_samples, 10) if self.data.kind == "audio" else 5000
        with model._eval_mode(), torch.no_grad():
            x = model.sample(n, generator=g)
        ref = self.data.x[:5000] if self.data.kind == "points" else None
        name = name or f"step_{self.step:06d}.png"
        return save_samples(x, self.out_dir / "samples" / name, self.model.data_spec, reference=ref)
