"""`genzoo choose`: recommend a family for a dataset and a goal, from a successive-halving run
of every family that handles the data (``genzoo.bench.choose``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from genzoo.cli.app import GenzooTyper, JsonFlag, note, say
from genzoo.core.errors import GenzooError

app = GenzooTyper()


@app.command("choose")
def choose_cmd(
    data: str = typer.Option(..., "--data", "-d", help="dataset name or path (see `genzoo list`)"),
    goal: str = typer.Option("quality", help="quality | likelihood | speed | diversity | privacy | small-model"),
    minutes: float = typer.Option(5.0, help="ONE total budget, training and evaluation of every candidate together"),
    out_dir: Path = typer.Option(Path("choose_runs"), "--out", "-o", help="the report (choose.md, choose_tradeoff.png, choose.json) and the runs"),
    families_: Optional[str] = typer.Option(None, "--families", help="comma-separated candidates (default: every family that handles the data)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan and its expected time; train nothing"),
    steps: Optional[int] = typer.Option(None, help="cap every run at N steps (quick checks)"),
    seed: int = typer.Option(0),
    as_json: JsonFlag = False,
) -> None:
    """Train every family that handles the data under one budget (successive halving), evaluate
    with the project's metrics and floors, and recommend one with its evidence."""
    from genzoo.bench.choose import GOALS, choose, dry_run as make_plan, format_plan

    if goal not in GOALS:
        raise GenzooError(f"unknown goal {goal!r}; choose one of {', '.join(GOALS)}")
    if minutes <= 0:
        raise GenzooError(f"--minutes must be positive, got {minutes}")
    names = [n.strip() for n in families_.split(",") if n.strip()] if families_ else None
    if dry_run:
        p = make_plan(data, minutes, goal, names)
        say(json.dumps(p, default=str) if as_json else format_plan(p))
        return
    d = choose(data, goal=goal, minutes=minutes, out_dir=out_dir, families=names, seed=seed, steps=steps, say=note)
    if as_json:
        say(json.dumps({k: v for k, v in d.items() if k != "evidence"}, default=str))
        return
    if d["recommendation"] is None:
        raise GenzooError(f"no recommendation: every candidate failed; see {d['report']}")
    say(f"recommend {d['recommendation']} for {data} (goal {goal}): {d['explanation']}")
    say(f"report: {d['report']}  plot: {out_dir / 'choose_tradeoff.png'}  runs: {out_dir}/round*/  ({d['wall_seconds']:.0f} s)")
    if d.get("store_id") is not None:
        say(f"recorded in the store as generation {d['store_id']}")
    elif d.get("store_error"):
        note(f"warning: the decision was not recorded in the store ({d['store_error']}); the report has it")
