"""Guardrails on what the server sends back: ``genzoo.tasks.guardrails`` when ``--guardrails POLICY`` is given.
Without one nothing is checked (as ``genzoo generate`` without ``--guardrails``)."""

from __future__ import annotations

from genzoo.core.errors import GenzooError


def load_guard(path):
    """The policy for ``path``, or None when none was asked for."""
    if path is None:
        return None
    try:
        from genzoo.tasks.guardrails import load_policy
    except ImportError:  # HOOK: guardrails land in genzoo.tasks.guardrails (another issue); refuse rather than serve unchecked
        raise GenzooError("--guardrails needs genzoo.tasks.guardrails, which this install lacks") from None
    return load_policy(path)


def apply(policy, text: str, prompt: str) -> tuple[str, str | None, dict | None]:
    """(text to send, finish_reason override or None, the verdict as a dict or None)."""
    if policy is None:
        return text, None, None
    verdict = policy.check_text(text, prompt=prompt)
    override = "content_filter" if verdict.action in ("withheld", "redacted") else None
    return verdict.text, override, verdict.to_dict()
