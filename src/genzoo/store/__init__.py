"""The generation store: records with provenance, search, dedup and security.

The ground floor: it imports only ``genzoo.core`` and itself, never torch or a model, not even
inside a function (tests/test_contract.py checks). It takes outputs and manifests as plain data,
and vectors from an injected encoder (``genzoo.store.encoders``); ``genzoo.tasks`` supplies the
models.
"""
