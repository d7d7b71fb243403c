"""A process killed with SIGKILL in the middle of a bulk ingest leaves every committed record intact,
findable by keyword and by vector, and the store passing its integrity check (SQLite's
integrity_check; on PostgreSQL, amcheck on the B-tree and GIN indexes and the store's invariants)."""

import os
import signal
import subprocess
import sys
import time

import pytest

from genzoo.store.api import Store
from genzoo.store.encoders import HashingEncoder

from test_store import db, is_pg  # noqa: F401  (db: the store's location, per test: a SQLite file or a PostgreSQL database)

BATCH = 40
BATCHES_BEFORE_KILL = 8

INGEST = r"""
import sys
from genzoo.store.api import Store
from genzoo.store.encoders import HashingEncoder
from genzoo.store.records import NewGeneration

store = Store.open(sys.argv[1], encoder=HashingEncoder(), redact=False)
batch = int(sys.argv[2])
for b in range(10_000):
    gens = [NewGeneration(kind="text", prompt=f"prompt {b}", text=f"record token{b}x{i} in batch {b} " + "filler " * 40)
            for i in range(batch)]
    ids = store.record_many(gens)
    print(b, ids[0], ids[-1], flush=True)  # only after the commit returned
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_during_bulk_ingest_loses_no_committed_record(db):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", INGEST, str(db), str(BATCH)], stdout=subprocess.PIPE, text=True, env=env)
    committed = []
    deadline = time.time() + 60
    try:
        while len(committed) < BATCHES_BEFORE_KILL and time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            committed.append(tuple(map(int, line.split())))
        time.sleep(0.013)  # land somewhere inside a later batch's transaction
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    assert len(committed) >= BATCHES_BEFORE_KILL, "the ingest did not get going"
    if is_pg(db):
        time.sleep(0.2)  # the server notices the dropped connection and rolls its open transaction back
    with Store.open(db, encoder=HashingEncoder()) as s:
        assert s.integrity_check() == "ok"
        n = s.backend.count("generations")
        assert n % BATCH == 0 and n >= len(committed) * BATCH  # whole batches only: no torn transaction
        assert s.backend.count("embeddings") == n and s.backend.count("prompts") == n
        for b, first, last in committed[::3] + committed[-1:]:
            assert s.get(first).text.startswith(f"record token{b}x0 ")
            assert [h.generation.id for h in s.search(f"token{b}x{BATCH - 1}", mode="keyword")] == [last]
            exact = s.get(first).text  # its own text: cosine 1 with its stored vector, below 1 with any other
            top = s.search(exact, mode="vector", k=1)[0]
            assert top.generation.id == first and top.score == pytest.approx(1.0, abs=1e-5)
        assert len(s.search("filler", mode="keyword", k=1000)) == min(n, 1000)
