"""Blocked terms and patterns: whole words only, any case.

A term matches at word boundaries (``\\b``), so "ass" blocks "ass" but not "class" or "pass"; a
policy pattern is a regular expression searched case-insensitively as written (add ``\\b`` yourself).
"""

from __future__ import annotations

import re

from genzoo.core.errors import GenzooError


class Terms:
    def __init__(self, terms=(), patterns=()):
        self.terms = [str(t) for t in terms]
        compiled = [r"(?<!\w)" + re.escape(t) + r"(?!\w)" for t in self.terms]  # \b fails where a term ends in a symbol ("c++")
        try:
            self.patterns = [re.compile(p, re.IGNORECASE) for p in [*compiled, *map(str, patterns)]]
        except re.error as e:
            raise GenzooError(f"guardrails: a [terms] pattern is not a valid regular expression: {e}") from e
        self.sources = [*self.terms, *map(str, patterns)]

    def find(self, text: str) -> list[str]:
        """The terms and patterns (as written in the policy) that occur in ``text``."""
        return [source for source, p in zip(self.sources, self.patterns) if p.search(text)]
