"""What the web pages show, computed without a request: run folders read, charts drawn as SVG.

Everything here returns plain data or SVG markup built only from numbers and escaped text, so the
templates can mark it safe. No file outside a served run folder is ever read (``run_file``).
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

# Content the gallery serves back from the store: raster images and audio only. SVG or HTML in a
# record would run script on our origin if opened directly, so they are shown as text, never served.
SAFE_IMAGE = ("image/png", "image/jpeg", "image/gif", "image/webp")
SAFE_AUDIO = ("audio/wav", "audio/x-wav", "audio/wave", "audio/mpeg", "audio/ogg", "audio/webm", "audio/flac", "audio/mp4")
MAX_SAMPLES_SHOWN = 6
MAX_MANIFEST_CHARS = 200_000


def media_kind(content_type: str | None) -> str | None:
    """"image", "audio" or None (not served: shown as text or as its size only)."""
    ct = (content_type or "").split(";")[0].strip().lower()
    if ct in SAFE_IMAGE:
        return "image"
    if ct in SAFE_AUDIO:
        return "audio"
    return None


# ---- run folders ---------------------------------------------------------------------------------
@dataclass
class RunPage:
    name: str
    path: Path
    curves: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # series -> (step, value)
    pictures: list[str] = field(default_factory=list)  # loss.png and the like: paths relative to the run
    samples: list[str] = field(default_factory=list)  # samples/*.png, newest last
    eval_rows: list[tuple[str, str, str]] = field(default_factory=list)  # metric, score, floor ("-" if none)
    eval_other: list[tuple[str, str]] = field(default_factory=list)  # the rest of eval.json (no floor)
    manifest: str | None = None  # run.json, pretty-printed
    problems: list[str] = field(default_factory=list)  # files present but unreadable, in words


def read_run(name: str, path: Path) -> RunPage:
    page = RunPage(name, path)
    metrics = path / "metrics.jsonl"
    if metrics.is_file():
        page.curves = _curves(metrics, page.problems)
    else:
        csv = path / "metrics.csv"
        if csv.is_file():
            page.curves = _curves_csv(csv, page.problems)
    page.pictures = [p.name for p in sorted(path.glob("*.png"))]
    samples = sorted((path / "samples").glob("*.png")) if (path / "samples").is_dir() else []
    page.samples = [f"samples/{p.name}" for p in samples[-MAX_SAMPLES_SHOWN:]]
    ev = path / "eval.json"
    if ev.is_file():
        try:
            page.eval_rows, page.eval_other = eval_table(json.loads(ev.read_text()))
        except (OSError, ValueError) as e:
            page.problems.append(f"eval.json could not be read: {e}")
    for manifest in ("run.json", "manifest.json"):
        m = path / manifest
        if m.is_file():
            try:
                page.manifest = json.dumps(json.loads(m.read_text()), indent=2, ensure_ascii=False)[:MAX_MANIFEST_CHARS]
            except (OSError, ValueError) as e:
                page.problems.append(f"{manifest} could not be read: {e}")
            break
    return page


def _curves(path: Path, problems: list[str]) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        problems.append(f"{path.name} could not be read: {e}")
        return out
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line being written as we read
        if not isinstance(row, dict) or not isinstance(row.get("step"), (int, float)):
            continue
        for key, value in row.items():
            if key in ("step", "time", "lr", "event") or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if "loss" in key and math.isfinite(value):
                out.setdefault(key, []).append((float(row["step"]), float(value)))
    for pts in out.values():  # a resumed run may log a step twice: keep the last value of each step
        dedup = dict(pts)
        pts[:] = sorted(dedup.items())
    return out


def _curves_csv(path: Path, problems: list[str]) -> dict[str, list[tuple[float, float]]]:
    import csv

    out: dict[str, list[tuple[float, float]]] = {}
    try:
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                try:
                    step = float(row.get("step", ""))
                except ValueError:
                    continue
                for key, value in row.items():
                    if key and "loss" in key:
                        try:
                            v = float(value)
                        except (TypeError, ValueError):
                            continue
                        if math.isfinite(v):
                            out.setdefault(key, []).append((step, v))
    except OSError as e:
        problems.append(f"{path.name} could not be read: {e}")
    return out


def eval_table(metrics: dict) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """(metric, score, floor) for every score that has a floor, then every other plain value."""
    if not isinstance(metrics, dict):
        return [], []
    rows, other = [], []
    for key, value in metrics.items():
        if key.endswith("_floor"):
            continue
        floor = metrics.get(key + "_floor")
        if floor is not None:
            rows.append((key, fmt(value), fmt(floor)))
        elif isinstance(value, (str, int, float, bool)) or value is None:
            other.append((key, fmt(value)))
    return rows, other


def fmt(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)[:500]


def run_file(run: Path, rel: str) -> Path | None:
    """``rel`` inside ``run`` as a PNG that exists, or None: no '..', no link out, no other type."""
    if not rel or rel.startswith(("/", "\\")) or "\\" in rel or not rel.lower().endswith(".png"):
        return None
    root = run.resolve()
    target = (root / rel).resolve()
    if root not in target.parents or not target.is_file():
        return None
    return target


# ---- bench report --------------------------------------------------------------------------------
def read_bench(path: Path | None) -> dict | None:
    """{"data", "budget", "head", "body", "path"} from a ``genzoo bench`` results.json, or None."""
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        return None
    try:
        report = json.loads(path.read_text())
        rows = report["rows"]
        from genzoo.bench.report import _table

        head, body = _table(rows)
    except Exception as e:  # noqa: BLE001  (a broken report is shown as a sentence, not a 500)
        return {"path": str(path), "error": f"the bench report {path.name} could not be read: {e}"}
    return {"path": str(path), "data": report.get("data", "?"), "budget": report.get("budget", {}), "head": head, "body": body}


# ---- charts --------------------------------------------------------------------------------------
COLORS = ("#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#4a5568")


def line_chart(series: dict[str, list[tuple[float, float]]], *, title: str, width: int = 640, height: int = 300) -> str:
    """An inline SVG line chart (x: step, y: value), with its axes labelled and a text legend."""
    pts = [p for s in series.values() for p in s]
    if not pts:
        return ""
    left, right, top, bottom = 56, 12, 12, 36
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pad = (y1 - y0) * 0.05
    y0, y1 = y0 - pad, y1 + pad

    def sx(x):
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y):
        return top + (1 - (y - y0) / (y1 - y0)) * (height - top - bottom)

    e = html.escape
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-labelledby="chart-title-{id(series)}">',
             f'<title id="chart-title-{id(series)}">{e(title)}</title>',
             f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" class="plot"/>']
    for i in range(5):
        v = y0 + (y1 - y0) * i / 4
        y = sy(v)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{v:.3g}</text>')
    for i in range(5):
        v = x0 + (x1 - x0) * i / 4
        x = sx(v)
        parts.append(f'<text x="{x:.1f}" y="{height - bottom + 16}" text-anchor="middle" class="tick">{v:.0f}</text>')
    parts.append(f'<text x="{(left + width - right) / 2:.0f}" y="{height - 4}" text-anchor="middle" class="axis">step</text>')
    for i, (name, s) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s)
        if len(s) == 1:
            x, y = s[0]
            parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}"><title>{e(name)}</title></circle>')
        else:
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"><title>{e(name)}</title></polyline>')
        parts.append(f'<text x="{left + 8}" y="{top + 16 + 16 * i}" fill="{color}" class="legend">{e(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(bars: list[tuple[str, dict[str, int]]], *, title: str, width: int = 640, height: int = 280) -> str:
    """Stacked bars: one per label (e.g. a day), one segment per key (e.g. a model)."""
    if not bars:
        return ""
    keys: list[str] = []
    for _, parts in bars:
        for k in parts:
            if k not in keys:
                keys.append(k)
    top_value = max(sum(p.values()) for _, p in bars) or 1
    left, right, top, bottom = 44, 12, 12, 48
    slot = (width - left - right) / len(bars)
    bw = max(2.0, min(48.0, slot * 0.7))
    e = html.escape
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-labelledby="bar-title">',
           f'<title id="bar-title">{e(title)}</title>',
           f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" class="plot"/>']
    h = height - top - bottom
    for i in range(5):
        v = top_value * i / 4
        y = top + h - h * i / 4
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{v:.3g}</text>')
    every = max(1, math.ceil(len(bars) / 8))
    for i, (label, parts) in enumerate(bars):
        x = left + slot * i + (slot - bw) / 2
        y = top + h
        for k in keys:
            n = parts.get(k, 0)
            if not n:
                continue
            bh = h * n / top_value
            y -= bh
            color = COLORS[keys.index(k) % len(COLORS)]
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw:.1f}" height="{bh:.1f}" fill="{color}">'
                       f'<title>{e(label)} {e(k)}: {n}</title></rect>')
        if i % every == 0:
            out.append(f'<text x="{x + bw / 2:.1f}" y="{top + h + 16}" text-anchor="middle" class="tick">{e(label[5:])}</text>')
    for i, k in enumerate(keys[:6]):
        out.append(f'<text x="{left + 8}" y="{top + 16 + 16 * i}" fill="{COLORS[i % len(COLORS)]}" class="legend">{e(k)}</text>')
    out.append("</svg>")
    return "".join(out)
