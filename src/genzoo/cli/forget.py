"""``genzoo forget``: remove a user's records, or those older than some days, from the store
(admins only; the API key comes from $GENZOO_API_KEY as for every store command). Without ``--yes``
it only prints what would be removed and exits 1. See ``genzoo.store.forget`` for what is removed
and what stays out of reach."""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer

from genzoo.cli.app import GenzooTyper, StoreOption, say
from genzoo.core.errors import GenzooError

app = GenzooTyper()


@app.command()
def forget(
    user: Annotated[Optional[str], typer.Option("--user", help="forget this user's records")] = None,
    older_than: Annotated[Optional[float], typer.Option("--older-than", help="forget records created more than DAYS days ago",
                                                        metavar="DAYS")] = None,
    store: StoreOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="really remove them (without it: only say what would go)")] = False,
) -> None:
    """Remove a user's records (generations, prompts, feedback, documents, chunks, vectors, graph
    edges) and scrub them from the database files; admins only."""
    from genzoo.cli.store_data import open_store

    if user is None and older_than is None:
        raise GenzooError("say what to forget: --user NAME, --older-than DAYS, or both")
    if older_than is not None and not (older_than >= 0):
        raise GenzooError(f"--older-than is a number of days, 0 or more, got {older_than}")
    cutoff = None if older_than is None else time.time() - older_than * 86400.0
    with open_store(store) as s:
        report = s.forget(user=user, older_than=cutoff, dry_run=not yes)
    say(report.summary())
    for n in report.notes:
        say(f"note: {n}")
    if not yes:
        say("nothing was removed: run again with --yes to remove these records")
        raise typer.Exit(1)
