"""What ``genzoo rag index|ask``, ``genzoo graph``, ``genzoo stats`` and ``genzoo export`` do (``cli.py`` holds only
the thin typer wrappers). Each opens the store, calls the module that owns the concept, and
returns what the wrapper prints."""

from __future__ import annotations

from pathlib import Path

from genzoo.core.errors import GenzooError


def check_store_args(store_path) -> None:
    """Refuse a $GENZOO_API_KEY or a --store that is not valid text (bytes that are not UTF-8 reach
    Python as lone surrogates, which can be neither hashed nor handed to the database driver) with
    one clear line, before anything opens the store."""
    import os

    from genzoo.store.api import ENV_KEY
    from genzoo.store.search import check_text

    key = os.environ.get(ENV_KEY)
    if key is not None:
        check_text(key, f"${ENV_KEY}")
    if store_path is not None:
        check_text(str(store_path), "--store")
        if "\x00" in str(store_path):
            raise GenzooError("--store must not hold a NUL character")


def open_store(store_path: Path | None, encoder=None, **options):
    """The store a command works on (--store, else $GENZOO_STORE, else ~/.genzoo/store.db), opened
    with $GENZOO_API_KEY once both are known to be usable text. ``encoder=None``: no model loads."""
    from genzoo.store.api import Store

    check_store_args(store_path)
    return Store.open(store_path, encoder=encoder, **options)


def _encoder(mode: str):
    """The CLI's text encoder (all-MiniLM-L6-v2, loaded on first use) for modes that need vectors;
    keyword-only runs skip it."""
    if mode == "keyword":
        return None
    from genzoo.tasks.encoders import MiniLMEncoder

    return MiniLMEncoder()


def run_rag_index(paths: list[Path], *, store_path: Path | None, chunk_chars: int, overlap: int, shared: bool,
                  keyword_only: bool) -> str:
    from genzoo.store import rag

    with open_store(store_path, _encoder("keyword" if keyword_only else "hybrid")) as store:
        r = rag.index_paths(store, paths, chunk_chars=chunk_chars, overlap=overlap, visibility="shared" if shared else "private")
        url = store.backend.url
    lines = [f"indexed {r.documents} new or changed document(s), {r.unchanged} unchanged; {r.chunks} chunk(s) stored, "
             f"{r.duplicate_chunks} of them copies of stored chunks; {r.embedded} embedded; in {url}"]
    lines += [f"skipped {s}" for s in r.skipped]
    return "\n".join(lines)


def run_rag_ask(question: str, *, model: Path | None, store_path: Path | None, k: int, mode: str, max_tokens: int, temperature: float,
                seed: int, device: str, no_store: bool, sentences: int = 3, guardrails: Path | None = None):
    from genzoo.cli.app import load_guardrails
    from genzoo.tasks import rag

    from genzoo.store.search import check_text

    check_text(question, "the question")
    policy = load_guardrails(guardrails)
    if model is not None and not Path(model).exists():
        raise GenzooError(f"--model {model} does not exist; give a genzoo run folder or a local Hugging Face checkpoint folder, "
                          "or leave --model out for an extractive answer")
    with open_store(store_path, _encoder(mode)) as store:
        answer = rag.ask(store, question, model, k=k, mode=mode, max_tokens=max_tokens, temperature=temperature, seed=seed,
                         device=device, record=not no_store, sentences=sentences, guardrails=policy)
    return answer


def format_answer(answer) -> str:
    extractive = answer.kind == "extractive"
    empty = "(no sentence of the retrieved passages answers it)" if extractive else "(the model produced no text)"
    if answer.verdict is not None and answer.verdict.withheld:  # a withheld answer is not printed, nor called empty
        empty = "(withheld by the guardrails)"
    lines = [answer.text or empty, "", "sources:"]
    lines += [f"[{i}] {s.where}" for i, s in enumerate(answer.sources, 1)] or ["(none used)" if answer.dropped else
                                                                              "(none retrieved: index documents with genzoo rag index)"]
    if answer.dropped:
        lines.append("retrieved, not quoted:" if extractive else "retrieved, left out for room:")
        lines += [f"    {s.where}" for s in answer.dropped]
    lines += [f"note: {n}" for n in answer.notes]
    if extractive:
        lines.append("(extractive answer: sentences quoted from the sources, no model run; --model PATH generates one)")
    if answer.verdict is not None:
        lines.append(answer.verdict.summary())
    if answer.generation_id is not None:
        lines.append(f"recorded as generation {answer.generation_id}")
    return "\n".join(lines)


def run_stats(*, store_path: Path | None, by: str, model: str | None, png: Path | None):
    from genzoo.store import stats
    from genzoo.store.search import check_text

    if model is not None:
        check_text(model, "--model")
    with open_store(store_path, None) as store:
        rows = stats.usage(store, by=by, model=model)
    if png is not None:
        from genzoo.viz.usage import usage_chart

        usage_chart(rows, png, by)
    return stats.table(rows, by)


def run_export(out: Path, *, store_path: Path | None, rated_min: float | None, label: str | None, include_synthetic: bool,
               fmt: str | None) -> str:
    from genzoo.store.export import export

    with open_store(store_path, None) as store:
        r = export(store, out, rated_min=rated_min, label=label, include_synthetic=include_synthetic, fmt=fmt)
    note = f" ({r.synthetic} synthetic)" if r.synthetic else ""
    left = f"; {r.skipped_synthetic} synthetic record(s) left out (--include-synthetic adds them)" if r.skipped_synthetic else ""
    return f"wrote {r.written} record(s){note} to {r.path} ({r.format}){left}"


def run_graph(node: str, *, store_path: Path | None, direction: str, types: str | None) -> str:
    """What led to a node (``in``) or what it led to (``out``), one line per node, nearest first."""
    from genzoo.store import graph

    if direction not in ("in", "out"):
        raise GenzooError(f"--direction must be in (what led to it) or out (what it led to), got {direction!r}")
    wanted = None if not types else {t.strip() for t in types.split(",")}
    if wanted and not wanted <= set(graph.NODE_TYPES):
        raise GenzooError(f"--types takes node types from {', '.join(graph.NODE_TYPES)}, got {types!r}")
    _check_node_text(node, graph.NODE_TYPES)
    with open_store(store_path, None) as store:
        n = graph.node(node)
        found = (graph.lineage if direction == "in" else graph.descendants)(store, n, types=wanted)
        lines = [f"{'led to' if direction == 'in' else 'came from'} {graph.label(store, n)}:"]
        lines += [f"{'  ' * depth}{graph.label(store, m)}" for m, depth in found] or ["  (nothing)"]
    return "\n".join(lines)


def _check_node_text(node: str, node_types) -> None:
    """TYPE:ID with an ASCII whole-number ID a database can hold; one clear error otherwise (not a
    ValueError from a Unicode digit such as '²', nor an OverflowError from a 30-digit id)."""
    from genzoo.store.search import MAX_ID, check_text

    check_text(node, "the node")
    kind, _, ident = node.partition(":")
    if kind not in node_types or not (ident.isascii() and ident.isdigit()) or int(ident) > MAX_ID:
        raise GenzooError(f"a node is TYPE:ID with TYPE one of {', '.join(node_types)} and ID a whole number from 0 to {MAX_ID} "
                          f"(e.g. generation:12), got {node!r}")
