"""The mode-collapse alarm shows in `genzoo eval`'s printed report and in the bench table."""

from __future__ import annotations

from genzoo.bench.report import html_page, markdown
from genzoo.eval.report import format_report

HEALTHY = {"model": "gan", "data": "digits", "fd_digits": 80.0, "class_coverage": 1.0, "class_kl": 0.02}
COLLAPSED = {"model": "gan", "data": "digits", "fd_digits": 900.0, "class_coverage": 0.6, "class_kl": 0.45}


def test_eval_report_says_whether_the_alarm_is_raised_and_why():
    assert "mode-collapse alarm: not raised" in format_report(HEALTHY)
    text = format_report(COLLAPSED)
    assert "mode-collapse alarm: RAISED" in text
    assert "class coverage 0.60 < 1" in text and "class-histogram KL 0.450 nats > 0.1" in text
    # the KL rule alone raises it too
    assert "RAISED" in format_report({**HEALTHY, "class_kl": 0.2})
    # data without class metrics (toy2d, text) prints no alarm line
    assert "mode-collapse" not in format_report({"model": "gan", "data": "toy2d:moons", "mmd2": 0.01})


def test_bench_table_has_an_alarm_column_only_where_classes_were_read():
    rows = [{"family": "gan:dcgan", **HEALTHY}, {"family": "gan:wgan-gp", **COLLAPSED},
            {"family": "vae", "fd_digits": 70.0}]
    table = markdown(rows, "digits", {"minutes": 5})
    head = table.splitlines()[2]
    assert "collapse alarm" in head
    col = head.split("|").index(" collapse alarm ")
    cells = {line.split("|")[1].strip(): line.split("|")[col].strip() for line in table.splitlines()[4:] if line.startswith("|")}
    assert cells == {"gan:dcgan": "no", "gan:wgan-gp": "ALARM", "vae": "-"}
    assert "ALARM" in html_page(rows, "digits", {"minutes": 5})
    assert "collapse alarm" not in markdown([{"family": "gpt", "bits_per_char": 2.0}], "pydocs", {"minutes": 5})
