"""Person names spaCy's NER misses: untitled and lowercase ("john smith"), found as first-name + last-name pairs.

The name lists are the per-locale first/last name tables that ship with Faker (public census-style lists). A pair
counts only when the first word is a known first name, the next one or two words known last names, the words are
cased alike (Title Title or lower lower), and none of them is a common English word (Faker's English word list
plus spaCy's stop words): "will" or "long" alone never make a name.
"""

from __future__ import annotations

import functools
import re

from presidio_analyzer.predefined_recognizers import SpacyRecognizer

from genzoo.store.pii.recognizers import _CandidateRecognizer

NAME_LOCALES = ("en_US", "en_GB", "en_IE", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_PT")


def _names(provider, *attrs):
    out = set()
    for attr in attrs:
        value = getattr(provider, attr, ())
        out.update(v for v in value if isinstance(v, str))
    return out


@functools.lru_cache(maxsize=1)
def name_lists():
    """(first names, last names, common words), all lowercased."""
    from faker.providers.lorem.en_US import Provider as Lorem
    from spacy.lang.en.stop_words import STOP_WORDS

    from faker.providers.person import de_DE, en_GB, en_IE, en_US, es_ES, fr_FR, it_IT, nl_NL, pt_PT

    first, last = set(), set()
    for module in (en_US, en_GB, en_IE, de_DE, fr_FR, es_ES, it_IT, nl_NL, pt_PT):  # NAME_LOCALES
        provider = module.Provider
        first |= _names(provider, "first_names", "first_names_male", "first_names_female")
        last |= _names(provider, "last_names")
    common = {w.lower() for w in Lorem.word_list} | {w.lower() for w in STOP_WORDS}
    # "van den Berg", "de la Cruz": the particles may stand between first and last name; the last word is the name
    particles = {p.lower() for n in last if " " in n for p in n.split()[:-1] if p.islower()}
    last = {n.split()[-1] for n in last}
    first = {n.lower() for n in first if " " not in n} - common
    last = {n.lower() for n in last} - common
    return frozenset(first), frozenset(last - {"y", "e"}), frozenset(common), frozenset(particles)


_TOKEN = re.compile(r"[^\W\d_](?:[^\W\d_]|['’-](?=[^\W\d_]))*")


class NameListRecognizer(_CandidateRecognizer):
    """First name followed by one or two last names, cased alike, none a common word."""

    ENTITY = "PERSON"

    def spans(self, text):
        lists = name_lists()
        tokens = [(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(text)]
        found, i = [], 0
        while i < len(tokens) - 1:
            end = _name_at(text, tokens, i, lists)
            if end is None:
                i += 1
            else:
                found.append((tokens[i][0], tokens[end][1]))
                i = end + 1
        return found


def _name_at(text, tokens, i, lists):
    """Index of the last token of a name starting at token ``i``, or None.

    first [second-first] [particles] last [last]: "john smith", "Elize Henric van den Berg", "Ramiro Méndez Valle".
    """
    first, last, _, particles = lists
    word = tokens[i][2]
    style = _style(word)
    if not style or word.lower() not in first:
        return None

    def joined(j):  # the words of a name are separated by one space
        return text[tokens[j - 1][1]:tokens[j][0]] in (" ", "\u00a0")

    def tail(j):
        while j < len(tokens) and j - i <= 6 and tokens[j][2].lower() in particles and joined(j):
            j += 1  # "van", "de la", "Van Der": any case
        end = None
        while (j < len(tokens) and tokens[j][2].lower() in last and _style(tokens[j][2]) == style and joined(j)
               and (end is None or end - i < 3)):
            end = j
            j += 1
        return end

    second = i + 1
    if second < len(tokens) and tokens[second][2].lower() in first and _style(tokens[second][2]) == style \
            and joined(second):
        end = tail(second + 1)
        if end is not None:
            return end
    return tail(i + 1)


def _style(word: str):
    if word.islower():
        return "lower"
    if word[0].isupper() and (len(word) == 1 or not word[1:].isupper()):
        return "title"
    return None  # ALL CAPS or camelCase: a constant or identifier, not a name


_CODEISH = re.compile(r"[_()\[\]{}=<>/\\@#$%^*|`~;:\d]")


class NerPersonRecognizer(SpacyRecognizer):
    """spaCy's PERSON entities, less the ones that are code (identifiers, calls) or a single lowercase word."""

    def __init__(self):
        super().__init__(supported_entities=["PERSON"], name="NerPersonRecognizer")

    def analyze(self, text, entities, nlp_artifacts=None):
        kept = []
        for r in super().analyze(text, entities, nlp_artifacts):
            span = text[r.start:r.end]
            words = span.split()
            if _CODEISH.search(span) or not any(w[:1].isupper() for w in words) or len(words) < 2:
                continue  # code, or a single word ("Arthur", "Counter", "Python"): too weak to call a person
            first, last = name_lists()[:2]
            if not any(w.lower().strip(".,'’") in first or w.lower().strip(".,'’") in last for w in words):
                continue  # "Sequence Types", "Format Specification": a heading, not anyone's name
            kept.append(r)
        return kept
