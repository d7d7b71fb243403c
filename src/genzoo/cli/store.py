"""Commands on the generation store: `genzoo store search|graph|stats|export|dedup` (and
`user|key|policy|check`, in ``store_admin``) and
`genzoo rag index|ask`. Each calls the module that owns the concept and prints what it returns.

The store's verbs were top-level commands before (`genzoo search`, ...): those spellings still
work, hidden from the help, with a note pointing to the new one.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from genzoo.cli.app import GenzooTyper, GuardrailsOption, JsonFlag, StoreOption, out, renamed, say
from genzoo.core.errors import GenzooError

app = GenzooTyper()  # top-level verbs: dedup (datasets), and the old spellings
store_app = GenzooTyper(help="The generation store: search, graph, stats, export, dedup; users, keys, policy, check.")


@app.command()
def dedup(
    data: Annotated[Optional[str], typer.Argument(help="dataset: pydocs, pycode, digits, a .txt / .jsonl file, a folder, a .npy / .npz")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="near-duplicate threshold: Jaccard for text (default 0.8), cosine for images (0.99)")] = None,
    out_path: Annotated[Optional[Path], typer.Option("--out", "-o", help="write the kept items here (.jsonl / .txt for text, .npz for images); `genzoo train --data` reads it")] = None,
    unit: Annotated[str, typer.Option(help="text shingles: word or char")] = "word",
    k: Annotated[int, typer.Option(help="text shingle size (words or characters)")] = 5,
    as_json: JsonFlag = False,
    in_store: Annotated[bool, typer.Option("--store", hidden=True, help="old spelling of `genzoo store dedup`")] = False,
    kind: Annotated[str, typer.Option("--kind", hidden=True, help="with --store: text or image")] = "text",
) -> None:
    """Report exact and near-duplicate items in a dataset, optionally writing a cleaned copy
    (duplicates among stored generations: `genzoo store dedup`)."""
    from genzoo.cli.dedup import print_report, run_dedup

    if in_store:  # the old spelling: the positional argument named the store
        renamed("dedup --store [STORE]", "store dedup [--store STORE]")
        return store_dedup_cmd(kind=kind, threshold=threshold, out_path=out_path, as_json=as_json, store=data)
    if data is None:
        raise GenzooError("give the data to dedup (e.g. `genzoo dedup pydocs`); for the stored generations: `genzoo store dedup`")
    if kind != "text":
        raise GenzooError("--kind selects what to compare among stored generations: use `genzoo store dedup --kind image`")
    report = run_dedup(data, threshold=threshold, out=out_path, unit=unit, k=k)
    print_report(report, out, as_json)


@store_app.command("dedup")
def store_dedup_cmd(
    kind: Annotated[str, typer.Option("--kind", help="text (MinHash) or image (cosine of stored image vectors)")] = "text",
    threshold: Annotated[Optional[float], typer.Option(help="near-duplicate threshold: Jaccard for text (default 0.8), cosine for images (default 0.998)")] = None,
    out_path: Annotated[Optional[Path], typer.Option("--out", "-o", help="also write the report as JSON here")] = None,
    as_json: JsonFlag = False,
    store: StoreOption = None,
) -> None:
    """Duplicate clusters among the stored generations you may see (read-only)."""
    from genzoo.cli.dedup import print_store_report, store_dedup

    report = store_dedup(store, kind=kind, threshold=threshold, out=out_path)
    print_store_report(report, out, as_json)


@store_app.command("search")
def search(
    query: str = typer.Argument(..., help="words to look for (an empty string lists the newest records)"),
    mode: str = typer.Option("auto", help="hybrid, keyword or vector; auto: hybrid when the embedding model is installed, else keyword"),
    k: int = typer.Option(10, "--k", help="results to show"),
    fusion: str = typer.Option("rrf", help="hybrid fusion: rrf (reciprocal rank, k=60) or weighted"),
    alpha: float = typer.Option(0.5, help="weighted fusion: weight of the vector side"),
    model: Optional[str] = typer.Option(None, help="only this model (name)"),
    family: Optional[str] = typer.Option(None, help="only this family"),
    user: Optional[str] = typer.Option(None, help="only this user's records"),
    kind: Optional[str] = typer.Option(None, help="text, image, points or array"),
    since: Optional[str] = typer.Option(None, help="recorded at or after (ISO 8601, e.g. 2025-01-31)"),
    until: Optional[str] = typer.Option(None, help="recorded at or before (ISO 8601)"),
    min_rating: Optional[float] = typer.Option(None, "--min-rating", help="mean feedback rating at least this"),
    synthetic: Optional[bool] = typer.Option(None, "--synthetic/--real", help="only synthetic (model output) or only real records"),
    store: StoreOption = None,
    images: bool = typer.Option(False, "--images", help="search stored digit images by text, ranked by a CLIP (genzoo clip)"),
    clip: Optional[Path] = typer.Option(None, "--clip", help="with --images: a run of `genzoo train clip` (default: genzoo's cached CLIP)"),
) -> None:
    """Search the generation store: keyword (BM25), vector (all-MiniLM-L6-v2) or both fused, with filters;
    --images: digit images by text."""
    from genzoo.cli.search import run_search

    table = run_search(query, store_path=store, mode=mode, k=k, fusion=fusion, alpha=alpha, model=model, family=family,
                       user=user, kind=kind, since=since, until=until, min_rating=min_rating, synthetic=synthetic,
                       images=images, clip=clip)
    out.print(table)


rag_app = GenzooTyper(help="Retrieval-augmented generation over documents indexed in the store.")


@rag_app.command("index")
def rag_index(
    paths: List[Path] = typer.Argument(..., help="files or folders (.txt, .md, .rst, .py; folders recursively); regular files only: a FIFO, device or /proc file is refused (skipped with a note in a folder)"),
    chunk_chars: int = typer.Option(1000, "--chunk-chars", help="largest chunk, in characters"),
    overlap: int = typer.Option(150, "--overlap", help="characters a chunk repeats from the one before"),
    shared: bool = typer.Option(False, "--shared", help="let every user of the store retrieve these documents"),
    keyword_only: bool = typer.Option(False, "--keyword-only", help="do not embed the chunks (keyword retrieval only)"),
    store: StoreOption = None,
) -> None:
    """Chunk documents (paragraphs, Markdown sections, Python definitions) and index them for keyword + vector retrieval."""
    from genzoo.cli.store_data import run_rag_index

    say(run_rag_index(paths, store_path=store, chunk_chars=chunk_chars, overlap=overlap, shared=shared, keyword_only=keyword_only))


@rag_app.command("ask")
def rag_ask(
    question: str = typer.Argument(..., help="the question"),
    model: Optional[Path] = typer.Option(None, "--model", help="a genzoo text run folder or a local Hugging Face checkpoint folder; "
                                         "left out: an extractive answer (the best retrieved sentences, quoted)"),
    k: int = typer.Option(4, "--k", help="sources to retrieve"),
    mode: str = typer.Option("hybrid", help="retrieval: hybrid, keyword or vector"),
    max_tokens: int = typer.Option(128, "--max-tokens", help="longest answer, in tokens (lowered, with a note, when the model's context needs it)"),
    temperature: float = typer.Option(0.0, help="0: greedy decoding"),
    seed: int = typer.Option(0),
    device: str = typer.Option("cpu"),
    sentences: int = typer.Option(3, "--sentences", help="without --model: most sentences to quote"),
    no_store: bool = typer.Option(False, "--no-store", help="do not record the question and answer"),
    store: StoreOption = None,
    guardrails: GuardrailsOption = None,
) -> None:
    """Answer a question from the indexed documents; prints the answer and the sources it used ([1] path:lines).
    With --model the prompt is fitted to the model's context; without, the answer quotes the best sentences."""
    from genzoo.cli.store_data import format_answer, run_rag_ask

    answer = run_rag_ask(question, model=model, store_path=store, k=k, mode=mode, max_tokens=max_tokens, temperature=temperature,
                         seed=seed, device=device, no_store=no_store, sentences=sentences, guardrails=guardrails)
    say(format_answer(answer))


@store_app.command("graph")
def graph_cmd(
    node: str = typer.Argument(..., help="TYPE:ID, e.g. generation:12, model:3, document:5 (types: generation, prompt, model, document, chunk, entity)"),
    direction: str = typer.Option("in", help="in: what led to it (prompts, models, documents, parents); out: what it led to"),
    types: Optional[str] = typer.Option(None, help="only these node types, comma-separated"),
    store: StoreOption = None,
) -> None:
    """Walk the store's relationship graph: which prompts, models and documents led to an output, or what a model or document led to."""
    from genzoo.cli.store_data import run_graph

    say(run_graph(node, store_path=store, direction=direction, types=types))


@store_app.command("stats")
def stats(
    by: str = typer.Option("day", help="day or week"),
    model: Optional[str] = typer.Option(None, help="only this model (name)"),
    png: Optional[Path] = typer.Option(None, "--out", "-o", help="also draw the chart into this PNG"),
    store: StoreOption = None,
) -> None:
    """Usage and feedback over time per model: generations, mean rating, label counts (table, and a PNG chart with -o)."""
    from genzoo.cli.store_data import run_stats

    out.print(run_stats(store_path=store, by=by, model=model, png=png))
    if png is not None:
        say(f"chart: {png}")


@store_app.command("export")
def export_cmd(
    out_path: Path = typer.Option(..., "--out", "-o", help="where to write: .jsonl / .parquet for text, .npz for images, .csv for tables; a new path, or an existing regular file, which is replaced (atomically); a folder, symbolic link, device or FIFO is refused"),
    rated_min: Optional[float] = typer.Option(None, "--rated-min", help="records whose mean rating is at least this"),
    label: Optional[str] = typer.Option(None, "--label", help="records given this label"),
    include_synthetic: bool = typer.Option(False, "--include-synthetic", help="also export synthetic (model-made) records"),
    fmt: Optional[str] = typer.Option(None, "--format", help="jsonl, parquet, npz or csv (tables) (default: from the -o suffix)"),
    store: StoreOption = None,
) -> None:
    """Export rated or labeled records as a training set that `genzoo train --data` reads (real records only by default)."""
    from genzoo.cli.store_data import run_export

    say(run_export(out_path, store_path=store, rated_min=rated_min, label=label, include_synthetic=include_synthetic, fmt=fmt))


def _old_spelling(name: str, command) -> None:
    """Keep `genzoo NAME ...` working (hidden) as `genzoo store NAME ...`, with a note."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        renamed(name, f"store {name}")
        return command(*args, **kwargs)

    app.command(name, hidden=True)(run)


for _name, _command in (("search", search), ("graph", graph_cmd), ("stats", stats), ("export", export_cmd)):
    _old_spelling(_name, _command)


from genzoo.cli.store_admin import register as _register_admin  # noqa: E402  (user, key, policy, check)

_register_admin(store_app)
