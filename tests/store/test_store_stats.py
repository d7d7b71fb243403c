"""Usage and feedback over time per model: counts per day and ISO week, mean ratings and labels
counted when given, visibility, the table and the PNG chart of `genzoo stats`; on SQLite and on
PostgreSQL (a real server, see pg_server.py)."""

import time
from datetime import datetime

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from genzoo.cli.main import app
from genzoo.core.errors import GenzooError
from genzoo.store import stats
from genzoo.store.api import Store
from genzoo.store.records import ModelRecord

from test_store import db  # noqa: F401  (the store's location, per test: a SQLite file or a PostgreSQL database)


def at(day: str) -> float:
    return datetime.fromisoformat(day + "T12:00:00+00:00").timestamp()


@pytest.fixture
def usage(db, monkeypatch):
    """gpt: 2 generations on Mon 2026-11-23, 1 on Wed 11-25 (rated 4 and 2 on 11-25, one 'good'
    label on 12-01); vae: 1 on Mon 11-30, unrated. Times set by faking the clock."""
    clock = {"now": at("2026-11-23")}
    monkeypatch.setattr(time, "time", lambda: clock["now"])
    with Store.open(db, encoder=None) as s:
        gpt = s.register_model(ModelRecord(name="gpt-small", family="gpt"))
        a = s.record(kind="text", text="one", model_id=gpt)
        b = s.record(kind="text", text="two", model_id=gpt)
        clock["now"] = at("2026-11-25")
        s.record(kind="text", text="three", model_id=gpt)
        s.feedback(a, rating=4)
        s.feedback(b, rating=2, label="bad")
        clock["now"] = at("2026-11-30")
        s.record(kind="image", content=b"png", family="vae")
        clock["now"] = at("2026-12-01")
        s.feedback(a, label="good")
    monkeypatch.undo()
    return db


def test_usage_per_day_and_week(usage):
    with Store.open(usage, encoder=None) as s:
        days = [(r.period, r.model, r.generations, r.ratings, r.mean_rating, dict(r.labels)) for r in stats.usage(s, "day")]
        assert days == [("2026-11-23", "gpt-small", 2, 0, None, {}), ("2026-11-25", "gpt-small", 1, 2, 3.0, {"bad": 1}),
                        ("2026-11-30", "vae", 1, 0, None, {}), ("2026-12-01", "gpt-small", 0, 0, None, {"good": 1})]
        weeks = [(r.period, r.model, r.generations, r.mean_rating) for r in stats.usage(s, "week")]
        assert weeks == [("2026-11-23", "gpt-small", 3, 3.0), ("2026-11-30", "gpt-small", 0, None), ("2026-11-30", "vae", 1, None)]
        assert [r.model for r in stats.usage(s, "week", model="vae")] == ["vae"]
        with pytest.raises(GenzooError, match="day, week"):
            stats.usage(s, "month")


def test_another_user_sees_only_what_is_visible(usage):
    with Store.open(usage, encoder=None) as s:
        _, key = s.create_user("wes", "writer")
    with Store.open(usage, api_key=key, encoder=None) as wes:
        assert stats.usage(wes) == []
        wes.record(kind="text", text="mine")
        assert [(r.model, r.generations) for r in stats.usage(wes)] == [("(none)", 1)]


def test_cli_prints_the_table_and_draws_the_png(usage, tmp_path):
    png = tmp_path / "usage.png"
    r = CliRunner().invoke(app, ["stats", "--by", "week", "--store", str(usage), "-o", str(png)])
    assert r.exit_code == 0, r.output
    assert "gpt-small" in r.output and "3.00" in r.output and "2026-11-23" in r.output
    with Image.open(png) as im:
        assert im.size[0] >= 600 and len(np.unique(np.asarray(im.convert("L")))) > 10  # a drawn chart, not a blank image
    bad = CliRunner().invoke(app, ["stats", "--store", str(usage), "-o", str(tmp_path / "usage.jpg")])
    assert bad.exit_code == 2 and "PNG" in bad.output
