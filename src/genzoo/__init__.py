"""genzoo: every major family of generative model under one API.

Data flows one way: data -> model -> trainer -> checkpoint -> sampler -> eval.
"""

__version__ = "0.1.0"

from genzoo.core.errors import GenzooError  # noqa: F401
