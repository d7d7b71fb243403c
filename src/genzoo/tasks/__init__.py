"""Verbs that join models and the store: generate-and-record, RAG answers, image search, encoders.

The only layer that both loads models and writes into ``genzoo.store``; the store itself never
imports it (an encoder or a manifest reaches the store as a plain object).
"""

# Importing any task registers the store's default text encoder (all-MiniLM-L6-v2, loaded on first use).
from genzoo.tasks import encoders as _encoders  # noqa: F401
