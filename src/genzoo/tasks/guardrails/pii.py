"""The PII rule: outputs go through the store's own engine (``genzoo.store.pii``: Presidio, spaCy NER,
detect-secrets), so what a user is shown is redacted exactly as what the store keeps."""

from __future__ import annotations

from collections import Counter


def pii_rule(text: str) -> tuple[dict, str]:
    """(counts of each kind found, e.g. {"email": 1}; the text with typed placeholders)."""
    from genzoo.store.pii import redact

    r = redact(text)
    return dict(Counter(f.kind for f in r.findings)), r.text
