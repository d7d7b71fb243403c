"""A guardrail policy: which rules run on an output and what each does when it fires.

``load_policy(None)`` is the default: PII redaction, nothing else. A TOML file turns rules on by
section (a section present is on unless ``enabled = false``; ``[pii]`` is on unless turned off),
e.g. examples/guardrails.toml. Unknown sections or keys are refused, so a typo never silently
turns a guardrail off.
"""

from __future__ import annotations

from pathlib import Path

from genzoo.core.errors import GenzooError
from genzoo.tasks.guardrails import grounding as G
from genzoo.tasks.guardrails.verdict import RULE_ACTIONS, Verdict

# section -> {key: default}; "action" is what the rule does when it fires
SECTIONS = {
    "pii": {"enabled": True, "action": "redact"},
    "terms": {"enabled": True, "blocked": [], "patterns": [], "action": "withhold"},
    "length": {"enabled": True, "min_chars": None, "max_chars": None, "action": "flag"},
    "structure": {"enabled": True, "json_schema": None, "python": False, "action": "flag"},
    "grounding": {"enabled": True, "method": "lexical", "threshold": None, "relevance": G.RELEVANCE_THRESHOLD, "action": "flag"},
    "harm": {"enabled": True, "threshold": None, "action": "withhold"},
    "copy": {"enabled": True, "percentile": 5.0, "data": None, "action": "withhold"},
}
TOP = {"withheld_text": ""}  # what a withheld output shows instead (no_source always shows G.NOT_FOUND)


def load_policy(path: str | Path | None) -> "Policy":
    """The policy in the TOML file at ``path``; None: the default (PII redaction only)."""
    if path is None:
        return Policy({})
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError as e:
            raise GenzooError("guardrails: reading a policy file on Python 3.10 needs tomli: pip install tomli") from e
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise GenzooError(f"guardrails: cannot read the policy file {path}: {e.strerror or e}") from e
    except tomllib.TOMLDecodeError as e:
        raise GenzooError(f"guardrails: {path} is not valid TOML: {e}") from e
    structure = data.get("structure")
    if isinstance(structure, dict) and isinstance(structure.get("json_schema"), str):  # a schema file, relative to the policy
        structure["json_schema"] = _read_schema(path.parent / structure["json_schema"])
    return Policy(data, source=str(path))


def _read_schema(path: Path) -> dict:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise GenzooError(f"guardrails: cannot read the JSON schema {path}: {e}") from e


class Policy:
    def __init__(self, data: dict, source: str | None = None):
        self.source = source
        unknown = set(data) - set(SECTIONS) - set(TOP)
        if unknown:
            raise GenzooError(f"guardrails: unknown section(s) {sorted(unknown)} in the policy; known: {', '.join(SECTIONS)}")
        self.withheld_text = str(data.get("withheld_text", TOP["withheld_text"]))
        self.rules = {}
        for name, defaults in SECTIONS.items():
            given = data.get(name, {} if name == "pii" else None)
            if given is None:
                continue
            if not isinstance(given, dict):
                raise GenzooError(f"guardrails: [{name}] must be a table of settings")
            bad = set(given) - set(defaults)
            if bad:
                raise GenzooError(f"guardrails: [{name}] has no setting(s) {sorted(bad)}; its settings: {', '.join(defaults)}")
            conf = {**defaults, **given}
            allowed = ("redact", *RULE_ACTIONS) if name == "pii" else RULE_ACTIONS
            if conf["action"] not in allowed:
                raise GenzooError(f"guardrails: [{name}] action must be {' or '.join(allowed)}, got {conf['action']!r}")
            if conf["enabled"]:
                self.rules[name] = conf
        self._prepare()

    def _prepare(self) -> None:
        from genzoo.tasks.guardrails.structure import check_schema_keywords
        from genzoo.tasks.guardrails.terms import Terms

        if "terms" in self.rules:
            self._terms = Terms(self.rules["terms"]["blocked"], self.rules["terms"]["patterns"])
        if self.rules.get("structure", {}).get("json_schema") is not None:
            check_schema_keywords(self.rules["structure"]["json_schema"])
        g = self.rules.get("grounding")
        if g is not None:
            if g["method"] not in ("lexical", "minilm"):
                raise GenzooError(f"guardrails: [grounding] method must be lexical or minilm, got {g['method']!r}")
            if g["threshold"] is None:
                g["threshold"] = G.LEXICAL_THRESHOLD if g["method"] == "lexical" else G.MINILM_THRESHOLD
        if "harm" in self.rules and self.rules["harm"]["threshold"] is None:
            from genzoo.tasks.guardrails.harm import DEFAULT_THRESHOLD

            self.rules["harm"]["threshold"] = DEFAULT_THRESHOLD

    def describe(self) -> dict:
        """The rules in force, as recorded beside each verdict."""
        return {"file": self.source, "rules": sorted(self.rules)}

    def manifest_entry(self, verdict: Verdict) -> dict:
        """What a generation's manifest keeps under "guardrails": the verdict (less its text, which the
        record holds) and the policy that gave it."""
        entry = verdict.to_dict()
        entry.pop("text")
        return {**entry, "policy": self.describe()}

    def samples_entry(self, verdicts: list[Verdict]) -> dict:
        """The manifest entry for a batch of samples: the strongest action, and each sample a rule caught."""
        from genzoo.tasks.guardrails.verdict import RANK

        worst = max((v.action for v in verdicts), key=RANK.__getitem__, default="passed")
        caught = [{"sample": i, "action": v.action, "rules": v.rules} for i, v in enumerate(verdicts) if v.rules]
        return {"action": worst, "samples": len(verdicts), "caught": caught, "policy": self.describe()}

    # ---- text --------------------------------------------------------------------------------

    def check_text(self, text: str, *, prompt: str | None = None, sources: list[str] | None = None,
                   schema: dict | None = None) -> Verdict:
        """The verdict on one text output. ``prompt``: the question (for no_source); ``sources``: the
        retrieved passages (grounding runs only when given); ``schema``: a JSON schema the output must
        meet, besides the policy's own."""
        if not isinstance(text, str):
            raise GenzooError(f"guardrails: check_text takes a str, got {type(text).__name__}")
        v = Verdict(text=text)
        g = self.rules.get("grounding")
        if g is not None and sources is not None:
            score = G.relevance(prompt, sources) if prompt else (1.0 if sources else 0.0)
            if not sources or score < g["relevance"]:
                v.add("no_source", "withhold", {"relevance": round(score, 3), "threshold": g["relevance"]})
                v.text = G.NOT_FOUND
                return v
        if "pii" in self.rules:
            from genzoo.tasks.guardrails.pii import pii_rule

            counts, redacted = pii_rule(text)
            if counts:
                v.add("pii", self.rules["pii"]["action"], counts)
                if self.rules["pii"]["action"] == "redact":
                    v.text = redacted
        for name, problem in self._text_problems(text, schema, sources):
            v.add(name, self.rules.get(name, {}).get("action", "flag"), problem)
        if v.withheld:
            v.text = self.withheld_text
        return v

    def _text_problems(self, text, schema, sources):
        from genzoo.tasks.guardrails import structure as S

        r = self.rules
        if "terms" in r:
            found = self._terms.find(text)
            if found:
                yield "terms", {"matched": ", ".join(found)}
        if "length" in r:
            problem = S.length_problem(text, r["length"]["min_chars"], r["length"]["max_chars"])
            if problem:
                yield "length", problem
        schemas = [s for s in (r.get("structure", {}).get("json_schema"), schema) if s is not None]
        for s in schemas:  # a call's schema applies even with no [structure] section: it flags
            problem = S.schema_problem(text, s)
            if problem:
                yield "structure", problem
                break
        if r.get("structure", {}).get("python"):
            problem = S.python_problem(text)
            if problem:
                yield "structure", problem
        if "harm" in r:
            from genzoo.tasks.guardrails.harm import harm_problem

            problem = harm_problem(text, r["harm"]["threshold"])
            if problem:
                yield "harm", problem
        if "grounding" in r and sources is not None:
            judged = G.support(text, sources, r["grounding"]["method"])
            weak = [x for _, x in judged if x < r["grounding"]["threshold"]]
            if weak:  # counts and scores only: a sentence may hold PII the record must not keep
                yield "grounding", {"unsupported": len(weak), "of": len(judged), "lowest support": round(min(weak), 3)}

    # ---- samples -----------------------------------------------------------------------------

    def check_samples(self, x, *, train=None, holdout=None, data: str | None = None) -> list[Verdict]:
        """One verdict per sample of ``x`` (images or arrays, first axis = samples): the copy guard.
        The memory is ``train`` with ``holdout`` as fresh real data, else the train/test splits of
        ``data`` (or of the policy's ``[copy] data``)."""
        n = len(x)
        c = self.rules.get("copy")
        if c is None:
            return [Verdict() for _ in range(n)]
        from genzoo.tasks.guardrails.copyguard import CopyReference, reference_for

        if (train is None) != (holdout is None):
            raise GenzooError("guardrails: the copy guard needs both train and holdout (or neither, with a dataset name)")
        if train is not None:
            ref = CopyReference(train, holdout, c["percentile"])
        elif data or c["data"]:
            ref = reference_for(data or c["data"], c["percentile"])
        else:
            raise GenzooError("guardrails: the copy guard needs the training data: pass train and holdout, or set [copy] data = NAME")
        out = []
        for d in ref.distances(x):
            v = Verdict()
            if ref.caught(d):
                v.add("copy", c["action"], {"nn_distance": round(d, 3), "threshold": round(ref.threshold, 3)})
            out.append(v)
        return out
