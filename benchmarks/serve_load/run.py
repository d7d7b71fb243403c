"""Load test of `genzoo serve` with Locust, on 127.0.0.1 only, bounded in users and time.

    .venv/bin/python benchmarks/serve_load/run.py             # the full run: 100,000 records, 1/8/32 users, 20 s each (~10 min)
    .venv/bin/python benchmarks/serve_load/run.py --quick     # 5,000 records, 1/8 users, 8 s each (~3 min; results in --work)

Steps: a store of --records text generations (store_prep.py: pydocs pieces, vectors given, batches of
1,000, reused when the work folder already holds one that large); a tiny GPT on pydocs and a tiny VAE
on digits (trained once into the work folder, reused after); `genzoo serve GPT VAE --store DB` on a free
port (rate limit off: the limiter is not what is measured); warm-up (first hybrid search, first
recorded generation: the PII redactor loads); then one `locust --headless` run per scenario and
user count (locustfile.py). Writes results.md, results.json and the raw CSVs (raw/), and the
server's log.

"Zero lost records": before and after each locust run the store's feedback and generations rows
are counted; the change must equal the successful writes locust saw (feedback: one row per 200;
streamed completions and image requests as a writer: one generation each).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VENV = ROOT / ".venv" / "bin"
sys.path.insert(0, str(HERE))

import store_prep  # noqa: E402

SCENARIOS = ("search-keyword", "stream", "image", "feedback", "search-hybrid")  # hybrid last: it leaves work behind
GPT_TRAIN = ["train", "gpt", "--data", "pydocs", "--steps", "200", "--no-eval", "--set", "layers=2", "--set", "width=64",
             "--set", "heads=4", "--set", "context=64"]
VAE_TRAIN = ["train", "vae", "--data", "digits", "--steps", "50", "--no-eval"]
WRITES = {"feedback": ("feedback", "/api/generations/{id}/feedback"), "stream": ("generations", "whole stream"),
          "image": ("generations", "/v1/images/generations")}  # scenario -> (table, locust entry whose successes wrote rows)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url: str, key: str, body: dict | None = None, timeout: float = 120) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def train(args_list: list[str], out: Path, log: Path) -> None:
    if (out / "best").exists() or (out / "checkpoint").exists():
        print(f"reusing {out}", flush=True)
        return
    t = time.perf_counter()
    with open(log, "w") as f:
        subprocess.run([str(VENV / "genzoo"), *args_list, "--out", str(out)], check=True, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    print(f"trained {out} in {time.perf_counter() - t:.0f} s", flush=True)


def read_stats(prefix: Path) -> tuple[list[dict], list[dict]]:
    with open(f"{prefix}_stats.csv") as f:
        stats = [r for r in csv.DictReader(f) if r["Name"] != "Aggregated"]
    with open(f"{prefix}_failures.csv") as f:
        failures = list(csv.DictReader(f))
    return stats, failures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=None, help="records in the store (default 100,000; --quick: 5,000)")
    ap.add_argument("--users", default=None, help="comma-separated user counts (default 1,8,32; --quick: 1,8)")
    ap.add_argument("--run-time", type=int, default=None, help="seconds per locust run (default 20; --quick: 8)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, of: {', '.join(SCENARIOS)}")
    ap.add_argument("--quick", action="store_true", help="a small, short run (results go to the work folder unless --out)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/genzoo-serve-load"), help="store, runs, vectors (reused between runs)")
    ap.add_argument("--out", type=Path, default=None, help="where results.md, results.json and raw/ go (default: this folder)")
    ap.add_argument("--unique", type=int, default=1000, help="distinct pydocs pieces embedded with MiniLM (the records cycle through them)")
    ap.add_argument("--stream-tokens", type=int, default=32)
    ap.add_argument("--concurrency", type=int, default=1, help="genzoo serve --concurrency (generations at once; its default)")
    ap.add_argument("--queue", type=int, default=16, help="genzoo serve --queue (its default)")
    ap.add_argument("--fresh-store", action="store_true", help="rebuild the store even if the work folder holds one")
    args = ap.parse_args()
    records = args.records or (5_000 if args.quick else 100_000)
    users = [int(u) for u in (args.users or ("1,8" if args.quick else "1,8,32")).split(",")]
    run_time = args.run_time or (8 if args.quick else 20)
    scenarios = [s for s in args.scenarios.split(",") if s]
    for s in scenarios:
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s!r}")
    out = args.out or (args.work / "results-quick" if args.quick else HERE)
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "records": records, "users": users,
            "run_time_s": run_time, "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
            "load_average_start": [round(x, 2) for x in os.getloadavg()], "command": " ".join([".venv/bin/python", *sys.argv]),
            "server": {"concurrency": args.concurrency, "queue": args.queue, "rate_limit": 0}}

    # ---- store, runs ---------------------------------------------------------------------------
    db = args.work / f"store-{records}" / "store.db"
    if args.fresh_store and db.parent.exists():
        shutil.rmtree(db.parent)
    base, vecs = store_prep.base_vectors(args.unique, args.work / f"vectors-{args.unique}.npz")[:2]
    if db.exists() and store_prep.count(db, "generations") >= records:
        meta["store"] = {"reused": str(db), "generations": store_prep.count(db, "generations")}
        print(f"reusing {db} ({meta['store']['generations']:,} generations)", flush=True)
    else:
        if db.parent.exists():
            shutil.rmtree(db.parent)
        print(f"filling {db} with {records:,} records", flush=True)
        meta["store"] = store_prep.fill_store(db, records, base, vecs)
        print(meta["store"], flush=True)
    key = store_prep.writer_key(db)
    queries_file = args.work / "queries.json"
    queries_file.write_text(json.dumps(store_prep.queries(args.unique, 300)))
    gpt, vae = args.work / "gpt", args.work / "vae"
    train(GPT_TRAIN, gpt, args.work / "train-gpt.log")
    if "image" in scenarios:
        train(VAE_TRAIN, vae, args.work / "train-vae.log")

    # ---- server --------------------------------------------------------------------------------
    port = free_port()
    host = f"http://127.0.0.1:{port}"
    serve_cmd = [str(VENV / "genzoo"), "serve", str(gpt), *([str(vae)] if "image" in scenarios else []), "--store", str(db),
                 "--host", "127.0.0.1", "--port", str(port), "--rate-limit", "0", "--concurrency", str(args.concurrency),
                 "--queue", str(args.queue)]
    meta["serve_command"] = " ".join(serve_cmd).replace(str(ROOT) + "/", "")
    server_log = args.work / "server.log"
    log_f = open(server_log, "w")
    server = subprocess.Popen(serve_cmd, stdout=log_f, stderr=subprocess.STDOUT, cwd=ROOT)
    results: list[dict] = []
    try:
        t = time.perf_counter()
        while True:
            if server.poll() is not None:
                raise SystemExit(f"genzoo serve exited ({server.returncode}); see {server_log}:\n{server_log.read_text()[-3000:]}")
            try:
                if http(f"{host}/v1/models", key, timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            if time.perf_counter() - t > 300:
                raise SystemExit("genzoo serve did not answer within 300 s")
            time.sleep(0.5)
        meta["server_start_s"] = round(time.perf_counter() - t, 1)
        print(f"server up on {host} after {meta['server_start_s']} s", flush=True)
        meta["warmup_s"] = warm_up(host, key, scenarios, args.stream_tokens)
        print("warm-up:", meta["warmup_s"], flush=True)

        env_base = {**os.environ, "GZ_KEY": key, "GZ_QUERIES": str(queries_file), "GZ_RECORDS": str(records),
                    "GZ_TEXT_MODEL": gpt.name, "GZ_IMAGE_MODEL": vae.name, "GZ_STREAM_TOKENS": str(args.stream_tokens)}
        for scenario in scenarios:
            for u in users:
                prefix = raw / f"{scenario}_u{u}"
                before = {t: store_prep.count(db, t) for t in ("feedback", "generations")}
                cmd = [str(VENV / "locust"), "--headless", "-u", str(u), "-r", str(u), "--run-time", f"{run_time}s", "--host", host,
                       "-f", str(HERE / "locustfile.py"), "--csv", str(prefix), "--only-summary", "--stop-timeout", "15",
                       "--loglevel", "WARNING"]
                ids_file = raw / f"{scenario}_u{u}_ids.json"
                ids_file.unlink(missing_ok=True)
                t = time.perf_counter()
                proc = subprocess.run(cmd, env={**env_base, "GZ_SCENARIO": scenario, "GZ_IDS_FILE": str(ids_file)}, capture_output=True, text=True, timeout=run_time + 120)
                wall = time.perf_counter() - t
                (raw / f"{scenario}_u{u}.log").write_text(proc.stdout + proc.stderr)
                after = {t: store_prep.count(db, t) for t in ("feedback", "generations")}
                stats, failures = read_stats(prefix)
                row = {"scenario": scenario, "users": u, "wall_s": round(wall, 1), "locust_rc": proc.returncode,
                       "server_alive": server.poll() is None, "entries": [], "failures": failures,
                       "rows_added": {t: after[t] - before[t] for t in after}}
                for s in stats:
                    row["entries"].append({"name": s["Name"], "type": s["Type"], "requests": int(s["Request Count"]),
                                           "failures": int(s["Failure Count"]), "p50_ms": _num(s["50%"]), "p99_ms": _num(s["99%"]),
                                           "mean_ms": round(float(s["Average Response Time"]), 1), "max_ms": round(float(s["Max Response Time"]), 1),
                                           "rps": round(float(s["Requests/s"]), 2)})
                if scenario in WRITES:
                    table, entry = WRITES[scenario]
                    ok = sum(e["requests"] - e["failures"] for e in row["entries"] if e["name"].startswith(entry))
                    row["writes"] = {"table": table, "successful_writes": ok, "rows_added": row["rows_added"][table]}
                    ids = json.loads(ids_file.read_text())[table] if ids_file.exists() else []
                    if ids:  # the ids 200 responses returned: each must be in the store
                        row["writes"].update(ids_returned=len(ids), ids_missing=store_prep.missing(db, table, ids))
                    # a row without a 200 seen by locust: a request in flight when locust stopped (not a loss)
                    row["writes"]["lost"] = row["writes"].get("ids_missing", max(0, ok - row["rows_added"][table]))
                results.append(row)
                print(f"{scenario:15s} u={u:3d} " + "  ".join(f"{e['name']}: n={e['requests']} fail={e['failures']} p50={e['p50_ms']} p99={e['p99_ms']}"
                                                          for e in row["entries"]) + (f"  writes={row['writes']}" if "writes" in row else ""), flush=True)
                row["drain_s"] = drain(host, key)  # work the clients abandoned still runs: wait it out
                if server.poll() is None and row["drain_s"] > 1:
                    print(f"  server busy for {row['drain_s']} s after locust stopped", flush=True)
                if server.poll() is not None:
                    print(f"the server died (exit {server.returncode}); stopping", flush=True)
                    break
            if server.poll() is not None:
                break
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
        log_f.close()
    log_text = server_log.read_text()
    shutil.copy(server_log, raw / "server.log")
    meta["server_log"] = {"lines": log_text.count("\n"), "tracebacks": log_text.count("Traceback"),
                          "unhandled": log_text.count("unhandled error")}
    meta["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    meta["total_s"] = round(time.time() - started)
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    (out / "results.md").write_text(report(meta, results))
    print(f"wrote {out / 'results.md'} ({meta['total_s']} s in all)", flush=True)


def drain(host: str, key: str, limit_s: float = 180) -> float:
    """Seconds until a keyword search answers in under 0.5 s again (requests abandoned by Locust at its stop
    keep running in the server; the next cell must not pay for them)."""
    t = time.perf_counter()
    while time.perf_counter() - t < limit_s:
        t1 = time.perf_counter()
        try:
            ok = http(f"{host}/api/search?q=statement&mode=keyword&k=1", key, timeout=limit_s)[0] == 200
        except OSError:
            ok = False
        if ok and time.perf_counter() - t1 < 0.5:
            break
        time.sleep(0.5)
    return round(time.perf_counter() - t, 1)


def _num(x: str):
    try:
        return float(x)
    except ValueError:
        return None  # "N/A": no request of that entry


def warm_up(host: str, key: str, scenarios: list[str], tokens: int) -> dict:
    """The first of each request pays one-off costs (the vector index, MiniLM, the PII redactor): paid here."""
    out = {}
    todo = [("keyword search", "search-keyword", lambda: http(f"{host}/api/search?q=for+loop+statement&mode=keyword", key)),
            ("hybrid search", "search-hybrid", lambda: http(f"{host}/api/search?q=for+loop+statement&mode=hybrid", key)),
            ("completion", "stream", lambda: http(f"{host}/v1/completions", key, {"model": "gpt", "prompt": "The for", "max_tokens": tokens})),
            ("image", "image", lambda: http(f"{host}/v1/images/generations", key, {"model": "vae", "n": 4})),
            ("feedback", "feedback", lambda: http(f"{host}/api/generations/1/feedback", key, {"rating": 3}))]
    for name, scenario, call in todo:
        if scenario not in scenarios:
            continue
        t = time.perf_counter()
        status, body = call()
        out[name] = round(time.perf_counter() - t, 2)
        if status != 200:
            print(f"warm-up {name}: HTTP {status} {body[:300]!r}", flush=True)
            out[name + " status"] = status
    return out


def _ms(x) -> str:
    return "-" if x is None else f"{x:,.0f}" if x >= 10 else f"{x:.1f}"


def report(meta: dict, results: list[dict]) -> str:
    lines = ["# `genzoo serve` under load (Locust)", "",
             f"Date: {meta['date']}. Machine: {meta['machine']}; **Locust runs on the same 2 cores as the server** "
             f"(and other people's jobs: load average {meta['load_average_start']} at the start, {meta['load_average_end']} at the end), "
             "so every latency here includes CPU contention from the load generator itself.", "",
             f"Store: {meta['records']:,} text generations (SQLite, {json.dumps(meta['store'])}). "
             f"Server: `{meta['serve_command']}` (rate limit off; generations: --concurrency {meta['server']['concurrency']}, "
             f"--queue {meta['server']['queue']}, the defaults). Each cell: one `locust --headless -u U -r U --run-time {meta['run_time_s']}s` run, "
             "users looping with no think time (U requests in flight). A 503/429 counts as an error and the user then waits Retry-After. "
             f"Server start {meta.get('server_start_s')} s; warm-up (first request of each kind, not measured): {meta.get('warmup_s')}.", "",
             "Command:", "", "```bash", meta["command"], "```", "",
             "Rows written: the store's rows added during the run vs the 200s Locust counted; where responses return ids "
             "(feedback, images) every returned id is looked up in the store. An image request records its grid and each "
             "sample (5 generations for n=4); a stream records 1. More rows than 200s: requests in flight when Locust stopped.", "",
             "| scenario | entry | users | requests | errors | p50 ms | p99 ms | req/s | rows written vs 200s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        for e in r["entries"]:
            w = r.get("writes")
            written = "" if not w or not e["name"].startswith(WRITES[r["scenario"]][1]) else \
                (f"{w['rows_added']} {w['table']} rows added / {w['successful_writes']} ok"
                 + (f"; {w['ids_returned'] - w['ids_missing']} of {w['ids_returned']} returned ids stored" if "ids_returned" in w else "")
                 + (": **none lost**" if w["lost"] == 0 else f": **{w['lost']} lost**"))
            lines.append(f"| {r['scenario']} | {e['name']} | {r['users']} | {e['requests']:,} | {e['failures']:,} | {_ms(e['p50_ms'])} | "
                         f"{_ms(e['p99_ms'])} | {e['rps']:.1f} | {written} |")
    busy = [f"{r['scenario']} u={r['users']}: {r['drain_s']} s" for r in results if r.get("drain_s", 0) > 1]
    lines += ["", "Server still busy after Locust stopped (until a keyword search answered in < 0.5 s; the next cell waited): "
              + ("; ".join(busy) if busy else "never over 1 s") + "."]
    errors = [(r["scenario"], r["users"], f) for r in results for f in r["failures"]]
    lines += ["", "Errors (from the `_failures.csv` files):", ""]
    lines += [f"- {s} u={u}: {f['Occurrences']} x `{f['Error'][:300]}`" for s, u, f in errors] or ["- none"]
    lines += ["", f"Server log: {meta['server_log']} (raw/server.log). Raw Locust CSVs and output: raw/. "
              f"Whole run: {meta['total_s']} s.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
