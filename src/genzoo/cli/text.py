"""Commands on text models: generate, finetune (LoRA), fill (masked LM), embed (sentence vectors)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from genzoo.cli.app import GenzooTyper, GuardrailsOption, StoreOption, load_guardrails, note, out, read_text_file, say
from genzoo.core.errors import GenzooError

app = GenzooTyper()


@app.command()
def generate(
    run: Path = typer.Argument(..., help="a text model's run/checkpoint folder (gpt, t5), a local Hugging Face Llama/Mistral/Qwen2/T5 folder, "
                                         "or a LoRA adapter folder from `genzoo finetune` (its base is found from its adapter_config.json)"),
    prompt: List[str] = typer.Argument(None, help="prompt(s) to continue, or inputs of a text-to-text model (none: start a new document)"),
    max_tokens: int = typer.Option(100, "--max-tokens", help="new tokens at most"),
    temperature: float = typer.Option(1.0, help="0: greedy"),
    greedy: bool = typer.Option(False, "--greedy", help="the most likely token each step (temperature 0)"),
    top_k: int = typer.Option(0, "--top-k", help="keep the k most likely tokens (0: off)"),
    top_p: float = typer.Option(1.0, "--top-p", help="nucleus sampling mass (1: off)"),
    min_p: float = typer.Option(0.0, "--min-p", help="drop tokens below min_p x the top probability"),
    repetition_penalty: float = typer.Option(1.0, "--repetition-penalty"),
    stop: Optional[List[str]] = typer.Option(None, "--stop", help="stop string (repeatable)"),
    seed: int = typer.Option(0, help="random seed (same seed, same text)"),
    regex: Optional[str] = typer.Option(None, help="constrain the output to this regular expression"),
    json_schema: Optional[Path] = typer.Option(None, "--json-schema", help="constrain the output to this JSON schema (file)"),
    grammar: Optional[Path] = typer.Option(None, help="constrain the output to this Lark grammar (file)"),
    verify: Optional[str] = typer.Option(None, help="verifier in the loop: python (the output must parse)"),
    attempts: int = typer.Option(8, help="verifier: attempts at most"),
    device: str = typer.Option("cpu"),
    adapter: Optional[str] = typer.Option(None, "--adapter", help="RUN is a base model: apply this LoRA adapter to it, by folder "
                                          "or by the name `genzoo adapters RUN` lists (also how to use a base that moved)"),
    store: StoreOption = None,
    no_store: bool = typer.Option(False, "--no-store", help="do not record the generated text in the store"),
    guardrails: GuardrailsOption = None,
) -> None:
    """Continue a prompt with a text model, streamed token by token; optionally constrained or verified.
    A text-to-text model (t5) maps each input to an output instead: one JSON line per input.

    Fine-tuned adapters: `genzoo generate ADAPTER_DIR "..."` or `genzoo generate BASE --adapter NAME "..."`
    (`genzoo adapters BASE` lists the names)."""
    from genzoo.models.base import SEQ2SEQ
    from genzoo.runs.load import load
    from genzoo.tasks import textgen

    if greedy:
        temperature = 0.0
    policy = load_guardrails(guardrails)  # a bad policy fails before the model loads
    if sum(x is not None for x in (regex, json_schema, grammar)) > 1:
        raise GenzooError("give at most one of --regex, --json-schema, --grammar")
    if adapter is not None:  # the adapter is the model from here on (what the store records); RUN is its base
        from genzoo.runs.adapters import find_adapter

        base, run = run, find_adapter(run, adapter)
        model = load(run, device, base=base)
    else:
        model = load(run, device)
    if SEQ2SEQ in model.capabilities:
        unsupported = [flag for flag, given in (("--top-p", top_p != 1.0), ("--min-p", min_p > 0), ("--stop", stop),
                                               ("--repetition-penalty", repetition_penalty != 1.0), ("--verify", verify),
                                               ("--regex/--json-schema/--grammar", regex or json_schema or grammar)) if given]
        if unsupported:
            raise GenzooError(f"{model.family} maps inputs to outputs with --max-tokens, --temperature, --top-k and --seed; "
                              f"it does not take {', '.join(unsupported)}")
        return map_texts(model, list(prompt or []), max_tokens=max_tokens, temperature=temperature, top_k=top_k or None, seed=seed,
                         policy=policy)
    model, tokenizer = textgen.as_text_model(model, run)
    options = dict(max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                   repetition_penalty=repetition_penalty, stop=stop, regex=regex,
                   json_schema=read_text_file(json_schema, "JSON schema"), grammar=read_text_file(grammar, "grammar"))
    prompts = list(prompt or [""])
    schema = _schema(options["json_schema"]) if policy is not None else None
    if verify:
        if len(prompts) != 1:
            raise GenzooError("--verify takes one prompt")
        result = textgen.generate_checked(model, tokenizer, prompts[0], verify, attempts, seed=seed, **options)
        new = result.text[len(prompts[0]):]  # the checked text holds the prompt
        verdicts = _guard(policy, prompts, [new], schema)
        if verdicts is None:
            say(result.text)
        elif not verdicts[0].withheld or verdicts[0].text:
            say(prompts[0] + verdicts[0].text)
        if not no_store:  # the attempt that passed used seed + attempts - 1
            _record_texts(store, run, model, [prompts[0]], [new], seed + result.attempts - 1, options, policy, verdicts)
        note(f"verifier {verify}: {'passed' if result.ok else 'FAILED'} after {result.attempts} attempt(s) of {attempts}")
        if not result.ok:
            raise typer.Exit(1)
        return
    # with guardrails nothing streams: a text is shown only once its verdict lets it through
    streamed = _TokenStream(tokenizer, prompts[0]) if len(prompts) == 1 and policy is None else None
    results = textgen.generate_text(model, tokenizer, prompts, seed=seed, on_token=streamed, **options)
    verdicts = _guard(policy, prompts, [r.text for r in results], schema)
    if streamed:
        streamed.finish(results[0].text)
    else:
        for i, (p, r) in enumerate(zip(prompts, results)):
            if verdicts is None:
                say(p + r.text)
            elif not verdicts[i].withheld or verdicts[i].text:  # a withheld text is not printed (its placeholder is)
                say(p + verdicts[i].text)
    if not no_store:  # after the text is out: the note goes to stderr on a line of its own
        _record_texts(store, run, model, prompts, [r.text for r in results], seed, options, policy, verdicts)
    note(f"[{', '.join(f'{len(r.ids)} tokens, {r.stop_reason}' for r in results)}]")


def map_texts(model, texts: list[str], *, max_tokens: int, temperature: float, top_k: int | None, seed: int, policy=None) -> None:
    """A text-to-text model's output for each input (greedy at temperature 0, KV-cached): one JSON line each
    (with a policy: the output its verdict lets through, and the verdict)."""
    import torch

    if not texts:
        raise GenzooError(f"give the input text(s) for the {model.family} model, e.g. genzoo generate RUN \"Close the file.\"")
    outputs = model.generate_text(texts, max_new_tokens=max_tokens, temperature=temperature, top_k=top_k,
                                  generator=torch.Generator().manual_seed(seed))
    verdicts = _guard(policy, texts, outputs, None, notes=False)
    for i, (text, output) in enumerate(zip(texts, outputs)):
        line = {"input": text, "output": output}
        if verdicts is not None:
            line.update(output=verdicts[i].text, guardrails=verdicts[i].action)
        say(json.dumps(line))


def _schema(text: str | None) -> dict | None:
    """--json-schema as the guardrails' structure check reads it (the decoder already constrains to it; this verifies)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise GenzooError(f"--json-schema is not valid JSON: {e.msg} (line {e.lineno})") from e


def _guard(policy, prompts, texts, schema, notes: bool = True):
    """Each text's verdict under ``policy`` (None without one), each printed as one line on stderr."""
    if policy is None:
        return None
    verdicts = [policy.check_text(t, prompt=p, schema=schema) for p, t in zip(prompts, texts)]
    for v in verdicts if notes else ():
        note(v.summary())
    return verdicts


def _record_texts(store, run, model, prompts, texts, seed, options, policy=None, verdicts=None) -> None:
    """Record each prompt's continuation; a batch of prompts replays as one prompt each (same seed).
    With guardrails the record holds what the verdict lets through and the manifest the verdict
    (its outputs sha256 stays the generated text's, so `genzoo reproduce` still checks the replay)."""
    from genzoo.tasks import record as recording

    def one(s, i, p, t):
        manifest = recording.text_manifest(run, model, p, t, seed, options)
        if verdicts is None:
            return recording.record_text(s, manifest, t, model)
        manifest["guardrails"] = policy.manifest_entry(verdicts[i])
        return recording.record_text(s, manifest, verdicts[i].text, model)

    def write(s):
        return [one(s, i, p, t) for i, (p, t) in enumerate(zip(prompts, texts))]

    ids, url = recording.record_with(store, write)
    note(f"recorded as generation(s) {', '.join(map(str, ids))} in {url}")


class _TokenStream:
    """Prints a generation as it grows: decodes the tokens so far and writes what is new (a byte-level
    token can end inside a character, so decoding token by token would garble it)."""

    def __init__(self, tokenizer, prompt: str):
        from genzoo.tasks.textgen import visible_text

        self.decode, self.prompt, self.ids, self.shown = visible_text(tokenizer), prompt, [], ""

    def __call__(self, row: int, token: int) -> None:
        if not self.ids:
            print(self.prompt, end="", flush=True)  # only once generation has started (bad options fail first)
        self.ids.append(token)
        text = self.decode(self.ids)
        if not text.endswith("\ufffd") and text.startswith(self.shown):
            print(text[len(self.shown):], end="", flush=True)
            self.shown = text

    def finish(self, final: str) -> None:
        if not self.ids:
            print(self.prompt, end="")
        if final.startswith(self.shown):  # the tail (a stop string is cut from the final text)
            print(final[len(self.shown):], end="")
        print(flush=True)


@app.command()
def finetune(
    base: Path = typer.Argument(..., help="a text model's run/checkpoint folder, or a local Hugging Face Llama/Mistral/Qwen2 folder "
                                          "(recorded by path and sha256 in the adapter: OUT then loads as a model)"),
    data: str = typer.Option(..., "--data", "-d", help="text to fine-tune on: a .txt/.md/.jsonl file or a folder of .txt/.md files"),
    lora_rank: int = typer.Option(8, "--lora-rank", help="rank of each adapter"),
    lora_alpha: float = typer.Option(16.0, "--lora-alpha", help="adapter scale alpha (the update is alpha/rank * B A)"),
    lora_dropout: float = typer.Option(0.0, "--lora-dropout", help="dropout on the adapters' input"),
    targets: str = typer.Option("attention,mlp", help="layers to adapt: attention, mlp, or layers such as attn.qkv (comma-separated)"),
    steps: Optional[int] = typer.Option(None, help="optimizer steps"),
    minutes: Optional[float] = typer.Option(None, help="wall-clock training budget"),
    lr: float = typer.Option(1e-3, help="peak learning rate of the adapters"),
    batch_size: int = typer.Option(16, "--batch-size", help="windows per step"),
    window: Optional[int] = typer.Option(None, help="tokens per training window (default: the model's context, at most 256)"),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="adapter folder (default runs/finetune-BASE)"),
    merge: bool = typer.Option(False, "--merge", help="also write the merged full model to OUT/merged (for genzoo generate)"),
    seed: int = typer.Option(0, help="random seed"),
    device: str = typer.Option("auto", help="auto, cpu, cuda"),
) -> None:
    """Fine-tune a text model on your text with LoRA adapters; writes only the adapter (base untouched).
    OUT is a model folder: `genzoo generate OUT "..."` loads the base and applies the adapter;
    `genzoo adapters BASE` lists the adapters over a base."""
    from genzoo.tasks.finetune import finetune as run_finetune

    if steps is None and minutes is None:
        raise GenzooError("give a budget: --steps N or --minutes M")
    result = run_finetune(base, data, rank=lora_rank, alpha=lora_alpha, dropout=lora_dropout, targets=targets,
                          steps=steps, minutes=minutes, lr=lr, batch_size=batch_size, out=out_dir, merge=merge,
                          seed=seed, device=device, window=window)

    share = result.trainable_parameters / max(1, result.total_parameters)
    say(f"fine-tuned {result.steps} steps in {result.seconds:.1f} s; trainable {result.trainable_parameters:,} of "
        f"{result.total_parameters:,} parameters ({100 * share:.2f}%)")
    say(f"validation loss (nats/token): {result.val_loss_before:.4f} before -> {result.val_loss_after:.4f} after")
    say(f"adapter: {result.out}/adapter_model.safetensors (+ adapter_config.json); try `genzoo generate {result.out} \"...\"`")
    if result.merged:
        say(f"merged model: {result.merged} (try `genzoo generate {result.merged} \"...\"`)")


@app.command()
def fill(
    run: Path = typer.Argument(..., help="a bert run or checkpoint, or a local Hugging Face BERT folder with its masked-LM head"),
    texts: List[str] = typer.Argument(..., help='texts with [MASK] where tokens are missing, e.g. "the [MASK] statement"'),
    top_k: int = typer.Option(5, "--top-k", help="candidates shown per [MASK]"),
    as_json: bool = typer.Option(False, "--json", help="print the results as JSON"),
) -> None:
    """Fill each [MASK] with a BERT's most likely token (and show the top candidates)."""
    from genzoo.cli.bert import run_fill

    results = run_fill(run, texts, top_k=top_k)
    if as_json:
        out.print_json(json.dumps(results))
        return
    for r in results:
        say(r["text"])
        for i, cands in enumerate(r["masks"]):
            say(f"  [MASK] {i + 1}: " + ", ".join(f"{t!r} {p:.3f}" for t, p in cands))


@app.command()
def embed(
    run: Path = typer.Argument(..., help="a sentence-transformers / Hugging Face BERT folder, or a bert run"),
    texts: Optional[List[str]] = typer.Argument(None, help="texts to embed"),
    file: Optional[Path] = typer.Option(None, "--file", "-f", help="a text file: one text per line"),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="write the (n, dim) float32 vectors to this .npy"),
    normalize: Optional[bool] = typer.Option(None, "--normalize/--no-normalize", help="L2-normalise (default: as the folder says; runs: yes)"),
) -> None:
    """Mean-pooled sentence embeddings from genzoo's own BERT (all-MiniLM-L6-v2 matches sentence-transformers)."""
    from genzoo.cli.bert import run_embed

    items = list(texts or [])
    if file is not None:
        items += [line for line in read_text_file(file, "--file").splitlines() if line.strip()]
    vectors = run_embed(run, items, out=out_path, normalize=normalize)
    if out_path is not None:
        say(f"{vectors.shape[0]} vectors of {vectors.shape[1]} dims -> {out_path}")
    else:
        for text, v in zip(items, vectors):
            out.print(json.dumps({"text": text, "vector": [round(float(x), 6) for x in v]}))
