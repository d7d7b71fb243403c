import json
import os

import pytest
import torch
import torch.multiprocessing as mp

from genzoo.core.atomic import write_atomic_dir
from genzoo.runs.checkpoint import load_model
from genzoo.data import load_dataset
from genzoo.core.errors import GenzooError
from genzoo.train import Trainer, TrainConfig, batch_indices, distributed
from twoopt import TwoOptConfig, TwoOptimizerGAN
from interrupt import crash_at

DATA = "toy2d:8gaussians"


def make_model(seed=0):
    data = load_dataset(DATA, "train")
    torch.manual_seed(seed)
    return TwoOptimizerGAN(TwoOptConfig(data=data.spec())), data


def cfg(**kw):
    base = dict(steps=40, batch_size=32, lr=2e-3, warmup_steps=5, ema_decay=0.99, progress=False, checkpoint_every=10, log_every=5)
    base.update(kw)
    return TrainConfig(**base)


def flat(model):
    return torch.cat([t.detach().flatten().float() for t in model.state_dict().values()])


def test_batches_are_a_permutation_per_epoch():
    n, b = 100, 10
    rows = torch.cat([batch_indices(n, b, s, seed=3) for s in range(10)])
    assert sorted(rows.tolist()) == list(range(n))
    assert not torch.equal(batch_indices(n, b, 0, 3), batch_indices(n, b, 10, 3))  # reshuffled next epoch


def test_same_seed_same_weights():
    a, data = make_model()
    Trainer(a, data, cfg(steps=15)).fit()
    b, _ = make_model()
    Trainer(b, data, cfg(steps=15)).fit()
    assert torch.equal(flat(a), flat(b))


def test_every_optimizer_updates_its_own_parameters():
    model, data = make_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    Trainer(model, data, cfg(steps=3, ema_decay=None)).fit()
    after = model.state_dict()
    for k in before:
        if k.startswith(("generator", "critic")):
            assert not torch.equal(before[k], after[k]), f"{k} was never updated"
    assert model.training_state()["replay_count"] == 3 * 8
    assert not any("replay" in k for k in after), "training state must stay out of the weights"


def test_exact_resume_after_interruption(tmp_path):
    straight, data = make_model()
    Trainer(straight, data, cfg(), out_dir=tmp_path / "straight").fit()

    model, _ = make_model()
    trainer = Trainer(model, data, cfg(), out_dir=tmp_path / "resumed")
    crash_at(model, 25)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    state = torch.load(tmp_path / "resumed" / "checkpoint" / "trainer_state.pt", weights_only=False)
    assert state["step"] == 20  # the last periodic checkpoint before the crash

    fresh, _ = make_model(seed=123)  # different init: everything must come from the checkpoint
    Trainer(fresh, data, cfg(), out_dir=tmp_path / "resumed").fit(resume=True)
    assert torch.equal(flat(fresh), flat(straight))
    saved_straight = load_model(tmp_path / "straight")
    saved_resumed = load_model(tmp_path / "resumed")
    assert torch.equal(flat(saved_straight), flat(saved_resumed))  # EMA weights too
    steps = [json.loads(l)["step"] for l in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)), "log lines after the checkpoint must not repeat on resume"


def test_run_folder_outputs(tmp_path):
    model, data = make_model()
    summary = Trainer(model, data, cfg(steps=20), out_dir=tmp_path).fit()
    assert summary["steps"] == 20
    for name in ("run.json", "metrics.jsonl", "loss.png", "checkpoint/config.json", "checkpoint/model.safetensors", "checkpoint/trainer_state.pt"):
        assert (tmp_path / name).is_file(), name
    assert list((tmp_path / "samples").glob("*.png"))
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 20 and "loss_d" in rows[-1] and "lr" in rows[-1]


def test_refuses_to_overwrite_a_run(tmp_path):
    model, data = make_model()
    Trainer(model, data, cfg(steps=5), out_dir=tmp_path).fit()
    with pytest.raises(GenzooError, match="--resume"):
        Trainer(make_model()[0], data, cfg(steps=5), out_dir=tmp_path).fit()


def test_minutes_budget_stops_and_fixes_the_schedule():
    model, data = make_model()
    t = Trainer(model, data, cfg(steps=None, minutes=0.05))
    summary = t.fit()
    assert 20 < summary["steps"] and summary["train_seconds"] < 0.05 * 60 + 2
    assert t.total_steps is not None


def test_minutes_budget_is_re_estimated_after_a_slow_start():
    import time

    model, data = make_model()
    step_fn = model.training_step

    def slow_start(batch, step, opt):  # the first steps are 10x slower than the rest
        time.sleep(0.03 if step < 20 else 0.003)
        return step_fn(batch, step, opt)

    model.training_step = slow_start
    summary = Trainer(model, data, cfg(steps=None, minutes=0.05)).fit()
    # From the first 20 steps alone the run would end after about 100 steps and 1 of its 3 seconds.
    assert summary["train_seconds"] > 0.8 * 3 and summary["steps"] > 200


def test_minutes_budget_is_re_estimated_when_the_machine_frees_up_later():
    """Regression: the budget was re-timed only over its first tenth, so a run that shared the cores
    for longer (a test suite beside it) stopped at 55-70% of its minutes once the load ended."""
    import time

    model, data = make_model()
    step_fn = model.training_step
    t0 = time.perf_counter()

    def busy_then_free(batch, step, opt):  # slow for the first 40% of the 3 s budget, then 10x faster
        time.sleep(0.03 if time.perf_counter() - t0 < 1.2 else 0.003)
        return step_fn(batch, step, opt)

    model.training_step = busy_then_free
    summary = Trainer(model, data, cfg(steps=None, minutes=0.05)).fit()
    assert summary["train_seconds"] > 0.8 * 3, summary


def test_nan_loss_is_a_clear_error_and_keeps_the_checkpoint(tmp_path):
    model, data = make_model()
    trainer = Trainer(model, data, cfg(steps=30), out_dir=tmp_path)
    original = model.training_step

    def poison(batch, step, opt):
        if step == 15:
            batch.x = batch.x * float("nan")
        return original(batch, step, opt)

    model.training_step = poison
    with pytest.raises(GenzooError, match="diverged at step 15"):
        trainer.fit()
    state = torch.load(tmp_path / "checkpoint" / "trainer_state.pt", weights_only=False)
    assert state["step"] == 10
    assert torch.isfinite(flat(load_model(tmp_path))).all()


def test_atomic_write_keeps_old_checkpoint_when_writing_fails(tmp_path):
    target = tmp_path / "ckpt"
    write_atomic_dir(target, lambda d: (d / "a.txt").write_text("good"))

    def broken(d):
        (d / "a.txt").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_atomic_dir(target, broken)
    assert (target / "a.txt").read_text() == "good"


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    model, data = make_model()
    Trainer(model, data, cfg(steps=5), out_dir=tmp_path).fit()
    (tmp_path / "checkpoint" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(GenzooError, match="corrupt"):
        load_model(tmp_path)
    (tmp_path / "checkpoint" / "config.json").write_text("{oops")
    with pytest.raises(GenzooError, match="corrupt"):
        load_model(tmp_path)
    with pytest.raises(GenzooError, match="does not exist"):
        load_model(tmp_path / "nowhere")


def _ddp_worker(rank, world, init_file, out, run_dir):
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    model, data = make_model()
    Trainer(model, data, cfg(steps=20), out_dir=run_dir).fit()
    if rank == 0:
        torch.save(model.state_dict(), out)
    distributed.shutdown()


def test_two_processes_match_one_at_the_same_global_batch(tmp_path):
    out = tmp_path / "ddp.pt"
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(out), str(tmp_path / "run")), nprocs=2, join=True)
    single, data = make_model()
    Trainer(single, data, cfg(steps=20)).fit()
    ddp = torch.load(out)
    for k, v in single.state_dict().items():
        torch.testing.assert_close(ddp[k], v, rtol=1e-4, atol=1e-5, msg=k)
    # every process handed its own state to the checkpoint (rank 0 wrote it)
    processes = torch.load(tmp_path / "run" / "checkpoint" / "trainer_state.pt", weights_only=False)["processes"]
    assert len(processes) == 2 and all(p["model"]["replay_count"] == 20 * 8 for p in processes)
    torch.testing.assert_close(processes[1]["model"]["replay"], single.training_state()["replay"], rtol=1e-4, atol=1e-5)
