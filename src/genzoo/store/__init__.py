"""The generation store: records with provenance, search, dedup and security.

No torch import anywhere in this package: it takes outputs and manifests, and
embeddings from an injected encoder.
"""
