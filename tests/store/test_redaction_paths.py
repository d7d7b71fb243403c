"""Everything that enters the store passes the PII redaction: prompts, outputs, every free-text value
of a manifest (however deep), feedback labels and comments, RAG documents and their chunks (and so
the chunks' full-text index). Checked on the raw bytes of the file, not only through the API."""

import hashlib
import sqlite3

from genzoo.store import rag
from genzoo.store.api import Store
from genzoo.store.encoders import HashingEncoder

EMAIL = "jane.doe@example.org"


def raw(path) -> bytes:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path.read_bytes()


def test_every_way_in_is_redacted(tmp_path):
    db = tmp_path / "s.db"
    digest = hashlib.sha256(b"x").hexdigest()
    with Store.open(db, encoder=HashingEncoder()) as s:
        gid = s.record(kind="text", text=f"write to {EMAIL}", prompt=f"ask {EMAIL}",
                       manifest={"input": f"context: {EMAIL}", "options": {"stop": [f"<{EMAIL}>"]}, "checkpoint_sha256": digest})
        s.feedback(gid, rating=3, label=f"from {EMAIL}", comment=f"cc {EMAIL}")
        doc = tmp_path / "notes.md"
        doc.write_text(f"# Notes\n\nThe owner is reachable at {EMAIL} for questions.\n")
        rag.index_paths(s, [doc])
        g = s.get(gid)
        assert EMAIL not in repr(g) and "<EMAIL>" in g.text and g.manifest["redacted"] is True
        assert g.manifest["checkpoint_sha256"] == digest  # names and digests are not free text: kept whole
        assert "<EMAIL>" in g.manifest["options"]["stop"][0]
        f = s.feedback_for(gid)[0]
        assert EMAIL not in f.label + f.comment
        chunks = s.backend.rows("SELECT text FROM chunks")
        assert chunks and all(EMAIL not in c["text"] for c in chunks) and any("<EMAIL>" in c["text"] for c in chunks)
    assert EMAIL.encode() not in raw(db)
    assert b"reachable at" in raw(db)  # the check reads stored text


def test_redaction_can_be_switched_off_for_data_that_must_stay_verbatim(tmp_path):
    db = tmp_path / "s.db"
    with Store.open(db, encoder=None, redact=False) as s:
        gid = s.record(kind="text", text=f"write to {EMAIL}")
        assert s.get(gid).text == f"write to {EMAIL}"
