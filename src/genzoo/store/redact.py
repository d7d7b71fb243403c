"""PII redaction before storage: emails, phone numbers, payment cards, IP addresses and (conservatively) names.

>>> from genzoo.store.redact import redact
>>> r = redact("Mail jane.doe@example.org or call (212) 555-0123.")
>>> r.text
'Mail <EMAIL> or call <PHONE>.'
>>> [(f.kind, f.start, f.end) for f in r.findings]
[('email', 5, 25), ('phone', 34, 48)]

What each detector accepts, and why (the store keeps prompts and code, so a
false positive garbles someone's text; every rule below errs towards keeping
text that is not clearly PII):

- email: ``local@domain.tld`` with an alphabetic top-level domain of 2+
  letters (``@property`` and ``user@localhost`` are left alone).
- phone: Google's libphonenumber (``phonenumbers``) finds candidates; one is
  kept when libphonenumber calls it a *valid* number for its region (default
  US, so ``(212) 555-0123``, ``415.555.2671``, ``1-800-555-0199``; any
  ``+CC ...`` international number). A ``+``-prefixed number that is only
  *possible* (e.g. the fictional ``+1 (555) ...`` range) is kept too: the
  ``+`` says it is a phone number; so is, for region US or CA, a possible
  number written in a North American grouping (``(400) 389-2029``,
  ``553.924.4230``) even where its area code is unassigned. A candidate glued
  to a longer token (``aix-6107-1415-32``, ``'+35236450.6'``) is skipped. A bare run of digits with no separators
  (``4155552671``) is kept only after a cue word (phone, tel, call, mobile,
  cell, fax, sms, whatsapp, contact) within 24 characters, since counters,
  ids and timestamps in code look the same.
- card: 13-19 digits, optionally grouped by single spaces or dashes, that
  pass the Luhn checksum *and* start with a card network's issuer prefix at
  a length that network issues (Visa, Mastercard, Amex, Discover, JCB, Diners,
  UnionPay). Luhn alone lets 1 in 10 random digit runs through; the prefix
  table removes most of the rest (``1234567812345670`` passes Luhn but is no
  card).
- ip: IPv4 dotted quads that ``ipaddress`` accepts (no leading zeros), not
  part of a longer dotted run (OIDs, 5-part versions) and not right after
  ``version``/``ver``/``release``/``v``; IPv6 that ``ipaddress`` accepts with
  at least three non-empty groups, so Python slices (``a[1::2]``), C++ scopes
  and the loopback ``::1`` are left alone.
- name: no maintained detector works offline here. ``presidio-analyzer``
  2.2.366 installs, but ``AnalyzerEngine()`` (and even a ``blank:en``
  configuration) tries to download a spaCy model and fails with a
  ConnectionError; forcing a blank spaCy pipeline in by hand, it finds the
  email, card, IP and phone of a test sentence but no PERSON, since names come
  only from the NER model (which PyPI does not carry officially). So
  names are redacted only where the text *says* a name follows: after an
  honorific (``Mr``, ``Mrs``, ``Ms``, ``Dr``, ``Prof`` ...), after "my name is"
  / "I am called", or after a ``Name:`` field label; the name is 1-3
  capitalised words. A name mentioned without such a cue is not found: this
  detector trades recall for never touching ordinary capitalised words.

Findings carry the kind and the span in the *original* text, never the value:
a list of found secrets must not itself become a copy of them.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from genzoo.core.errors import GenzooError

KINDS = ("email", "card", "ip", "phone", "name")  # also the order of precedence when two findings overlap
PLACEHOLDERS = {"email": "<EMAIL>", "card": "<CARD>", "ip": "<IP>", "phone": "<PHONE>", "name": "<NAME>"}


@dataclass(frozen=True)
class Finding:
    """One piece of PII: its kind and where it sat in the original text (``text[start:end]``)."""

    kind: str
    start: int
    end: int


@dataclass(frozen=True)
class Redaction:
    """The redacted text and what was replaced in it (spans refer to the original text)."""

    text: str
    findings: list[Finding]

    @property
    def kinds(self) -> set[str]:
        return {f.kind for f in self.findings}


def redact(text: str, *, kinds=KINDS, phone_region: str = "US") -> Redaction:
    """Replace every piece of PII of the given ``kinds`` in ``text`` by its typed placeholder (``<EMAIL>`` ...)."""
    return apply_placeholders(text, find_pii(text, kinds=kinds, phone_region=phone_region), PLACEHOLDERS)


def apply_placeholders(text: str, findings: list[Finding], placeholders: dict[str, str]) -> Redaction:
    """``text`` with each (sorted, non-overlapping) finding replaced by its kind's placeholder."""
    parts, last = [], 0
    for f in findings:
        parts.append(text[last:f.start])
        parts.append(placeholders[f.kind])
        last = f.end
    parts.append(text[last:])
    return Redaction("".join(parts), findings)


def find_pii(text: str, *, kinds=KINDS, phone_region: str = "US") -> list[Finding]:
    """Non-overlapping findings sorted by position; where two overlap, the earlier kind in ``KINDS`` wins."""
    if not isinstance(text, str):
        raise GenzooError(f"redaction takes a str, got {type(text).__name__}; decode bytes to text first")
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise GenzooError(f"unknown PII kind(s) {sorted(unknown)}; choose from {', '.join(KINDS)}")
    detectors = {"email": _emails, "card": _cards, "ip": ip_spans, "phone": lambda t: _phones(t, phone_region),
                 "name": _names}
    taken: list[Finding] = []
    for kind in KINDS:  # precedence order: an email's digits are never a phone, a card is never a phone
        if kind not in kinds:
            continue
        for start, end in sorted(detectors[kind](text), key=lambda s: (s[0], s[0] - s[1])):  # longest first
            if all(end <= f.start or start >= f.end for f in taken):
                taken.append(Finding(kind, start, end))
    return sorted(taken, key=lambda f: f.start)


# --- email ----------------------------------------------------------------------------------------------------

_EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9_%+-][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+"
                    r"[A-Za-z]{2,}(?![\w-])")


def _emails(text: str):
    return [m.span() for m in _EMAIL.finditer(text)]


# --- payment cards ---------------------------------------------------------------------------------------------

_CARD = re.compile(r"(?<![\w.-])\d(?:[ -]?\d){12,18}(?![\w-]|\.\d)")
# (issuer prefixes, lengths) per network, from the networks' published IIN ranges
_NETWORKS = (
    (("4",), (13, 16, 19)),                                                      # Visa
    (tuple(str(p) for p in range(51, 56)) + tuple(str(p) for p in range(2221, 2721)), (16,)),  # Mastercard
    (("34", "37"), (15,)),                                                       # American Express
    (("6011", "65") + tuple(str(p) for p in range(644, 650)), (16, 17, 18, 19)),  # Discover
    (tuple(str(p) for p in range(3528, 3590)), (16, 17, 18, 19)),                # JCB
    (("36", "38", "39") + tuple(str(p) for p in range(300, 306)), (14, 15, 16, 17, 18, 19)),  # Diners Club
    (("62",), (16, 17, 18, 19)),                                                 # UnionPay
)


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum every payment card number carries (double every second digit from the right)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def is_card_number(digits: str) -> bool:
    """Luhn-valid and issued by a known network at this length."""
    if not luhn_ok(digits):
        return False
    return any(len(digits) in lengths and digits.startswith(prefixes) for prefixes, lengths in _NETWORKS)


def _cards(text: str):
    return [m.span() for m in _CARD.finditer(text) if is_card_number(re.sub(r"[ -]", "", m.group()))]


# --- IP addresses ----------------------------------------------------------------------------------------------

_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
_VERSION_CUE = re.compile(r"\b(?:version|ver\.?|release|rev\.?)\s*$", re.IGNORECASE)
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:]|\.\d)")


def ip_spans(text: str) -> list[tuple[int, int]]:
    """Spans of IP addresses (the rules in the module docstring); also the Presidio engine's IP recognizer."""
    found = []
    for m in _IPV4.finditer(text):
        if _VERSION_CUE.search(text[max(0, m.start() - 12):m.start()]):
            continue
        try:
            ipaddress.IPv4Address(m.group())
        except ValueError:
            continue
        found.append(m.span())
    for m in _IPV6.finditer(text):
        candidate = m.group()
        groups = [g for g in candidate.split(":") if g]
        weight = sum(2 if "." in g else 1 for g in groups)  # an embedded IPv4 stands for two groups
        if weight < 3:
            continue
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        found.append(m.span())
    return found


# --- phone numbers ---------------------------------------------------------------------------------------------

_PHONE_CUE = re.compile(r"\b(?:phone|tel|call|mobile|cell|fax|sms|whatsapp|contact)\b", re.IGNORECASE)


def _cued(before: str) -> bool:
    """A phone cue word in ``before``, with no other number between it and the candidate."""
    cues = list(_PHONE_CUE.finditer(before))
    return bool(cues) and not any(ch.isdigit() for ch in before[cues[-1].end():])


def _phones(text: str, region: str):
    import phonenumbers as pn

    if region not in pn.SUPPORTED_REGIONS:  # an unknown region silently finds only +CC numbers
        raise GenzooError(f"unknown phone region {region!r}; use a two-letter region code like US, GB or DE")
    found = []
    for m in pn.PhoneNumberMatcher(text, region, leniency=pn.Leniency.POSSIBLE):
        raw = m.raw_string
        if _glued(text, m.start, m.end):
            continue  # part of a longer token: "aix-6107-1415-32", "Decimal('+35236450.6')"
        if raw.isdigit():
            if not (pn.is_valid_number(m.number) and _cued(text[max(0, m.start - 24):m.start])):
                continue  # a bare digit run: an id or counter unless the text says it is a phone number
        elif raw.startswith("+"):
            if not pn.is_possible_number(m.number):
                continue
        elif region in ("US", "CA") and _NANP.fullmatch(raw):
            if not pn.is_possible_number(m.number):
                continue  # written the way North American numbers are written: unassigned area codes count too
        elif not pn.is_valid_number(m.number):
            continue
        found.append((m.start, m.end))
    return found


# (212) 555-0123, 212-555-0123, 212.555.0123, 212 555 0123, 1-212-555-0123: the usual North American groupings
_NANP = re.compile(r"(?:1[-. ])?(?:\(\d{3}\) ?|\d{3}[-. ])\d{3}[-. ]\d{4}")


def _glued(text: str, start: int, end: int) -> bool:
    before = text[start - 1] if start else " "
    after = text[end:end + 2]
    nxt = after[:1]
    return before.isalnum() or before in "-.+_'\"/=*" or nxt.isalnum() or (nxt != "" and nxt in "-_") \
        or (nxt == "." and after[1:2].isdigit())


# --- names (conservative: only where the text announces one) ---------------------------------------------------

_NAME_WORD = r"(?:Mc|Mac|[A-Z]')?[A-Z][a-z\u00DF-\u00FF]+(?:-[A-Z][a-z\u00DF-\u00FF]+)?"  # O'Brien, McCoy, Jean-Luc
_NAME = rf"{_NAME_WORD}(?:[ \t]{_NAME_WORD}){{0,2}}"  # one line only
_NAME_CUES = re.compile(
    rf"(?:\b(?:Mr|Mrs|Ms|Mx|Dr|Prof|Sir|Madam|Miss)\.?[ \t]+(?P<a>{_NAME}))"
    rf"|(?:\b(?i:my\s+name\s+is|i\s+am\s+called|my\s+name's)[ \t]+(?P<b>{_NAME}))"
    rf"|(?:(?:^|(?<=[\n,;]))[ \t]*(?i:name|full\s+name|patient|customer)[ \t]*:[ \t]*(?P<c>{_NAME}))",
    re.MULTILINE,
)


def _names(text: str):
    found = []
    for m in _NAME_CUES.finditer(text):
        group = next(g for g in "abc" if m.group(g))
        found.append(m.span(group))
    return found
