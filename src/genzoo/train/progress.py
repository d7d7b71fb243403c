"""Progress display: a rich progress bar on a terminal, plain log lines elsewhere (CI, files)."""

from __future__ import annotations

import sys
import time


def _fmt_eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


class ProgressReporter:
    def __init__(self, total: int | None, start_step: int, enabled: bool, desc: str = "train"):
        self.enabled = enabled
        self.total, self.start_step, self.desc = total, start_step, desc
        self.t0 = time.perf_counter()
        self.bar = None
        self.last_line = 0.0
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:.1f} it/s"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                transient=False,
            )
            self.task = self.bar.add_task(desc, total=total, completed=start_step, rate=0.0, info="")
            self.bar.start()

    def set_total(self, total: int) -> None:
        self.total = total
        if self.bar is not None:
            self.bar.update(self.task, total=total)

    def update(self, step: int, info: dict[str, float]) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.t0
        rate = (step - self.start_step) / elapsed if elapsed > 0 else 0.0
        text = "  ".join(f"{k} {v:.4g}" for k, v in info.items())
        if self.bar is not None:
            self.bar.update(self.task, completed=step, rate=rate, info=text)
            return
        now = time.perf_counter()
        if now - self.last_line < 5 and step != self.total:  # plain lines at most every 5 s
            return
        self.last_line = now
        eta = (self.total - step) / rate if (self.total and rate) else float("nan")
        total = f"/{self.total}" if self.total else ""
        eta_s = _fmt_eta(eta) if eta == eta else "?"
        print(f"[{self.desc}] step {step}{total}  {rate:.1f} it/s  ETA {eta_s}  {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
