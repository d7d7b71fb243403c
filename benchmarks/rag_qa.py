"""RAG question answering on the project's own docs and Python's: retrieval recall@k and answers
that hold the gold passage's key phrase, for the extractive `rag ask` (no model) and, given
--model, for the budgeted generative one.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rag_qa.py                      # extractive, keyword + hybrid
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rag_qa.py --model runs/gpt256 --gen-questions 40

Question set (deterministic; written to results/rag_qa_questions.jsonl): README.md, docs/*.md and
every help topic of ``pydoc_data.topics`` (shipped with Python; written one file per topic, named
by number so that the file name gives nothing away) are cut into sentences
(``genzoo.tasks.rag_text``). A definitional sentence "SUBJECT is|are|means|returns|... PREDICATE"
with a short subject becomes the question "What is|are SUBJECT?" ("What does SUBJECT return?",
...); its key phrase is the first four words of the
predicate, kept only when that phrase occurs once in the whole corpus, so that exactly one passage
answers. At most --per-file questions per file, in file order. These questions share words with
their answer sentence by construction: this measures whether the pipeline finds and quotes the
one passage, not paraphrase understanding.

Metrics, per retrieval mode: recall@1/3/5 (a chunk of the gold file holding the key phrase among
the first k retrieved), and key@answer: the share of answers holding the key phrase (case and
whitespace folded). Generative: the same, plus how often the gold passage survived the prompt
budget, mean sources kept / dropped and how often --max-tokens was lowered.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).parent / "results"
VERBS = {"is": "What is {}?", "are": "What are {}?", "means": "What does {} mean?", "returns": "What does {} return?",
         "provides": "What does {} provide?", "contains": "What does {} contain?", "holds": "What does {} hold?",
         "stores": "What does {} store?", "takes": "What does {} take?", "raises": "What does {} raise?",
         "writes": "What does {} write?", "reads": "What does {} read?"}
DEFINITION = re.compile(r"^(?P<subj>[A-Za-z\"'`][\w\"'`\- .]{1,60}?) (?P<verb>%s) (?P<pred>.{12,})$" % "|".join(VERBS))
PRONOUNS = {"it", "this", "that", "there", "these", "they", "which", "what", "here", "one", "each", "both", "all", "such", "its",
            "otherwise", "if", "when", "where", "so", "also", "note", "how", "why", "and", "but", "or", "then", "only", "in", "for",
            "see", "below", "above", "on", "at", "with", "as", "by", "from", "to", "of", "another", "other", "any", "same"}
LEADING = {"a", "an", "the", "also", "now", "always", "not", "then", "only", "simply", "just", "usually", "currently"}


def fold(text: str) -> str:
    return " ".join(text.lower().split())


def corpus(work: Path) -> list[tuple[str, Path]]:
    """(label, file) for the project's docs and one file per pydoc topic."""
    from pydoc_data.topics import topics

    files = [("README.md", ROOT / "README.md")] + [(f"docs/{p.name}", p) for p in sorted((ROOT / "docs").glob("*.md"))]
    folder = work / "pydocs"
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(sorted(topics)):
        f = folder / f"{i:04d}.txt"
        f.write_text(topics[name])
        files.append((f"pydoc:{name}", f))
    return files


def build_questions(files, per_file: int) -> list[dict]:
    from genzoo.tasks.rag_text import line_of, sentences, terms

    texts = {label: f.read_text() for label, f in files}
    everything = fold("\n".join(texts.values()))
    out = []
    for label, f in files:
        n = 0
        for s in sentences(texts[label]):
            m = DEFINITION.match(re.sub(r"^(?:[-*+] |\d+\. )", "", s.text).replace("**", "").replace("`", '"'))
            if s.heading or not m or n >= per_file:
                continue
            subj, verb, pred = m.group("subj").strip(), m.group("verb"), m.group("pred")
            words = subj.split()
            if (not 1 <= len(words) <= 7 or words[0].lower() in PRONOUNS or words[-1].lower() in PRONOUNS | LEADING or not terms(subj)
                    or any(w in ("A", "An", "The") for w in words[1:])):
                continue
            pw = [w.strip(".,;:()") for w in pred.split()]
            while pw and pw[0].lower() in LEADING:
                pw = pw[1:]
            key = " ".join(pw[:4])
            if len(pw) < 4 or len(terms(key)) < 2 or not re.fullmatch(r"[\w\"'`\- ,]+", key):
                continue
            if everything.count(fold(key)) != 1:  # one passage answers, or the question is ambiguous
                continue
            first = words[0]
            subj_q = subj[0].lower() + subj[1:] if first in ("A", "An", "The") or (first[1:].islower() and first.isalpha() and first != "Python") else subj
            out.append({"id": len(out), "question": VERBS[verb].format(subj_q), "source": label, "file": str(f),
                        "line": line_of(texts[label], s.start, 1), "passage": s.text, "key": key})
            n += 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k", type=int, default=4, help="sources an answer draws on (rag ask's default: 4)")
    ap.add_argument("--per-file", type=int, default=8, help="most questions taken from one file")
    ap.add_argument("--modes", default="keyword,hybrid", help="retrieval modes to measure")
    ap.add_argument("--model", type=Path, default=None, help="a genzoo text run: also measure the budgeted generative answer")
    ap.add_argument("--gen-questions", type=int, default=40, help="questions asked of --model (generation is slow on a CPU)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--tag", default="rag_qa", help="results file names: results/TAG.json, results/TAG.md")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from genzoo.store import rag
    from genzoo.store.api import Store
    from genzoo.tasks import rag as rag_task
    from genzoo.tasks.encoders import MiniLMEncoder

    work = Path(tempfile.mkdtemp(prefix="rag-qa-"))
    files = corpus(work)
    questions = build_questions(files, args.per_file)
    qfile = OUT / "rag_qa_questions.jsonl"
    qfile.write_text("".join(json.dumps({k: v for k, v in q.items() if k != "file"}) + "\n" for q in questions))
    print(f"{len(questions)} questions from {len(files)} files -> {qfile}", flush=True)

    modes = args.modes.split(",")
    encoder = MiniLMEncoder() if any(m != "keyword" for m in modes) else None
    store = Store.open(work / "store.db", encoder=encoder, redact=False)
    t0 = time.perf_counter()
    report = rag.index_paths(store, [f for _, f in files])
    index_s = time.perf_counter() - t0
    print(f"indexed {report.documents} documents, {report.chunks} chunks, {report.embedded} embedded in {index_s:.0f} s", flush=True)

    def hit(sources, q) -> bool:
        return any(s.uri == str(Path(q["file"]).resolve()) and fold(q["key"]) in fold(s.text) for s in sources)

    results = {"questions": len(questions), "files": len(files), "chunks": report.chunks, "index_s": round(index_s, 1), "k": args.k,
               "modes": {}, "date": datetime.date.today().isoformat()}
    examples = []
    for mode in modes:
        rec = {1: 0, 3: 0, 5: 0}
        key_hits, times = 0, []
        for i, q in enumerate(questions):
            got = rag.retrieve(store, q["question"], 5, mode=mode)
            for k in rec:
                rec[k] += hit(got[:k], q)
            t = time.perf_counter()
            a = rag_task.ask(store, q["question"], k=args.k, mode=mode, record=False)
            times.append(time.perf_counter() - t)
            ok = fold(q["key"]) in fold(a.text)
            key_hits += ok
            if mode == modes[-1] and len(examples) < 3 and ok:
                examples.append({"question": q["question"], "answer": a.text, "sources": [s.where for s in a.sources]})
            if (i + 1) % 25 == 0:
                print(f"  {mode}: {i + 1}/{len(questions)}  recall@5 {rec[5] / (i + 1):.2f}  key@answer {key_hits / (i + 1):.2f}", flush=True)
        n = len(questions)
        results["modes"][mode] = {"recall@1": rec[1] / n, "recall@3": rec[3] / n, "recall@5": rec[5] / n, "key@answer": key_hits / n,
                                  "answer_p50_ms": round(1000 * statistics.median(times), 1)}
        print(mode, results["modes"][mode], flush=True)
    results["examples"] = examples

    if args.model is not None:
        results["generative"] = generative(store, questions[: args.gen_questions], args, hit, modes[-1])
    (OUT / f"{args.tag}.json").write_text(json.dumps(results, indent=1))
    (OUT / f"{args.tag}.md").write_text(markdown(results, args))
    print(f"wrote {OUT / (args.tag + '.md')}", flush=True)


def generative(store, questions, args, hit, mode) -> dict:
    from genzoo.tasks import rag as rag_task
    from genzoo.tasks.textgen import load_text_model

    model, tok = load_text_model(args.model)
    context = int(model.config.context)
    kept = dropped = lowered = in_prompt = key_hits = 0
    times, example = [], None
    for i, q in enumerate(questions):
        t = time.perf_counter()
        a = rag_task.ask(store, q["question"], args.model, k=args.k, mode=mode, max_tokens=args.max_tokens, record=False,
                         loaded=(model, tok))
        times.append(time.perf_counter() - t)
        kept, dropped = kept + len(a.sources), dropped + len(a.dropped)
        lowered += any("--max-tokens lowered" in n for n in a.notes)
        in_prompt += fold(q["key"]) in fold(a.prompt)
        key_hits += fold(q["key"]) in fold(a.text)
        example = example or {"question": q["question"], "prompt": a.prompt, "answer": a.text, "notes": a.notes}
        print(f"  generative {i + 1}/{len(questions)}", flush=True) if (i + 1) % 10 == 0 else None
    n = max(len(questions), 1)
    return {"model": str(args.model), "context": context, "questions": len(questions), "mode": mode, "max_tokens": args.max_tokens,
            "key_in_prompt": in_prompt / n, "key@answer": key_hits / n, "mean_kept": kept / n, "mean_dropped": dropped / n,
            "max_tokens_lowered": lowered / n, "p50_s": round(statistics.median(times), 2) if times else None, "example": example}


def markdown(r: dict, args) -> str:
    lines = [f"# RAG question answering ({r['date']})", "",
             f"{r['questions']} questions ({r['files']} files: README.md, docs/*.md, pydoc_data.topics; "
             f"benchmarks/results/rag_qa_questions.jsonl), {r['chunks']} chunks (1000 characters, 150 overlap), "
             f"answers from k={r['k']} sources. Command: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rag_qa.py"
             + (f" --model {args.model}" if args.model else "") + "`", "",
             "| answer | retrieval | recall@1 | recall@3 | recall@5 | key phrase in answer | answer p50 |",
             "|---|---|---|---|---|---|---|"]
    for mode, m in r["modes"].items():
        lines.append(f"| extractive | {mode} | {m['recall@1']:.2f} | {m['recall@3']:.2f} | {m['recall@5']:.2f} | {m['key@answer']:.2f} "
                     f"| {m['answer_p50_ms']:.0f} ms |")
    g = r.get("generative")
    if g:
        m = r["modes"][g["mode"]]
        lines.append(f"| genzoo GPT (context {g['context']}, {g['questions']} q) | {g['mode']} | {m['recall@1']:.2f} | {m['recall@3']:.2f} "
                     f"| {m['recall@5']:.2f} | {g['key@answer']:.2f} | {g['p50_s']:.2f} s |")
        lines += ["", f"Budgeted generative mode ({g['model']}, --max-tokens {g['max_tokens']}): key phrase inside the fitted "
                  f"prompt {g['key_in_prompt']:.2f}; sources kept {g['mean_kept']:.2f} / dropped {g['mean_dropped']:.2f} per question; "
                  f"--max-tokens lowered in {g['max_tokens_lowered']:.2f} of asks."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
