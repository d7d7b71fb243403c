"""genzoo: every major family of generative model under one API.

>>> from genzoo import api
>>> model, summary = api.train("diffusion", "digits", steps=2000, out="runs/ddpm")
>>> model = api.load("runs/ddpm")            # any run, checkpoint or local Hugging Face folder

Data flows one way: data -> model -> trainer -> run folder -> sampler -> tasks -> store.
The package root is the ground floor (tests/test_contract.py): it imports nothing above core.
"""

__version__ = "0.2.0"

from genzoo.core.errors import GenzooError  # noqa: F401
