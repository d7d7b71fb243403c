"""What every command module shares: the typer app class with the one error handler, the two
consoles, and the options that several commands take (declared once, with ``Annotated``).

Errors and paths are never hard-wrapped: both consoles soft-wrap, so a long path in a message stays
one line that a user can copy (and a test can match) at any terminal width. Usage errors come from
click in plain text for the same reason (``rich_markup_mode=None``: rich would draw them in a box
cut to the terminal's width).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from genzoo.core.errors import GenzooError

console = Console(stderr=True, soft_wrap=True)  # notes and errors
out = Console(soft_wrap=True)  # results
if not out.is_terminal:
    # a pipe, a file or a test: nothing squeezes tables to $COLUMNS there, so every cell stays whole
    # (a person at a narrow terminal gets rich's fitted table instead)
    out.width = max(out.width, 160)


def fail(e: Exception) -> None:
    """One red line on stderr and exit status 2: what every command does with a GenzooError."""
    console.print(f"error: {e}", style="bold red", markup=False, highlight=False)  # messages may quote [brackets]
    raise typer.Exit(2)


def say(text: str) -> None:
    """Print a result line as it is: no markup, no highlighting, never wrapped."""
    out.print(text, markup=False, highlight=False)


def note(text: str) -> None:
    """A note on stderr (progress, old spellings), printed as it is."""
    console.print(text, markup=False, highlight=False)


class GenzooTyper(typer.Typer):
    """A Typer whose commands turn a ``GenzooError`` into ``fail`` (the one error handler), so no
    command repeats ``try/except GenzooError``."""

    def __init__(self, **kwargs):
        kwargs.setdefault("add_completion", False)
        kwargs.setdefault("no_args_is_help", True)
        kwargs.setdefault("rich_markup_mode", None)
        kwargs.setdefault("pretty_exceptions_enable", False)
        super().__init__(**kwargs)

    def command(self, *args, **kwargs):
        register = super().command(*args, **kwargs)

        def decorate(f):
            @functools.wraps(f)  # typer reads the signature (and its annotations) through __wrapped__
            def run(*a, **kw):
                try:
                    return f(*a, **kw)
                except GenzooError as e:
                    fail(e)

            register(run)
            return f

        return decorate


def renamed(old: str, new: str) -> None:
    """The note an old spelling prints before it runs the new one (scripts keep working)."""
    note(f"note: `genzoo {old}` is now `genzoo {new}`; the old spelling still works")


# ---- options several commands share ------------------------------------------------------------
STORE_HELP = "the store: a file path or a postgresql:// URL (default: $GENZOO_STORE or ~/.genzoo/store.db)"
StoreOption = Annotated[Optional[str], typer.Option("--store", help=STORE_HELP)]
RunArgument = Annotated[Path, typer.Argument(help="run or checkpoint folder")]
DataOption = Annotated[str, typer.Option("--data", "-d", help="dataset name or path (see `genzoo list`)")]
JsonFlag = Annotated[bool, typer.Option("--json", help="print the result as JSON")]
GuardrailsOption = Annotated[Optional[Path], typer.Option("--guardrails", help="check every output against this policy file "
                             "(TOML, e.g. examples/guardrails.toml): PII, blocked terms, structure, grounding, harm, copies; "
                             "the verdict is printed and recorded in the manifest")]


def load_guardrails(path: Path | None):
    """The policy of --guardrails, or None when it is not given (no guardrails load, nothing changes)."""
    if path is None:
        return None
    from genzoo.tasks.guardrails import load_policy

    return load_policy(path)


def read_text_file(path: Path | None, what: str) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text()
    except OSError as e:
        raise GenzooError(f"cannot read the {what} file {path}: {e}") from e
