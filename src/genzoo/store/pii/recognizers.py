"""Presidio recognizers for what Presidio's defaults miss or over-report.

Each recognizer finds candidates with a regex, then keeps one only if it validates (checksum, numbering plan,
issuer prefix) and, where the bare form is ambiguous, only next to a cue word ("SSN", "born", "passport"). Cues
are checked in the text window before the candidate by the recognizer itself, so the decision does not depend on
Presidio's lemma-based context boost (we run spaCy without the lemmatizer, for speed).
"""

from __future__ import annotations

import re

from presidio_analyzer import EntityRecognizer, RecognizerResult
from presidio_analyzer.predefined_recognizers import EmailRecognizer

from genzoo.store.redact import ip_spans, is_card_number

ACCEPT = 0.7  # what a validated candidate scores; the engine keeps >= 0.5


class _CandidateRecognizer(EntityRecognizer):
    """Base: subclasses yield accepted ``(start, end)`` spans from ``spans(text)``."""

    ENTITY = ""

    def __init__(self):
        super().__init__(supported_entities=[self.ENTITY], name=type(self).__name__, supported_language="en")

    def load(self):  # nothing to load: regexes compile at import
        pass

    def analyze(self, text, entities, nlp_artifacts=None):
        return [RecognizerResult(self.ENTITY, s, e, ACCEPT) for s, e in self.spans(text)]

    def spans(self, text):
        raise NotImplementedError


def _cued(cue: re.Pattern, text: str, start: int, window: int) -> bool:
    """A cue word within ``window`` characters before ``start``, with no other digit between it and the candidate."""
    before = text[max(0, start - window):start]
    hits = list(cue.finditer(before))
    return bool(hits) and not any(ch.isdigit() for ch in before[hits[-1].end():])


# --- email -------------------------------------------------------------------------------------------------------

class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's email regex, with its TLD check done against tldextract's bundled suffix list (no download)."""

    _extract = None

    def validate_result(self, pattern_text: str):
        if OfflineEmailRecognizer._extract is None:
            from genzoo.store.pii.tld import offline_tld_extractor

            OfflineEmailRecognizer._extract = offline_tld_extractor()
        parts = OfflineEmailRecognizer._extract(pattern_text)
        return bool(parts.domain and parts.suffix)


_DOT = r"(?:\.|\s*(?:\[\s*dot\s*\]|\(\s*dot\s*\)|\{\s*dot\s*\})\s*|\s+dot\s+)"
_AT = r"(?:\s*(?:@|\[\s*at\s*\]|\(\s*at\s*\)|\{\s*at\s*\})\s*|\s+at\s+)"
_OBFUSCATED_EMAIL = re.compile(
    rf"(?i)(?<![\w.@])(?P<local>[a-z0-9][a-z0-9_+-]{{0,40}}(?:{_DOT}[a-z0-9_+-]{{1,40}}){{0,3}})"
    rf"{_AT}(?P<domain>[a-z0-9][a-z0-9-]{{0,62}}(?:{_DOT}[a-z0-9-]{{1,63}}){{1,3}})(?![\w@])")
_OBFUSCATION = re.compile(r"(?i)\bdot\b|\bat\b|[\[\(\{]\s*(?:at|dot)\s*[\]\)\}]")


class ObfuscatedEmailRecognizer(_CandidateRecognizer):
    """``jane dot doe at example dot org``, ``jane.doe [at] example [dot] org``: the domain must end in a real TLD."""

    ENTITY = "EMAIL_ADDRESS"

    def spans(self, text):
        if not _OBFUSCATION.search(text):
            return []
        extract = None
        found = []
        for m in _OBFUSCATED_EMAIL.finditer(text):
            if "@" in m.group() and not _OBFUSCATION.search(m.group()):
                continue  # a plain address: Presidio's own email recognizer has it
            if not re.search(r"(?i)\bdot\b|[\[({]", m.group()) and not re.search(r"[._+\d]", m.group("local")):
                continue  # "look at python.org": a bare "at" before a plain domain needs an address-like local part
            domain = re.sub(_DOT, ".", m.group("domain")).lower()
            if extract is None:
                from genzoo.store.pii.tld import offline_tld_extractor

                extract = offline_tld_extractor()
            parts = extract(domain)
            # the last label must be a real suffix, and a spoken domain needs the word "dot" or a bracket form
            if parts.domain and parts.suffix and domain.endswith(parts.suffix) and parts.suffix.replace(".", "").isalpha():
                found.append(m.span())
        return found


# --- US social security numbers ----------------------------------------------------------------------------------

_SSN_DASHED = re.compile(r"(?<![\w-])(\d{3})-(\d{2})-(\d{4})(?![\w-]|\.\d)")
_SSN_LOOSE = re.compile(r"(?<![\w.-])(\d{3})[ .]?(\d{2})[ .]?(\d{4})(?![\w-]|\.\d)")
_SSN_CUE = re.compile(r"(?i)\b(?:ssn|ssns|social[\s-]+security(?:\s+(?:number|no\.?|#))?|soc\.?\s*sec\.?|sozialversicherungsnummer)\b")


def _ssn_valid(area: str, group: str, serial: str) -> bool:
    """SSA rules: no area 000, 666 or 9xx; no group 00; no serial 0000."""
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


class SsnRecognizer(_CandidateRecognizer):
    """``123-45-6789`` anywhere (valid per SSA rules); ``123456789`` / ``123 45 6789`` only after an SSN cue."""

    ENTITY = "US_SSN"

    def spans(self, text):
        found = [m.span() for m in _SSN_DASHED.finditer(text) if _ssn_valid(*m.groups())]
        for m in _SSN_LOOSE.finditer(text):
            if _ssn_valid(*m.groups()) and _cued(_SSN_CUE, text, m.start(), 40):
                found.append(m.span())
        return found


# --- payment cards -----------------------------------------------------------------------------------------------

_CARD = re.compile(r"(?<![\w.-])\d(?:[ .-]?\d){12,18}(?![\w-]|\.\d)")


class CardRecognizer(_CandidateRecognizer):
    """13-19 digits, ungrouped or grouped by one kind of separator (space, dash, dot), Luhn-valid with a network's
    issuer prefix at a length it issues. Presidio's recognizer checks Luhn only (1 random run in 10 passes) and
    misses dotted groups."""

    ENTITY = "CREDIT_CARD"

    def spans(self, text):
        found = []
        for m in _CARD.finditer(text):
            seps = set(re.sub(r"\d", "", m.group()))
            if len(seps) <= 1 and is_card_number(re.sub(r"\D", "", m.group())):
                found.append(m.span())
        return found


# --- phone numbers -----------------------------------------------------------------------------------------------

PHONE_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "CA", "AU", "IE", "AT", "CH", "BE", "IN")
_PHONE = re.compile(
    r"(?<![\w+.\-/'\"=*])(?:\+|\b00)?(?:\(\s?\+?\d{1,5}\s?\)\s?|\d)(?:[ .\-/]?(?:\(\d{1,5}\)|\d)){5,16}"
    r"(?:\s?(?:x|ext\.?)\s?\d{1,6})?(?![\w\-/]|\.\d)")
_PHONE_CUE = re.compile(r"(?i)\b(?:phone|tel|telephone|call|mobile|cell|fax|sms|whatsapp|contact|ring|text|dial|"
                        r"number|no\.?|reach)\b")
_NANP = re.compile(r"(?:\+?1[-. ]|001[-. ])?(?:\(\d{3}\) ?|\d{3}[-. ])\d{3}[-. ]\d{4}(?:\s?(?:x|ext\.?)\s?\d{1,6})?")
_DATE_LIKE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")


def _phone_ok(raw: str, cued: bool) -> bool:
    import phonenumbers as pn

    digits = re.sub(r"\D", "", raw.split("x")[0].split("ext")[0])
    if not 7 <= len(digits) <= 15 or _DATE_LIKE.fullmatch(raw):
        return False
    groups = re.findall(r"\d+", re.sub(r"\(0\)", "", raw))  # "+33 (0)4 22 ...": the trunk 0 is no group
    if sum(len(g) == 1 for g in groups) > 1:
        return False  # "1 2 3 4 5 6 7": a list of numbers, not a phone grouping
    if raw.isdigit():  # bare digits: ids and counters look the same unless the text says "call" or "phone"
        return cued and any(_valid(raw, r) for r in PHONE_REGIONS)
    if raw.startswith(("+", "00")):
        try:
            return pn.is_possible_number(pn.parse("+" + raw.lstrip("+")[2:] if raw.startswith("00") else raw, None))
        except pn.NumberParseException:
            return False
    if _NANP.fullmatch(raw):  # written the North American way: unassigned area codes count too
        try:
            return pn.is_possible_number(pn.parse(raw, "US"))
        except pn.NumberParseException:
            return False
    return any(_valid(raw, r) for r in PHONE_REGIONS)


def _valid(raw: str, region: str) -> bool:
    import phonenumbers as pn

    try:
        return pn.is_valid_number(pn.parse(raw, region))
    except pn.NumberParseException:
        return False


class PhoneRecognizer(_CandidateRecognizer):
    """Phone numbers in the ways several countries write them, validated by libphonenumber against each region's
    numbering plan (Presidio's recognizer uses one region at a time and scores bare digit runs as phones)."""

    ENTITY = "PHONE_NUMBER"

    def spans(self, text):
        return [m.span() for m in _PHONE.finditer(text)
                if _phone_ok(m.group(), _cued(_PHONE_CUE, text, m.start(), 24))]


# --- IP addresses (the old detector's rules: versions, OIDs, slices and loopback are left alone) -----------------

class IpRecognizer(_CandidateRecognizer):
    """IPv4 quads ``ipaddress`` accepts (not after a version cue); IPv6 with >= 3 groups (``::1``, ``a[1::2]`` stay):
    the hand-written detector's rules, which met recall and precision 1.0 here (benchmarks/pii/results.md)."""

    ENTITY = "IP_ADDRESS"

    def spans(self, text):
        return ip_spans(text)


# --- dates of birth (a date alone is not PII; a date said to be a birth date is) ---------------------------------

_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|"
          r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
_DATE = (rf"(?:\d{{4}}-\d{{1,2}}-\d{{1,2}}|\d{{1,2}}[/.-]\d{{1,2}}[/.-](?:\d{{4}}|\d{{2}})"
         rf"|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}"
         rf"|\d{{1,2}}(?:st|nd|rd|th)?(?:\s+of)?\s+{_MONTH},?\s+\d{{4}})")
_DOB = re.compile(
    rf"(?i)\b(?:born(?:\s+on)?|d\.?o\.?b\.?|date\s+of\s+birth|birth\s*date|birthday(?:\s+is)?|geboren(?:\s+am)?|"
    rf"n[ée]e?\s+le|nato\s+il|nata\s+il|nacido\s+el|nacida\s+el)"
    rf"(?:\s*(?:is|was|:|-|=|on|\(|,))*\s*(?P<date>{_DATE})(?![\w-]|[/.]\d)")


class DateOfBirthRecognizer(_CandidateRecognizer):
    """A date right after a birth cue ("born", "DOB", "date of birth" ...); the date alone is the span."""

    ENTITY = "DATE_OF_BIRTH"

    def spans(self, text):
        return [m.span("date") for m in _DOB.finditer(text)]


# --- passport numbers (an alphanumeric id is only a passport number when the text says so) -----------------------

_PASSPORT = re.compile(
    r"(?i)\b(?:passport|passeport|pasaporte|passaporto|reisepass|paspoort)(?:\s+(?:no\.?|number|num\.?|nr\.?|#|id))?"
    r"(?:\s*(?:is|was|:|-|=|#))*\s*(?-i:(?P<id>(?=[A-Z0-9]*\d)[A-Z0-9]{6,10}))(?![\w-])")


class PassportRecognizer(_CandidateRecognizer):
    """6-10 uppercase letters/digits (at least one digit) right after "passport" (+ "no"/"number")."""

    ENTITY = "PASSPORT"

    def spans(self, text):
        return [m.span("id") for m in _PASSPORT.finditer(text)]


# --- secrets (detect-secrets' detectors) -------------------------------------------------------------------------

# The high-entropy and keyword plugins are left out: hashes, commit ids and `password = get_password()` in code
# would be flagged; the IP plugin is left out because IpRecognizer covers addresses with fewer false positives.
_SKIPPED_PLUGINS = {"Base64HighEntropyString", "HexHighEntropyString", "KeywordDetector", "IPPublicDetector"}


def _secret_plugins():
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.plugins.base import RegexBasedDetector

    return [cls() for cls in get_mapping_from_secret_type_to_class().values()
            if issubclass(cls, RegexBasedDetector) and cls.__name__ not in _SKIPPED_PLUGINS]


class SecretRecognizer(_CandidateRecognizer):
    """API keys and tokens (AWS ``AKIA...``, GitHub, Slack, Stripe, private keys, JWTs ...) via detect-secrets'
    regex-based plugins (their ``denylist`` regexes), offline (no baseline, no settings file, no network)."""

    ENTITY = "SECRET"
    _plugins = None

    def spans(self, text):
        if SecretRecognizer._plugins is None:
            SecretRecognizer._plugins = [rx for plugin in _secret_plugins() for rx in plugin.denylist]
        # the plugins' own analyze_string yields only the regex's first group (for GitHub tokens just "ghp");
        # the whole match is what must go
        return [m.span() for rx in self._plugins for m in rx.finditer(text) if m.end() > m.start()]
