"""PII redaction benchmark: the Presidio-based ``genzoo.store.pii`` beside the hand-written ``genzoo.store.redact``.

A seeded labelled set: PII from Faker (several locales, many formats) in varied sentences, plus PII-free sentences
from the Python language reference shipped with Python (``pydoc_data.topics``), which nobody here wrote.

Recall (per gold kind): the gold span is fully covered by the redaction (by findings of any kind).
Precision (per predicted kind): predicted spans that overlap a gold span; every finding in a clean sentence is a
false positive. Cost: milliseconds per 1,000 records (sentences) on this machine.

Usage: .venv/bin/python benchmarks/pii/run.py [--seed 0] [--per-kind 60] [--clean 500]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import string
import sys
import time
from pathlib import Path

from faker import Faker

LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL"]
OLD_KIND = {"name": "person"}  # the old module's kind names, mapped onto the new ones

# Templates: {v} is the PII value. Several phrasings per kind, cue words only where the kind needs one.
TEMPLATES = {
    "person": ["{v} signed it.", "I spoke with {v} yesterday about the invoice.", "Please forward this to {v}.",
               "The report was written by {v} and reviewed twice.", "ask {v} if the build is green",
               "Thanks, {v}", "{v} will join the call at noon.", "Our new maintainer is {v}.",
               "cc: {v}", "Meeting notes (attendees: {v})"],
    "email": ["Mail {v} for access.", "contact: {v}", "reply to {v} before Friday", "{v} wrote the first draft.",
              "Send the logs to {v}, thanks."],
    "phone": ["call {v} now", "Phone: {v}", "You can reach me on {v} after six.", "tel. {v}", "my mobile is {v}",
              "The hotline {v} is open all week.", "Fax {v}"],
    "address": ["send it to {v}", "We moved to {v} last spring.", "Address: {v}", "The office at {v} is closed.",
                "Deliver to {v}, second door.", "She lives at {v}."],
    "iban": ["IBAN {v}", "Please transfer the amount to {v}.", "account: {v}", "Bank details {v} (reference 12)",
             "wire it to {v} today"],
    "card": ["card {v}", "Charge {v} for the renewal.", "paid with {v}, exp 09/27", "Visa/MC number {v}",
             "The number on the card is {v}."],
    "ssn": ["my SSN is {v}", "SSN: {v}", "Social Security number {v} on file.", "her social security no. {v}",
            "ssn {v} was verified"],
    "dob": ["born on {v}", "DOB: {v}", "Date of birth: {v}", "He was born {v} in a small town.",
            "birthday is {v}", "date of birth {v}, verified"],
    "passport": ["passport no. {v}", "Passport number: {v}", "his passport {v} expires soon",
                 "scan of passport #{v} attached", "Passport {v} (issued 2019)"],
    "secret": ["key {v}", "export AWS_ACCESS_KEY_ID={v}", 'token = "{v}"', "leaked {v} in the CI log",
               "use {v} for the staging bucket"],
    "ip": ["from {v}, then retry", "server at {v} is down", "ping {v}", "The client {v} sent 3 requests."],
}


def _group(digits: str, sep: str, sizes) -> str:
    out, i = [], 0
    for n in sizes:
        out.append(digits[i:i + n])
        i += n
    if i < len(digits):
        out.append(digits[i:])
    return sep.join(p for p in out if p)


def make_value(kind: str, rng: random.Random, fakers: dict) -> str:
    loc = rng.choice(LOCALES)
    f = fakers[loc]
    if kind == "person":
        v = f"{f.first_name()} {f.last_name()}"
        return v.lower() if rng.random() < 0.3 else v
    if kind == "email":
        v = f.free_email() if rng.random() < 0.5 else f.company_email()
        if rng.random() < 0.35:  # obfuscated: "jane dot doe at example dot org" / "jane.doe [at] example [dot] org"
            local, domain = v.split("@")
            if rng.random() < 0.5:
                return local.replace(".", " dot ") + " at " + domain.replace(".", " dot ")
            return local + " [at] " + domain.replace(".", " [dot] ")
        return v
    if kind == "phone":
        return f.phone_number()
    if kind == "address":
        return re.sub(r"\s*\n\s*", ", ", f.street_address()).strip()
    if kind == "iban":
        v = f.iban()
        return _group(v, " ", [4] * 9) if rng.random() < 0.5 else v
    if kind == "card":
        v = fakers["en_US"].credit_card_number(rng.choice(["visa16", "mastercard", "amex", "discover", "visa13"]))
        sep = rng.choice(["", " ", "-", "."])
        if len(v) == 15:
            return _group(v, sep, [4, 6, 5])
        return _group(v, sep, [4, 4, 4, 4]) if sep else v
    if kind == "ssn":
        v = fakers["en_US"].ssn()
        return v.replace("-", "") if rng.random() < 0.3 else v
    if kind == "dob":
        d = f.date_of_birth(minimum_age=18, maximum_age=90)
        fmt = rng.choice(["%m/%d/%Y", "%d.%m.%Y", "%Y-%m-%d", "%B %d, %Y", "%d %B %Y", "%d/%m/%y", "%b %d %Y"])
        return d.strftime(fmt)
    if kind == "passport":
        if rng.random() < 0.5:
            return fakers["en_US"].passport_number()
        return rng.choice(string.ascii_uppercase) + "".join(rng.choice(string.ascii_uppercase + string.digits)
                                                            for _ in range(rng.randint(6, 8))) + str(rng.randint(0, 9))
    if kind == "secret":
        pick = rng.random()
        if pick < 0.6:
            return "AKIA" + "".join(rng.choice(string.ascii_uppercase + "234567") for _ in range(16))
        if pick < 0.8:
            return "ghp_" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(36))
        return "sk_live_" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(24))
    if kind == "ip":
        return f.ipv4_public() if rng.random() < 0.7 else f.ipv6()
    raise ValueError(kind)


def build_set(seed: int = 0, per_kind: int = 60, clean: int = 500, kinds=tuple(TEMPLATES)):
    """Records ``{"text", "gold": [[kind, start, end], ...], "source"}``: PII records first, then clean ones."""
    rng = random.Random(seed)
    Faker.seed(seed)
    fakers = {loc: Faker(loc) for loc in LOCALES}
    for i, f in enumerate(fakers.values()):
        f.seed_instance(seed * 100 + i)
    records = []
    for kind in kinds:
        for _ in range(per_kind):
            value = make_value(kind, rng, fakers)
            template = rng.choice(TEMPLATES[kind])
            pre, post = template.split("{v}")
            text = pre + value + post
            gold = [[kind, len(pre), len(pre) + len(value)]]
            if rng.random() < 0.25:  # a second piece of PII in the same record: findings must not swallow each other
                other = rng.choice([k for k in ("person", "email", "phone") if k != kind])
                ov = make_value(other, rng, fakers)
                if other == "person" and ov.islower():
                    ov = ov.title()
                joint = " Contact: " if other != "person" else " Signed, "
                gold.append([other, len(text) + len(joint), len(text) + len(joint) + len(ov)])
                text = text + joint + ov
            records.append({"text": text, "gold": gold, "source": "faker"})
    records += [{"text": s, "gold": [], "source": "pydoc_data.topics"} for s in clean_sentences(seed, clean)]
    return records


def clean_sentences(seed: int, n: int):
    """``n`` sentences of the Python language reference (seeded sample), not written by us."""
    from pydoc_data.topics import topics

    sentences = []
    for key in sorted(topics):
        for para in re.split(r"\n\s*\n", topics[key]):
            para = " ".join(para.split())
            for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", para):
                if 30 <= len(s) <= 300:
                    sentences.append(s)
    sentences = sorted(set(sentences))
    return random.Random(seed).sample(sentences, n)


def score(records, predictions):
    """Per-kind recall (gold covered by any finding) and precision (findings of the kind overlapping a gold span)."""
    stats = {}
    clean_hits = []
    for rec, found in zip(records, predictions):
        for kind, s, e in rec["gold"]:
            st = stats.setdefault(kind, {"gold": 0, "covered": 0, "pred": 0, "tp": 0})
            st["gold"] += 1
            covered = set()
            for _, fs, fe in found:
                covered.update(range(max(s, fs), min(e, fe)))
            if len(covered) == e - s:
                st["covered"] += 1
            else:
                st.setdefault("missed", []).append(rec["text"])
        for kind, fs, fe in found:
            st = stats.setdefault(kind, {"gold": 0, "covered": 0, "pred": 0, "tp": 0})
            st["pred"] += 1
            if any(fs < e and s < fe for _, s, e in rec["gold"]):
                st["tp"] += 1
            else:
                st.setdefault("false_positives", []).append(f"{rec['text'][fs:fe]!r} in {rec['text'][:160]!r}")
                if not rec["gold"]:
                    clean_hits.append({"kind": kind, "value": rec["text"][fs:fe], "sentence": rec["text"]})
    for st in stats.values():
        st["recall"] = round(st["covered"] / st["gold"], 4) if st["gold"] else None
        st["precision"] = round(st["tp"] / st["pred"], 4) if st["pred"] else None
    return stats, clean_hits


def run_new(texts, batched=True):
    from genzoo.store.pii import redact, redact_many

    if batched:
        out = redact_many(texts)
    else:
        out = [redact(t) for t in texts]
    return [[(f.kind, f.start, f.end) for f in r.findings] for r in out]


def run_old(texts):
    from genzoo.store.redact import redact

    return [[(OLD_KIND.get(f.kind, f.kind), f.start, f.end) for f in redact(t).findings] for t in texts]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-kind", type=int, default=60)
    ap.add_argument("--clean", type=int, default=500)
    ap.add_argument("--out", default=str(Path(__file__).parent))
    args = ap.parse_args(argv)

    records = build_set(args.seed, args.per_kind, args.clean)
    texts = [r["text"] for r in records]

    t0 = time.perf_counter()
    from genzoo.store.pii.engine import get_analyzer

    get_analyzer()
    load_s = time.perf_counter() - t0
    run_new(texts[:20])  # warm caches (name lists, detect-secrets plugins) outside the timed runs

    t0 = time.perf_counter()
    new = run_new(texts, batched=True)
    new_ms = (time.perf_counter() - t0) * 1000 / len(texts) * 1000
    t0 = time.perf_counter()
    new_single = run_new(texts, batched=False)
    new_single_ms = (time.perf_counter() - t0) * 1000 / len(texts) * 1000
    assert new_single == new, "redact and redact_many disagree"
    run_old(texts[:20])
    t0 = time.perf_counter()
    old = run_old(texts)
    old_ms = (time.perf_counter() - t0) * 1000 / len(texts) * 1000

    new_stats, new_clean = score(records, new)
    old_stats, old_clean = score(records, old)
    command = ("PYTHONPATH=src .venv/bin/python benchmarks/pii/run.py"
               f" --seed {args.seed} --per-kind {args.per_kind} --clean {args.clean}")
    result = {
        "command": command,
        "records": len(records), "pii_spans": sum(len(r["gold"]) for r in records),
        "clean_sentences": sum(1 for r in records if not r["gold"]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
        "engine_first_load_s": round(load_s, 2),
        "ms_per_1000_records": {"new_batched": round(new_ms), "new_one_by_one": round(new_single_ms),
                                "old": round(old_ms)},
        "new": new_stats, "old": old_stats,
        "new_clean_detections": new_clean, "old_clean_detections": old_clean,
    }
    out = Path(args.out)
    (out / "results.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    (out / "results.md").write_text(render(result))
    print(render(result))


def render(res) -> str:
    kinds = sorted(set(res["new"]) | set(res["old"]), key=lambda k: list(TEMPLATES).index(k) if k in TEMPLATES else 99)

    def cell(st, key):
        v = st.get(key) if st else None
        return "—" if v is None else f"{v:.3f}"

    lines = [
        "# PII redaction benchmark: Presidio engine (genzoo.store.pii) vs hand-written (genzoo.store.redact)", "",
        f"Command: `{res['command']}`", "",
        f"{res['records']} records: {res['pii_spans']} gold PII spans (Faker, locales {', '.join(LOCALES)}) and "
        f"{res['clean_sentences']} PII-free sentences from `pydoc_data.topics`. Machine: {res['machine']}.", "",
        "Recall = gold span fully covered by the redaction; precision = findings of that kind overlapping a gold span "
        "(findings in clean sentences are false positives).", "",
        "| kind | gold | new recall | new precision | new findings | old recall | old precision | old findings |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k in kinds:
        n, o = res["new"].get(k, {}), res["old"].get(k, {})
        lines.append(f"| {k} | {n.get('gold', o.get('gold', 0))} | {cell(n, 'recall')} | {cell(n, 'precision')} | "
                     f"{n.get('pred', 0)} | {cell(o, 'recall')} | {cell(o, 'precision')} | {o.get('pred', 0)} |")
    ms = res["ms_per_1000_records"]
    lines += ["", f"Cost (ms per 1,000 records): new, batched `redact_many` {ms['new_batched']}; new, one `redact` per "
              f"record {ms['new_one_by_one']}; old {ms['old']}. Engine first load: {res['engine_first_load_s']} s.", "",
              "## Detections in the clean sentences (new engine)", ""]
    for hit in res["new_clean_detections"] or [{"kind": "none", "value": "", "sentence": ""}]:
        lines.append(f"- {hit['kind']}: {hit['value']!r} in {hit['sentence'][:200]!r}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
