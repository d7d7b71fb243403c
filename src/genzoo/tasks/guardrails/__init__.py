"""Guardrails on every output (issue 27): one policy file, applied the same way by ``genzoo generate``,
``genzoo sample``, ``genzoo rag ask`` and the server.

>>> from genzoo.tasks.guardrails import load_policy
>>> load_policy(None).check_text("write to ana@example.com").text
'write to <EMAIL>'

Rules (each a module): ``pii`` (the store's Presidio engine), ``terms`` (blocked words and patterns),
``structure`` (length, JSON schema, Python that parses), ``grounding`` (RAG answers vs their sources,
and ``no_source``), ``harm`` (offline offensive-language model), ``copyguard`` (samples nearer the
training set than held-out data). ``record`` puts a verdict into a generation's manifest.
"""

from genzoo.tasks.guardrails.policy import Policy, load_policy
from genzoo.tasks.guardrails.verdict import Verdict, summarize

__all__ = ["Policy", "Verdict", "load_policy", "summarize"]
