"""genzoo: every major family of generative model under one API.

>>> import genzoo
>>> from genzoo import api
>>> model, summary = api.train("diffusion", "digits", steps=2000, out="runs/ddpm")
>>> model = genzoo.load("runs/ddpm")            # any run, checkpoint or local Hugging Face folder

Data flows one way: data -> model -> trainer -> run folder -> sampler -> tasks -> store.
``load`` imports torch on first use (PEP 562), so ``import genzoo`` stays light. (``train`` stays
``api.train``: ``genzoo.train`` is the Trainer's package.)
"""

__version__ = "0.1.0"

from genzoo.core.errors import GenzooError  # noqa: F401


def __getattr__(name: str):
    if name == "load":
        from genzoo.runs.load import load

        return load
    raise AttributeError(f"module 'genzoo' has no attribute {name!r}")
