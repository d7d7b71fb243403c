"""The `genzoo` command, assembled from one module per command group.

- ``training``: list, train, sample, reproduce, eval, info, complete, translate, interpolate, bench
- ``text``: generate (continue text, or map it with a text-to-text model), finetune, fill, embed
- ``verbs``: classify, score (named by the capability, for any family that has it)
- ``store``: `genzoo store search|graph|stats|export|dedup|user|key|policy|check`, `genzoo rag index|ask`, `genzoo dedup DATA`
- ``forget``: `genzoo forget --user U / --older-than DAYS` (admin)
- ``choose``: `genzoo choose --data D --goal G --minutes M` (recommend a family from a successive-halving run)
- ``serve``: `genzoo serve RUN...` (the HTTP API and web app; ``genzoo.serve``)
- ``t5``, ``vit``, ``clip``: the old per-model spellings (each prints the new one), and `vit eval` / `clip eval`

Every command turns a ``GenzooError`` into one line on stderr and exit status 2 (``app.GenzooTyper``).
"""

from __future__ import annotations

from genzoo.cli import choose, forget, serve, store, text, training, verbs
from genzoo.cli.app import GenzooTyper, console
from genzoo.cli.clip import clip_app
from genzoo.cli.t5 import t5_app
from genzoo.cli.vit import vit_app
from genzoo.core.errors import GenzooError

app = GenzooTyper(help="Train, sample and compare generative models.")
for group in (training.app, text.app, verbs.app, store.app, forget.app, serve.app, choose.app):
    app.add_typer(group)  # no name: their commands are top-level verbs
app.add_typer(store.store_app, name="store")
app.add_typer(store.rag_app, name="rag")
app.add_typer(t5_app, name="t5")
app.add_typer(clip_app, name="clip")
app.add_typer(vit_app, name="vit")


def main() -> None:  # pragma: no cover
    """The console script: ``app`` with a last guard for an error raised outside any command."""
    import sys

    try:
        app()
    except GenzooError as e:
        console.print(f"error: {e}", style="bold red", markup=False, highlight=False)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
