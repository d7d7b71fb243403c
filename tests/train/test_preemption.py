"""Preemption: SIGTERM / SIGINT finish the step, write a checkpoint and exit (143 / 130); SIGKILL
loses at most the steps since the last periodic checkpoint; and re-running the same command with
--resume always ends bit-identical to a run that was never interrupted (or starts fresh when the
run folder has no checkpoint yet). The first tests drive the real CLI in subprocesses."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import twoopt  # noqa: F401  (registers the test-only family "test-twoopt")
from genzoo.runs.checkpoint import resolve_checkpoint
from genzoo.data import load_dataset
from genzoo.train import Preempted, Trainer, TrainConfig
from twoopt import TwoOptConfig, TwoOptimizerGAN
from interrupt import at_step

STEPS = 300  # over a second of training for this model on one core: time to interrupt it at a random step
CHECKPOINT_EVERY = 50
TRAIN = ["train", "vae", "--data", "toy2d:moons", "--steps", str(STEPS), "--resume", "--no-eval",
         "--checkpoint-every", str(CHECKPOINT_EVERY), "--set", "hidden_widths=[64,64]", "--batch-size", "64"]


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="400")  # wide: rich must not wrap the messages we read
    env.setdefault("GENZOO_CACHE", str(Path(__file__).resolve().parents[2] / ".cache" / "genzoo"))
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(var, None)
    return env


def _command(out: Path) -> list[str]:
    return [sys.executable, "-m", "genzoo.cli", *TRAIN, "--out", str(out)]


def start(out: Path) -> subprocess.Popen:
    return subprocess.Popen(_command(out), env=_env(), cwd=out.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(_command(out), env=_env(), cwd=out.parent, capture_output=True, text=True, timeout=300)


def logged_steps(run_dir: Path) -> list[int]:
    """Steps of the complete training rows in metrics.jsonl (the file may be mid-write)."""
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return []
    steps = []
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line still being written
        if row.get("event") == "train":
            steps.append(row["step"])
    return steps


def wait_for_step(proc: subprocess.Popen, run_dir: Path, step: int, timeout: float = 120) -> int:
    """Block until the run has logged ``step`` (or later); the last logged step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        steps = logged_steps(run_dir)
        if steps and steps[-1] >= step:
            return steps[-1]
        if proc.poll() is not None:
            pytest.fail(f"training ended (rc {proc.returncode}) before step {step}:\n{proc.stderr.read()}")
        time.sleep(0.005)
    proc.kill()
    pytest.fail(f"no step {step} within {timeout} s")


def assert_same_final_state(reference: Path, other: Path) -> None:
    """The final checkpoints hold bit-identical weights (sampling and raw), optimizer state and log steps."""
    for name in ("checkpoint/model.safetensors", "best/model.safetensors"):
        a, b = load_file(str(reference / name)), load_file(str(other / name))
        assert a.keys() == b.keys(), name
        for k in a:
            assert torch.equal(a[k], b[k]), f"{name}: {k} differs"
    sa = torch.load(reference / "checkpoint" / "trainer_state.pt", weights_only=False)
    sb = torch.load(other / "checkpoint" / "trainer_state.pt", weights_only=False)
    assert sa["step"] == sb["step"] == STEPS
    for part in ("model", "ema"):
        assert sa[part].keys() == sb[part].keys()
        for k in sa[part]:
            assert torch.equal(sa[part][k], sb[part][k]), f"trainer state {part}: {k} differs"
    for name, opt in sa["optimizers"].items():
        for index, slots in opt["state"].items():
            for slot, value in slots.items():
                assert torch.equal(value, sb["optimizers"][name]["state"][index][slot]), f"optimizer {name} {index} {slot}"
    assert sa["best"] == sb["best"]

    def events(run_dir):
        return [(r["event"], r["step"]) for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())]

    assert events(reference) == events(other), "the resumed log must neither repeat nor skip steps"


class Reference:
    """One uninterrupted run of the command (also a --resume on an empty folder), started in the
    background as soon as a test asks for it and awaited only when a test compares with it."""

    def __init__(self, out: Path):
        self.out = out
        self.proc = start(out)
        self._result: subprocess.CompletedProcess | None = None

    def result(self) -> subprocess.CompletedProcess:
        if self._result is None:
            stdout, stderr = self.proc.communicate(timeout=300)
            self._result = subprocess.CompletedProcess(self.proc.args, self.proc.returncode, stdout, stderr)
        return self._result

    def finished(self) -> Path:
        result = self.result()
        assert result.returncode == 0, result.stderr
        return self.out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    ref = Reference(tmp_path_factory.mktemp("reference") / "run")
    yield ref
    if ref.proc.poll() is None:
        ref.proc.kill()
        ref.proc.communicate()


def test_sigterm_checkpoints_where_it_stopped_and_the_same_command_finishes_identically(reference, tmp_path):
    """Regression: SIGTERM killing the process (no handler), or stopping without a checkpoint (the
    rerun would repeat steps from the last periodic one), a wrong exit code, or a resume that is
    not exact."""
    rng = random.Random(12)
    target = rng.randrange(CHECKPOINT_EVERY, STEPS // 2, 25)  # a step that metrics.jsonl logs
    out = tmp_path / "run"
    proc = start(out)
    seen = wait_for_step(proc, out, target)
    time.sleep(rng.uniform(0, 0.05))  # land at some step between log lines
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    match = re.search(r"stopped\s+by\s+SIGTERM:\s+checkpoint\s+at\s+step\s+(\d+)", stderr)
    assert match, stderr
    stopped = int(match.group(1))
    assert seen <= stopped < STEPS
    state = torch.load(out / "checkpoint" / "trainer_state.pt", weights_only=False)
    assert state["step"] == stopped  # where it stopped, not the last multiple of --checkpoint-every
    assert logged_steps(out)[-1] <= stopped

    resumed = run(out)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    assert_same_final_state(reference.finished(), out)


def test_sigkill_then_the_same_command_resumes_from_the_last_periodic_checkpoint(reference, tmp_path):
    """Regression: a checkpoint that is not atomic (a kill mid-write leaves nothing to resume), or a
    resume that misses part of the state (optimizer, EMA, best weights, log): the rerun would not
    end where the uninterrupted run did."""
    rng = random.Random(13)
    target = rng.randrange(CHECKPOINT_EVERY + 25, STEPS // 2 + 50, 25)
    out = tmp_path / "run"
    proc = start(out)
    wait_for_step(proc, out, target)
    time.sleep(rng.uniform(0, 0.05))
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    ckpt = resolve_checkpoint(out, prefer_best=False)  # checkpoint/, or checkpoint.old if killed mid-swap
    step = torch.load(ckpt / "trainer_state.pt", weights_only=False)["step"]
    assert step % CHECKPOINT_EVERY == 0 and CHECKPOINT_EVERY <= step < STEPS

    resumed = run(out)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    assert_same_final_state(reference.finished(), out)


def test_resume_on_an_empty_folder_starts_fresh(reference):
    """Regression: --resume refusing (or crashing on) a folder with no checkpoint yet, which a
    scheduler's first launch of a preemptible job always sees."""
    out, result = reference.out, reference.result()
    assert result.returncode == 0, result.stderr
    assert re.search(r"starting\s+fresh", result.stderr), result.stderr
    assert f"trained {STEPS} steps" in result.stdout
    assert torch.load(out / "checkpoint" / "trainer_state.pt", weights_only=False)["step"] == STEPS


# ---- in process: the Trainer and the CLI's handling -------------------------------------------
DATA = "toy2d:8gaussians"


def make_gan(seed: int = 0):
    data = load_dataset(DATA, "train")
    torch.manual_seed(seed)
    return TwoOptimizerGAN(TwoOptConfig(data=data.spec())), data


def gan_config(**kw) -> TrainConfig:
    base = dict(steps=20, batch_size=32, lr=2e-3, warmup_steps=5, ema_decay=0.99, progress=False, checkpoint_every=10,
                log_every=5, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture
def no_pictures(monkeypatch):
    """Sample grids and the loss curve cost a second per run and prove nothing here."""
    import genzoo.viz.samples

    monkeypatch.setattr(Trainer, "save_sample_grid", lambda self, *a, **k: None)
    monkeypatch.setattr(genzoo.viz.samples, "save_loss_curve", lambda *a, **k: None)


def test_checkpoint_minutes_saves_on_wall_clock(tmp_path, monkeypatch, no_pictures):
    """Regression: --checkpoint-minutes missing from the CLI, or ignored by the Trainer (only the
    step-count checkpoints and the final one would be written)."""
    import typer.main

    from genzoo.cli.main import app

    train = typer.main.get_command(app).commands["train"]
    assert any("--checkpoint-minutes" in p.opts for p in train.params)

    saves: list[tuple[int, float]] = []
    save = Trainer.save_checkpoint

    def counted(self):
        saves.append((self.step, time.monotonic()))
        save(self)

    monkeypatch.setattr(Trainer, "save_checkpoint", counted)
    period = 0.001 * 60  # --checkpoint-minutes 0.001

    def slow_model():
        model, data = make_gan()
        step_fn = model.training_step

        def slow(batch, step, opt):
            time.sleep(0.01)
            return step_fn(batch, step, opt)

        model.training_step = slow
        return model, data

    model, data = slow_model()
    t0 = time.monotonic()
    Trainer(model, data, gan_config(steps=30, checkpoint_every=10**6), out_dir=tmp_path / "plain").fit()
    assert [s for s, _ in saves] == [30]  # the final save only

    saves.clear()
    model, data = slow_model()
    t0 = time.monotonic()
    Trainer(model, data, gan_config(steps=30, checkpoint_every=10**6, checkpoint_minutes=0.001), out_dir=tmp_path / "timed").fit()
    timed = saves[:-1]  # the last one is the final save
    assert saves[-1][0] == 30
    assert len(timed) >= 2, saves
    times = [t0] + [t for _, t in timed]
    assert all(b - a >= period * 0.99 for a, b in zip(times, times[1:])), "a timed save came before its period"


def test_sigint_finishes_the_step_checkpoints_and_resumes_exactly(tmp_path, no_pictures):
    """Regression: SIGINT not handled like SIGTERM (a KeyboardInterrupt would lose the steps since
    the last periodic checkpoint), the step not finished before stopping, the handler left
    installed after fit(), or per-process state (the replay buffer) not surviving the resume."""
    k = random.Random(15).randrange(3, 18)
    straight, data = make_gan()
    Trainer(straight, data, gan_config(), out_dir=tmp_path / "straight").fit()

    model, _ = make_gan()
    trainer = Trainer(model, data, gan_config(), out_dir=tmp_path / "interrupted")
    at_step(model, k, lambda: os.kill(os.getpid(), signal.SIGINT))  # arrives mid-step; the Trainer acts once the step is done
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(Preempted) as stop:
        trainer.fit()
    assert signal.getsignal(signal.SIGINT) is handler
    assert stop.value.signum == signal.SIGINT and 128 + stop.value.signum == 130
    assert stop.value.step == k + 1 and "SIGINT" in str(stop.value)
    state = torch.load(tmp_path / "interrupted" / "checkpoint" / "trainer_state.pt", weights_only=False)
    assert state["step"] == k + 1
    assert state["processes"][0]["model"]["replay_count"] == (k + 1) * 8

    fresh, _ = make_gan(seed=123)  # different init: everything must come from the checkpoint
    Trainer(fresh, data, gan_config(), out_dir=tmp_path / "interrupted").fit(resume=True)
    for (name, a), b in zip(straight.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    assert torch.equal(fresh.replay, straight.replay) and fresh.replay_count == straight.replay_count
    ema_a = load_file(str(tmp_path / "straight" / "checkpoint" / "model.safetensors"))
    ema_b = load_file(str(tmp_path / "interrupted" / "checkpoint" / "model.safetensors"))
    assert all(torch.equal(ema_a[key], ema_b[key]) for key in ema_a)


def test_cli_exits_130_on_sigint_with_a_checkpoint(tmp_path, monkeypatch, no_pictures):
    """Regression: the CLI mapping Preempted to another exit code (or to a traceback)."""
    from typer.testing import CliRunner

    from genzoo.cli.main import app
    from genzoo.models.vae import VAE

    k = random.Random(16).randrange(2, 12)
    step_fn = VAE.training_step

    def interrupt(self, batch, step, opt):
        if step == k:
            os.kill(os.getpid(), signal.SIGINT)
        return step_fn(self, batch, step, opt)

    monkeypatch.setattr(VAE, "training_step", interrupt)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "vae", "--data", "toy2d:moons", "--steps", "30", "--out", str(out), "--no-eval",
                                      "--set", "hidden_widths=[16]", "--batch-size", "32", "--checkpoint-every", "1000"],
                                env={"COLUMNS": "400"})
    assert result.exit_code == 130, result.output
    assert "SIGINT" in result.output and "--resume" in result.output
    assert torch.load(out / "checkpoint" / "trainer_state.pt", weights_only=False)["step"] == k + 1
