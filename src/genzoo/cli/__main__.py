"""``python -m genzoo.cli``: the `genzoo` command."""

from genzoo.cli.main import main

main()
