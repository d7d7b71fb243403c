"""A verdict: what the guardrails let through of one output, and which rules fired.

Actions rank withheld > flagged > redacted > passed: the verdict takes the strongest action of its
rules, so a redacted text that a rule also flags is shown redacted and marked flagged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ACTIONS = ("passed", "redacted", "flagged", "withheld")
RANK = {a: i for i, a in enumerate(ACTIONS)}
RULE_ACTIONS = ("flag", "withhold")  # what a policy may ask of a text or copy rule; pii may also "redact"
PAST = {"flag": "flagged", "withhold": "withheld", "redact": "redacted"}


@dataclass
class Verdict:
    action: str = "passed"
    text: str = ""
    rules: list[dict] = field(default_factory=list)  # {"rule", "action", "detail"}, one per rule that fired

    def add(self, rule: str, action: str, detail) -> None:
        """Record that ``rule`` fired with ``action`` (flag, withhold, redact or its past tense)."""
        action = PAST.get(action, action)
        self.rules.append({"rule": rule, "action": action, "detail": detail})
        if RANK[action] > RANK[self.action]:
            self.action = action

    @property
    def withheld(self) -> bool:
        return self.action == "withheld"

    def to_dict(self) -> dict:
        return {"action": self.action, "text": self.text, "rules": [dict(r) for r in self.rules]}

    def summary(self) -> str:
        """One line for a CLI, e.g. ``guardrails: redacted (pii: 1 email)``."""
        if not self.rules:
            return f"guardrails: {self.action}"
        fired = "; ".join(f"{r['rule']}: {_short(r['detail'])}" for r in self.rules)
        return f"guardrails: {self.action} ({fired})"


def _short(detail) -> str:
    if isinstance(detail, dict):  # counts read "1 email", other values "threshold 0.5"
        return ", ".join(f"{v} {k}" if isinstance(v, int) else f"{k} {v}" for k, v in detail.items())
    return str(detail)


def summarize(verdicts: list[Verdict]) -> str:
    """One line for many samples: how many of each action, e.g. ``guardrails: 2 withheld, 62 passed (copy)``."""
    counts = {a: sum(v.action == a for v in verdicts) for a in reversed(ACTIONS)}
    rules = sorted({r["rule"] for v in verdicts for r in v.rules})
    tail = f" ({', '.join(rules)})" if rules else ""
    return "guardrails: " + ", ".join(f"{n} {a}" for a, n in counts.items() if n) + tail
