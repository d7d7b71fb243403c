"""Forget drill: does ``Store.forget(user=...)`` leave the forgotten user's text in the raw database files?

For each backend (a SQLite file; a PostgreSQL 18 primary with a streaming hot standby, from
``genzoo.store.pg_local``) the local admin creates two writers, "fern" and "oak". Each records N
generations; every record ``i`` of a user carries one unique marker ``FORGETME-<i>-<token>`` (fern)
or ``KEEPME-<i>-<token>`` (oak) in: the prompt, the text, the session id, the manifest, a feedback
comment, a RAG document (its URI and every one of its ~3 chunks) and a graph entity extracted
from the text (a backticked identifier ``forgetme_<i>_<token>``). The store is opened with
``redact=False`` and the numpy-only ``HashingEncoder`` (markers stay verbatim, no model loads).

The raw files are searched BEFORE and AFTER ``Store.forget(user="fern")`` (timed). What is
searched for is each marker's token tail (the last 9 characters of ``<token>``: 6 random letters
and the tag ``zz9``), which is in every form the marker is stored in: the verbatim text, the
lower-cased full-text terms (SQLite FTS5, PostgreSQL tsvector; ending in a digit, so no stemmer
touches them) and the entity's identifier; and the tail survives FTS5's prefix compression of
neighbouring terms unless two terms share more than 3 leading characters.

    .venv/bin/python benchmarks/store/forget_drill.py [--records 200] [--out benchmarks/store/forget_drill.md]
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import shutil
import string
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

TAG = b"zz9"
TAIL = 6  # random letters kept before the tag
USERS = {"fern": "FORGETME", "oak": "KEEPME"}


# ---- markers -----------------------------------------------------------------------------------

@dataclass
class Marker:
    user: str
    i: int
    token: str  # 8 random lower-case letters + "zz9"

    @property
    def text(self) -> str:
        return f"{USERS[self.user]}-{self.i}-{self.token}"

    @property
    def ident(self) -> str:
        return f"{USERS[self.user].lower()}_{self.i}_{self.token}"

    @property
    def tail(self) -> bytes:
        return self.token[-(TAIL + len(TAG)):].encode()


def make_markers(n: int, rng: random.Random) -> dict[str, list[Marker]]:
    seen, out = set(), {}
    for user in USERS:
        out[user] = []
        for i in range(n):
            while True:
                tok = "".join(rng.choice(string.ascii_lowercase) for _ in range(8)) + TAG.decode()
                m = Marker(user, i, tok)
                if m.tail not in seen:
                    break
            seen.add(m.tail)
            out[user].append(m)
    return out


def tails_in(data: bytes) -> set[bytes]:
    """Every ``<6 letters>zz9`` in ``data`` (one pass: find the tag, look back)."""
    found, at = set(), data.find(TAG)
    while at != -1:
        if at >= TAIL:
            found.add(data[at - TAIL:at + len(TAG)])
        at = data.find(TAG, at + 1)
    return found


@dataclass
class Scan:
    """Which markers of each user a set of files holds, and in which files."""
    label: str
    files: int = 0
    bytes: int = 0
    found: dict[str, set[int]] = field(default_factory=lambda: {u: set() for u in USERS})
    by_file: dict[str, dict[str, int]] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {u: len(s) for u, s in self.found.items()}


def scan(label: str, paths: list[Path], markers: dict[str, list[Marker]], root: Path | None = None) -> Scan:
    index = {m.tail: m for ms in markers.values() for m in ms}
    s = Scan(label)
    for p in paths:
        try:
            if not p.is_file() or p.is_symlink():
                continue
            data = p.read_bytes()
        except OSError:  # a file the server removed while we walked (a recycled WAL segment, a temp file)
            continue
        s.files += 1
        s.bytes += len(data)
        per = {u: 0 for u in USERS}
        for t in tails_in(data):
            m = index.get(t)
            if m is not None:
                s.found[m.user].add(m.i)
                per[m.user] += 1
        if any(per.values()):
            s.by_file[str(p.relative_to(root)) if root else p.name] = per
    return s


def walk(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".s.PGSQL"))


# ---- filling the store -------------------------------------------------------------------------

def doc_text(m: Marker) -> str:
    """~2,600 characters: three chunks of 1,000 (150 overlap), the marker in each paragraph."""
    para = (f"Notes for {m.text}. This paragraph talks about gardens, compost and watering schedules, "
            f"and mentions the marker {m.text} once more so that every chunk holds it. ")
    return f"# Notebook {m.i}\n\n" + "\n\n".join(para * 2 for _ in range(6)) + "\n"


def fill(url, keys: dict[str, str], markers: dict[str, list[Marker]], open_store) -> dict[str, list[int]]:
    from genzoo.store import rag
    from genzoo.store.graph import extract_entities

    ids = {}
    for user, ms in markers.items():
        ids[user] = []
        with open_store(url, keys[user]) as s:
            for m in ms:
                gid = s.record(kind="text", prompt=f"Question {m.i}: tell me about {m.text}?",
                               text=f"Answer {m.i}: use the `{m.ident}` helper; {m.text} is recorded here.",
                               session_id=f"session-{m.text}", manifest={"note": m.text}, family="drill")
                s.feedback(gid, rating=4.0, label="useful", comment=f"{user}'s comment on {m.text}")
                rag.index_text(s, f"/{user}/notes/{m.token}.md", doc_text(m))
                extract_entities(s, gid)
                ids[user].append(gid)
    return ids


# ---- checking the read paths -------------------------------------------------------------------

def api_check(store, markers, ids, chunks_expected: int = 3) -> dict[str, dict[str, int]]:
    """Per user: how many of their records each read path still returns."""
    from genzoo.core.errors import GenzooError
    from genzoo.store import rag

    out = {}
    for user, ms in markers.items():
        c = {"get": 0, "keyword": 0, "vector_top1": 0, "rag_keyword": 0, "feedback_comment": 0, "entities": 0}
        for m, gid in zip(ms, ids[user]):
            try:
                g = store.get(gid)
                c["get"] += m.text in (g.text or "")
                c["feedback_comment"] += any(m.text in (f.comment or "") for f in store.feedback_for(gid))
            except GenzooError:
                pass
            c["keyword"] += any(m.text in (h.generation.text or "") for h in store.search(m.token, mode="keyword", k=5))
            top = store.search(m.text, mode="vector", k=1)
            c["vector_top1"] += bool(top) and top[0].generation.owner == user
            c["rag_keyword"] += any(src.uri.endswith(f"{m.token}.md") for src in rag.retrieve(store, m.token, mode="keyword", k=4))
        names = [m.ident for m in ms]
        for i in range(0, len(names), 500):
            part = names[i:i + 500]
            c["entities"] += store.backend.rows(f"SELECT count(*) AS n FROM entities WHERE name IN ({', '.join('?' * len(part))})",
                                                part)[0]["n"]
        out[user] = c
    return out


def api_line(checks: dict[str, dict[str, int]], n: int) -> str:
    return "; ".join(f"{u}: " + ", ".join(f"{k} {v}/{n}" for k, v in c.items()) for u, c in checks.items())


# ---- backends ----------------------------------------------------------------------------------

def open_store_fn():
    from genzoo.store.api import Store
    from genzoo.store.encoders import HashingEncoder

    def open_store(url, key=None, **kw):
        return Store.open(url, api_key=key, encoder=HashingEncoder(), redact=False, **kw)

    return open_store


def make_users(url, open_store) -> dict[str, str]:
    with open_store(url) as admin:  # the local admin (no key), created on first open
        return {u: admin.create_user(u, "writer")[1] for u in USERS}


def drill_sqlite(n: int, rng: random.Random, log) -> dict:
    open_store = open_store_fn()
    root = Path(tempfile.mkdtemp(prefix="forget-drill-sqlite-"))
    try:
        db = root / "store.db"
        markers = make_markers(n, rng)
        keys = make_users(db, open_store)
        t = time.perf_counter()
        ids = fill(db, keys, markers, open_store)
        log(f"sqlite: filled {2 * n} records in {time.perf_counter() - t:.1f} s")
        files = lambda: [Path(f"{db}{s}") for s in ("", "-wal", "-shm")]  # noqa: E731
        with open_store(db) as admin:  # the files as a running application leaves them (WAL not checkpointed)
            before = scan("store.db + -wal + -shm", files(), markers, root)
            before_other = scan("other files in the folder", [p for p in walk(root) if p not in files()], markers, root)
            api_before = api_check(admin, markers, ids)
            t = time.perf_counter()
            report = admin.forget(user="fern")
            seconds = time.perf_counter() - t
            after = scan("store.db + -wal + -shm", files(), markers, root)
            api_after = api_check(admin, markers, ids)
            integrity = admin.integrity_check()
        after_other = scan("other files in the folder", [p for p in walk(root) if p not in files()], markers, root)
        existing = [p.name for p in files() if p.exists()]
        sizes = {p.name: p.stat().st_size for p in files() if p.exists()}
        return {"backend": "SQLite", "rows": [(before, after, seconds), (before_other, after_other, None)],
                "report": report, "api_before": api_before, "api_after": api_after,
                "notes": [f"files present after forget: {sizes} (bytes); integrity_check: {integrity}; "
                          f"files_clean: {report.files_clean}"] + report.notes, "existing": existing}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def horizons(conn) -> str:
    """What holds back the primary's vacuum horizon: standbys' feedback, slots, open snapshots."""
    rep = [r[0] for r in conn.execute("SELECT backend_xmin::text FROM pg_stat_replication")]
    slots = [r[0] for r in conn.execute("SELECT xmin::text FROM pg_replication_slots")]
    acts = [r[0] for r in conn.execute("SELECT backend_xmin::text FROM pg_stat_activity WHERE backend_xmin IS NOT NULL "
                                       "AND backend_type = 'client backend' AND pid <> pg_backend_pid()")]
    return f"standby feedback xmin {rep}, replication slots {slots or 'none'}, other sessions' snapshot xmin {acts or 'none'}"


def drill_postgres(n: int, rng: random.Random, log) -> dict:
    from genzoo.store.pg_local import start_primary, start_standby, url_for, wait_for_replay
    from genzoo.store.postgres import connect

    open_store = open_store_fn()
    root = Path(tempfile.mkdtemp(prefix="forget-drill-pg-"))
    primary = standby = None
    conns = []
    try:
        t = time.perf_counter()
        primary = start_primary(root / "primary", delete_on_exit=True)
        base = primary.get_uri()
        pc = connect(base)
        conns.append(pc)
        version = pc.execute("SHOW server_version").fetchone()[0]
        pc.execute("CREATE DATABASE drill")
        url = url_for(base, "drill")
        standby = start_standby(primary, root / "standby")
        sc = connect(standby.url("postgres"))
        conns.append(sc)
        log(f"postgres {version}: primary + standby up in {time.perf_counter() - t:.1f} s")
        pdir = Path(pc.execute("SHOW data_directory").fetchone()[0])
        sdir = Path(sc.execute("SHOW data_directory").fetchone()[0])
        settings = {k: pc.execute(f"SHOW {k}").fetchone()[0] for k in ("wal_level", "fsync", "full_page_writes",
                                                                       "wal_compression", "default_toast_compression",
                                                                       "min_wal_size", "max_wal_size", "wal_keep_size")}
        markers = make_markers(n, rng)
        keys = make_users(url, open_store)
        t = time.perf_counter()
        ids = fill(url, keys, markers, open_store)
        log(f"postgres: filled {2 * n} records in {time.perf_counter() - t:.1f} s")
        oid = pc.execute("SELECT oid FROM pg_database WHERE datname = 'drill'").fetchone()[0]

        def settle() -> float:
            """Flush both servers' buffers to their files: CHECKPOINT on the primary, replay, and a
            restartpoint (CHECKPOINT during recovery) on the standby."""
            pc.execute("CHECKPOINT")
            lag = wait_for_replay(pc, sc, timeout=120)
            sc.execute("CHECKPOINT")
            return lag

        def scans(phase: str) -> list:
            out = [scan(f"primary base/{oid}/*", walk(pdir / "base" / str(oid)), markers, pdir),
                   scan(f"standby base/{oid}/*", walk(sdir / "base" / str(oid)), markers, sdir),
                   scan("primary pg_wal/*", walk(pdir / "pg_wal"), markers, pdir),
                   scan("standby pg_wal/*", walk(sdir / "pg_wal"), markers, sdir)]
            rest = lambda d: [p for p in walk(d) if not p.is_relative_to(d / "base" / str(oid)) and not p.is_relative_to(d / "pg_wal")]  # noqa: E731
            out.append(scan("primary: every other file of the data folder", rest(pdir), markers, pdir))
            out.append(scan("standby: every other file of the data folder", rest(sdir), markers, sdir))
            return out

        settle()
        before = scans("before")
        standby_url = standby.url("drill")
        with open_store(url, read_url=standby_url) as admin_ro:  # reads and searches on the standby
            api_before_standby = api_check(admin_ro, markers, ids)
        with open_store(url) as admin:
            api_before = api_check(admin, markers, ids)
            horizon = int(pc.execute("SELECT pg_current_xact_id()::text").fetchone()[0])  # forget's deletes come after this
            held = horizons(pc)
            t = time.perf_counter()
            report = admin.forget(user="fern")
            seconds = time.perf_counter() - t
            lag = settle()
            api_after = api_check(admin, markers, ids)
        with open_store(url, read_url=standby_url) as admin_ro:
            api_after_standby = api_check(admin_ro, markers, ids)
        settle()
        after = scans("after")
        for s_ in after[:2]:
            s_.label += " (after the first forget)"
        # the standby's hot_standby_feedback xmin (sent every wal_receiver_status_interval) can be older
        # than forget's deleting transaction: VACUUM FULL then keeps the deleted rows (recently dead) and
        # copies them into the rewritten files. Wait until the primary sees a newer xmin, forget again.
        t = time.perf_counter()
        while True:
            xmins = [int(r[0]) for r in pc.execute("SELECT backend_xmin::text FROM pg_stat_replication WHERE backend_xmin IS NOT NULL")]
            if all(x > horizon for x in xmins) or time.perf_counter() - t > 60:
                break
            time.sleep(0.5)
        waited = time.perf_counter() - t
        with open_store(url) as admin:
            t = time.perf_counter()
            report2 = admin.forget(user="fern")
            seconds2 = time.perf_counter() - t
        settle()
        again = scans("after a second forget")[:2]
        for s_ in again:
            s_.label += " (after a second forget)"
        # does a few more checkpoints' worth of WAL traffic recycle the segments that hold the markers?
        wal_files = len(walk(pdir / "pg_wal"))
        pc.execute("SELECT pg_switch_wal()")
        settle()
        pc.execute("SELECT pg_switch_wal()")
        settle()
        after_switch = scan("primary pg_wal/* after 2 x (pg_switch_wal + CHECKPOINT)", walk(pdir / "pg_wal"), markers, pdir)
        finding = ("**With a hot standby that sends feedback (`hot_standby_feedback = on`, as `pg_local.start_standby` sets), "
                   "VACUUM FULL keeps rows that a standby snapshot might still read.** The first version of forget ran it at "
                   "once and left every forgotten row in both servers' table files (a second forget cleaned them). forget "
                   "now waits (up to 30 s) until no standby feedback, replication slot or other session holds a snapshot "
                   f"from before its deleting transaction, then rewrites; files_clean={report.files_clean} in this run. "
                   "The second forget below is kept as a check that nothing was left for it to do.")
        notes = [finding,
                 f"xmin horizons on the primary just before forget (its deleting transaction is > xid {horizon}): {held}",
                 f"second forget: waited {waited:.1f} s for the standby's feedback xmin to pass xid {horizon}, then "
                 f"`Store.forget(user=\"fern\")` again took {seconds2:.2f} s ({report2.summary()})",
                 f"PostgreSQL {version}; primary settings: " + ", ".join(f"{k}={v}" for k, v in settings.items())
                 + "; standby: " + ", ".join(f"{k}={sc.execute(f'SHOW {k}').fetchone()[0]}" for k in ("hot_standby_feedback", "wal_receiver_status_interval")),
                 f"standby replayed the forget (deletes + VACUUM FULL) {lag:.2f} s after it returned (then CHECKPOINT on it: a restartpoint)",
                 f"primary pg_wal held {wal_files} files after forget"] + report.notes
        rows = [(b, a, seconds if i == 0 else None) for i, (b, a) in enumerate(zip(before, after))]
        rows[2:2] = [(b, a, seconds2 if i == 0 else None) for i, (b, a) in enumerate(zip(before[:2], again))]
        return {"backend": "PostgreSQL", "rows": rows,
                "extra": after_switch, "report": report, "api_before": api_before, "api_after": api_after,
                "api_before_standby": api_before_standby, "api_after_standby": api_after_standby, "notes": notes}
    finally:
        for c in conns:
            try:
                c.close()
            except Exception:
                pass
        if standby is not None:
            standby.stop()
        if primary is not None:
            primary.cleanup()
        shutil.rmtree(root, ignore_errors=True)


# ---- report ------------------------------------------------------------------------------------

def render(results: list[dict], n: int, command: str, started: str, total: float) -> str:
    L = ["# Forget drill: `Store.forget(user=\"fern\")` against the raw database files", "",
         f"- Command: `{command}`", f"- Date: {started} (total run {total:.0f} s)",
         f"- Machine: {os.cpu_count()} CPU cores; Python {sys.version.split()[0]}",
         f"- Records: fern (to forget) and oak (to keep) each recorded N = {n} generations. Each record `i` carries one "
         "unique marker (`FORGETME-<i>-<token>` / `KEEPME-<i>-<token>`) in its prompt, text, session id, manifest, a feedback "
         "comment, a RAG document (URI + 3 chunks) and an extracted graph entity (`forgetme_<i>_<token>`). Store opened with "
         "`redact=False`, `encoder=HashingEncoder()`.",
         "- A marker counts as found in a set of files when its token tail (6 random letters + `zz9`) occurs anywhere in their "
         "bytes: verbatim text, full-text terms and entity names all contain it.", "",
         "| backend | files searched | files (bytes) after | fern markers before | fern markers after | oak markers before | oak markers after | forget seconds |",
         "|---|---|---|---|---|---|---|---|"]
    for r in results:
        for before, after, secs in r["rows"]:
            L.append(f"| {r['backend']} | {after.label} | {after.files} ({after.bytes:,}) | {before.counts()['fern']}/{n} | "
                     f"{after.counts()['fern']}/{n} | {before.counts()['oak']}/{n} | {after.counts()['oak']}/{n} | "
                     f"{'' if secs is None else f'{secs:.2f}'} |")
        if r.get("extra") is not None:
            e = r["extra"]
            L.append(f"| {r['backend']} | {e.label} | {e.files} ({e.bytes:,}) | | {e.counts()['fern']}/{n} | | {e.counts()['oak']}/{n} | |")
    L += ["", "Forget seconds: the wall time of `Store.forget(user=\"fern\")` as the local admin (deletes in one transaction, "
          "then SQLite: FTS5 optimize, WAL checkpoint, VACUUM, checkpoint; PostgreSQL: VACUUM FULL of 13 tables).", ""]
    for r in results:
        L += [f"## {r['backend']}", "", f"- Forget report: {r['report'].summary()}"]
        L.append(f"- Read paths, primary, before: {api_line(r['api_before'], n)}")
        L.append(f"- Read paths, primary, after: {api_line(r['api_after'], n)}")
        if "api_before_standby" in r:
            L.append(f"- Read paths, standby (`read_url`), before: {api_line(r['api_before_standby'], n)}")
            L.append(f"- Read paths, standby (`read_url`), after: {api_line(r['api_after_standby'], n)}")
        for before, after, _ in r["rows"]:
            if after.by_file:
                shown = list(after.by_file.items())[:12]
                more = len(after.by_file) - len(shown)
                L.append(f"- Files still holding markers after forget ({after.label}): "
                         + ", ".join(f"`{f}` (fern {c['fern']}, oak {c['oak']})" for f, c in shown)
                         + (f", and {more} more" if more > 0 else ""))
        if r.get("extra") is not None and r["extra"].by_file:
            L.append(f"- {r['extra'].label}: " + ", ".join(f"`{f}` (fern {c['fern']}, oak {c['oak']})" for f, c in r["extra"].by_file.items()))
        L += [f"- {x}" for x in r["notes"]]
        L.append("")
    L += ["## Out of reach of `forget` (documented in `genzoo.store.forget`)", "",
          "- PostgreSQL WAL: the segments written before the deletion hold the inserted rows (and full-page images) until the "
          "server recycles and overwrites them; a recycled segment is renamed, not wiped, so its old bytes stay until new WAL "
          "overwrites them. Archived WAL (`archive_command`) and base backups keep them for as long as they are kept. The "
          "standby streams the same WAL into its own `pg_wal`.",
          "- A standby's files hold the rows until it has replayed the deletion and the VACUUM FULL (and written its buffers at a "
          "restartpoint); above, both had happened before the AFTER scan.",
          "- Backups of any kind: `pg_dump` files, SQLite upgrade backups (`store.db.vN.bak`), exports, file-system snapshots; "
          "the indexed source files themselves; disk blocks freed when a file shrank or was unlinked (until reused).",
          "- Other processes that had the store open: their in-memory indexes hold vectors (never text) until they reopen it.",
          "- The raw scan reads only whole tails: an FTS5 term stored with more than 3 leading characters shared with its "
          "neighbour would not be seen (a false negative of this drill, not of forget); the verbatim copies in the tables are "
          "always seen.", ""]
    return "\n".join(L)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=200, help="generations per user (default 200)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/store/forget_drill.md"))
    ap.add_argument("--backends", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    ap.add_argument("--seed", type=int, default=None, help="marker randomness (default: fresh)")
    args = ap.parse_args(argv)
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "benchmarks/store/forget_drill.py", *(sys.argv[1:] if argv is None else argv)])
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    rng = random.Random(args.seed)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    t0 = time.perf_counter()
    results = []
    for b in [x.strip() for x in args.backends.split(",") if x.strip()]:
        if b == "sqlite":
            results.append(drill_sqlite(args.records, rng, log))
        elif b == "postgres":
            results.append(drill_postgres(args.records, rng, log))
        else:
            ap.error(f"unknown backend {b!r}")
        log(f"{results[-1]['backend']} done")
    text = render(results, args.records, command, started, time.perf_counter() - t0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
