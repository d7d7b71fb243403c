"""The ``genzoo`` command: one typer app, one module per command group (see ``main``)."""

from genzoo.cli.main import app  # noqa: F401
