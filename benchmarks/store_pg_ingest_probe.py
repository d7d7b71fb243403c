"""Where the PostgreSQL backend's ingest time goes: 500 records with and without 384-d vectors
(random; a fresh database each), then a cProfile of 490 more. The HNSW insert is the difference.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/store_pg_ingest_probe.py
"""

from __future__ import annotations

import cProfile
import pstats
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from genzoo.store.api import Store
    from genzoo.store.pg_local import start_primary, url_for
    from genzoo.store.postgres import connect
    from genzoo.store.records import NewGeneration

    server = start_primary(Path(tempfile.mkdtemp(prefix="pg-ingest-probe-")) / "primary")
    rng = np.random.default_rng(0)
    try:
        for name, with_vectors in (("with_vectors", True), ("without", False)):
            with connect(server.get_uri()) as admin:
                admin.execute(f"CREATE DATABASE {name}")
            store = Store.open(url_for(server.get_uri(), name), encoder=None, redact=False)
            gens = [NewGeneration(kind="text", prompt=f"p {i}", text=f"some text number {i} " * 10,
                                  embedding=rng.normal(size=384).astype(np.float32) if with_vectors else None,
                                  space="probe" if with_vectors else None) for i in range(1000)]
            store.record_many(gens[:10])
            t = time.perf_counter()
            store.record_many(gens[10:510])
            print(f"{name}: {(time.perf_counter() - t) / 500 * 1000:.2f} ms per record", flush=True)
            profile = cProfile.Profile()
            profile.enable()
            store.record_many(gens[510:])
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(4)
            store.close()
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
