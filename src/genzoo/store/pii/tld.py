"""Top-level domains without the network (the email recognizers validate a domain's ending)."""

from __future__ import annotations


def offline_tld_extractor():
    """A tldextract extractor that uses the Public Suffix List snapshot bundled with tldextract.

    The default ``tldextract.extract`` fetches the list from the internet on first use (and prints a traceback
    where there is none); redaction must never touch the network.
    """
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)
