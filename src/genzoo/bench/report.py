"""Bench results as JSON, a Markdown table and an HTML page with the sample grids."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from genzoo.core.atomic import write_atomic_file

# (metric key, column title, format); a column shows only if some row has the key.
COLUMNS = [
    ("family", "family", "{}"),
    ("parameters", "params", "{:,}"),
    ("train_steps", "steps", "{}"),
    ("selected_step", "selected at", "{}"),  # the step whose weights had the lowest validation loss
    ("train_seconds", "train s", "{:.0f}"),
    ("train_steps_per_second", "steps/s", "{:.2f}"),
    ("nll_nats_per_image", "NLL nats/image", "{:.2f}"),
    ("nll_bits_per_dim", "bits/dim", "{:.3f}"),
    ("nll_nats_per_point", "NLL nats/point", "{:.3f}"),
    ("likelihood", "NLL is", "{}"),
    ("fd_digits", "FD_digits", "{:.2f}"),
    ("precision", "precision", "{:.3f}"),
    ("recall", "recall", "{:.3f}"),
    ("density", "density", "{:.3f}"),
    ("coverage", "coverage", "{:.3f}"),
    ("class_coverage", "class cov.", "{:.2f}"),
    ("class_kl", "class KL", "{:.3f}"),
    ("collapse_alarm", "collapse alarm", "{}"),  # genzoo.eval.collapse.alarm_from_metrics, from the two columns before
    ("mmd2", "MMD^2", "{:.4f}"),
    ("bits_per_char", "bits/char", "{:.3f}"),
    ("bz2_bits_per_char", "bz2 bits/char (ref.)", "{:.3f}"),
    ("xz_bits_per_char", "xz bits/char (ref.)", "{:.3f}"),
    ("bits_per_token", "bits/token", "{:.3f}"),
    ("parse_share", "parses", "{:.2f}"),
    ("distinct_2", "distinct-2", "{:.3f}"),
    ("tokens_per_second", "tokens/s", "{:,.0f}"),
    # audio (genzoo.eval.audio_report): the listener's verdicts; floor = real test clips in place of samples
    ("nll_bits_per_sample", "bits/sample", "{:.3f}"),
    ("heard_as_asked", "heard as asked", "{:.2f}"),
    ("fd_audio", "FD (listener)", "{:.1f}"),
    ("audio_seconds_per_second", "audio s per s", "{:.2f}"),
    # tables (genzoo.eval.tables); floors: real validation rows in place of the synthetic ones
    ("quality", "quality (SDMetrics)", "{:.3f}"),
    ("ml_efficacy", "ML efficacy", "{:.3f}"),
    ("detection_auc", "detection AUC", "{:.3f}"),
    ("dcr_below_test_p5", "DCR<p5", "{:.3f}"),
    ("exact_copies", "exact copies", "{:.3f}"),
    # memorization (genzoo.eval.memorization); their floor is the validation split in place of samples
    ("copy_exact_share", "copies", "{:.3f}"),
    ("copy_nn_below_p5_share", "NN<p5", "{:.3f}"),
    ("copy_ct", "C_T", "{:+.2f}"),
    ("samples_per_second", "samples/s", "{:.1f}"),
    ("notes", "notes", "{}"),
    ("error", "error", "{}"),
]
FLOOR_SUFFIX = "_floor"
MEMORIZATION_KEYS = ("copy_exact_share", "copy_nn_below_p5_share", "copy_ct")
FLOOR_LABEL = "real-vs-real floor"
MEMORIZATION_NOTE = (
    "Memorization columns: copies = share of samples identical to a training example; NN<p5 = share nearer "
    "a training example than 95% of test examples are (5% = no copying); C_T = the data-copying test of "
    "Meehan et al. 2020 (about 0 = neither; << 0 copying, >> 0 underfitting). Their "
    f"{FLOOR_LABEL} is validation examples in place of samples."
)


def _cell(row: dict, key: str, fmt: str) -> str:
    v = row.get(key)
    if v is None:
        return "-"
    try:
        return fmt.format(v)
    except (ValueError, TypeError):
        return str(v)


def _with_alarm(row: dict) -> dict:
    """The row with ``collapse_alarm`` ("ALARM" or "no") where it has class coverage and class KL."""
    from genzoo.eval.collapse import alarm_from_metrics

    alarm = alarm_from_metrics(row)
    return row if alarm is None else {**row, "collapse_alarm": "ALARM" if alarm["alarm"] else "no"}


def _table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    rows = [_with_alarm(r) for r in rows]
    cols = [(k, t, f) for k, t, f in COLUMNS if any(k in r for r in rows)]
    body = [[_cell(r, k, f) for k, _, f in cols] for r in rows]
    scored = next((r for r in rows if any(k.endswith(FLOOR_SUFFIX) for k in r)), {})  # error rows have no floors
    floors = {k: scored[k + FLOOR_SUFFIX] for k, _, _ in cols if scored.get(k + FLOOR_SUFFIX) is not None}
    if floors:
        body.append([FLOOR_LABEL] + [_cell(floors, k, f) if k in floors else "" for k, _, f in cols[1:]])
    return [t for _, t, _ in cols], body


def markdown(rows: list[dict], data: str, budget: dict) -> str:
    head, body = _table(rows)
    b = f"{budget['minutes']} min" if budget.get("minutes") else f"{budget.get('steps')} steps"
    lines = [f"### genzoo bench on {data}, {b} per family", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    if _has_memorization(rows):
        lines += ["", MEMORIZATION_NOTE]
    return "\n".join(lines) + "\n"


def _has_memorization(rows: list[dict]) -> bool:
    return any(k in r for r in rows for k in MEMORIZATION_KEYS)


def html_page(rows: list[dict], data: str, budget: dict) -> str:
    head, body = _table(rows)
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
    cards = []
    for r in rows:
        img = ""
        if r.get("samples_png") and Path(r["samples_png"]).is_file():
            b64 = base64.b64encode(Path(r["samples_png"]).read_bytes()).decode()
            img = f'<img src="data:image/png;base64,{b64}" alt="samples of {html.escape(r["family"])}">'
            wav = Path(r["samples_png"]).with_suffix(".wav")  # audio runs write the clips beside their spectrograms
            if wav.is_file():
                b64 = base64.b64encode(wav.read_bytes()).decode()
                img += f'<br><audio controls src="data:audio/wav;base64,{b64}"></audio>'
        cards.append(f'<figure>{img}<figcaption>{html.escape(r["family"])}</figcaption></figure>')
    b = f"{budget['minutes']} min" if budget.get("minutes") else f"{budget.get('steps')} steps"
    memorization_note = f"<p>{html.escape(MEMORIZATION_NOTE)}</p>" if _has_memorization(rows) else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>genzoo bench: {html.escape(data)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}
figure{{display:inline-block;margin:1em;text-align:center}}img{{image-rendering:pixelated;max-width:320px}}</style></head>
<body><h1>genzoo bench on {html.escape(data)}</h1><p>Budget: {b} per family. Sample-quality scores sit beside the
real-vs-real floor (training images scored against the test images at the same sample size).</p>
{memorization_note}
<table><tr>{th}</tr>{trs}</table><h2>Samples</h2>{''.join(cards)}</body></html>"""


def write_reports(rows: list[dict], data: str, out_dir: Path, budget: dict) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = markdown(rows, data, budget)
    write_atomic_file(out_dir / "results.json", json.dumps({"data": data, "budget": budget, "rows": rows}, indent=2))
    write_atomic_file(out_dir / "results.md", md)
    write_atomic_file(out_dir / "report.html", html_page(rows, data, budget))
    return {"rows": rows, "markdown": md}
