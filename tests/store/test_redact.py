import pytest

from genzoo.core.errors import GenzooError
from genzoo.store.redact import KINDS, find_pii, is_card_number, luhn_ok, redact

# (text, the PII substrings that must be found, with their kind)
POSITIVES = [
    ("write to jane.doe+news@mail.example.co.uk today", [("email", "jane.doe+news@mail.example.co.uk")]),
    ("Call (212) 555-0123 after lunch", [("phone", "(212) 555-0123")]),
    ("office 415.555.2671, toll free 1-800-555-0199", [("phone", "415.555.2671"), ("phone", "1-800-555-0199")]),
    ("London: +44 20 7946 0958; Berlin +49 30 901820", [("phone", "+44 20 7946 0958"), ("phone", "+49 30 901820")]),
    ("Tel: +1 (555) 123-4567", [("phone", "+1 (555) 123-4567")]),  # fictional range, but the + says phone
    ("my mobile is 4155552671", [("phone", "4155552671")]),
    ("reach me at (400) 389-2029", [("phone", "(400) 389-2029")]),  # unassigned area code, North American grouping
    ("pay with 4111 1111 1111 1111 or 4111-1111-1111-1111", [("card", "4111 1111 1111 1111"), ("card", "4111-1111-1111-1111")]),
    ("amex 378282246310005 mc 5555555555554444", [("card", "378282246310005"), ("card", "5555555555554444")]),
    ("from 192.168.1.20, then 8.8.8.8.", [("ip", "192.168.1.20"), ("ip", "8.8.8.8")]),
    ("v6 2001:db8:85a3::8a2e:370:7334 and ::ffff:192.0.2.1", [("ip", "2001:db8:85a3::8a2e:370:7334"), ("ip", "::ffff:192.0.2.1")]),
    ("Dr. Alice Smith met Mrs O'Brien", [("name", "Alice Smith"), ("name", "O'Brien")]),
    ("Hi, my name is Jean-Luc Picard.", [("name", "Jean-Luc Picard")]),
    ("Name: Ada Lovelace\nThe Analytical Engine", [("name", "Ada Lovelace")]),
]

NEGATIVES = [
    "Python 3.11.4 was released on 2023-10-05 at 12:30:45.",
    "bump to version 1.2.3.4 and release 10.0.0.1",  # dotted versions after a version cue
    "OID 1.3.6.1.4.1.311 is registered",
    "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "md5 5d41402abc4b2a76b9719d911017c592 and commit 7a8f459",
    "def f(xs): return xs[1::2] + xs[::3] + {'a': 1}",
    "std::vector<int> v; a::b::c",
    "@property\ndef name(self): return self._name",
    "ssh user@localhost",
    "timestamp 1700000000123 and id 4155552671",  # bare digit runs without a phone cue
    "order 1234567812345670",  # Luhn-valid, but no card network issues numbers starting with 1
    "order 4111111111111112",  # Visa prefix, Luhn-invalid
    "my name is not important, and the Python Software Foundation is",
    "matrix of 1024 x 768 at 60 Hz, pi = 3.14159265358979",
    "fe80::1 and ::1 are link-local and loopback",
    'platform "aix-6107-1415-32" and Decimal(\'+35236450.6\')',  # digit runs glued to longer tokens
]


@pytest.mark.parametrize("text, expected", POSITIVES)
def test_pii_is_found_and_replaced_by_typed_placeholders(text, expected):
    r = redact(text)
    found = [(f.kind, text[f.start:f.end]) for f in r.findings]
    assert found == expected
    for kind, value in expected:
        assert value not in r.text
        assert f"<{ {'email': 'EMAIL', 'phone': 'PHONE', 'card': 'CARD', 'ip': 'IP', 'name': 'NAME'}[kind]}>" in r.text


@pytest.mark.parametrize("text", NEGATIVES)
def test_lookalikes_are_left_alone(text):
    r = redact(text)
    assert r.findings == [] and r.text == text


def test_spans_refer_to_the_original_and_the_rest_is_untouched():
    text = "a@b.io wrote (212) 555-0123 from 10.1.2.3"
    r = redact(text)
    assert r.text == "<EMAIL> wrote <PHONE> from <IP>"
    assert [(f.kind, f.start, f.end) for f in r.findings] == [("email", 0, 6), ("phone", 13, 27), ("ip", 33, 41)]
    assert "a@b.io" not in repr(r.findings)  # findings never carry the value itself


def test_overlaps_go_to_the_stronger_kind():
    # a card number is also a plausible phone digit run; an email's digits are never a phone
    r = redact("card 4111 1111 1111 1111; contact 2125550123@example.com")
    assert [f.kind for f in r.findings] == ["card", "email"]


def test_kinds_can_be_chosen_and_bad_input_is_refused():
    assert redact("x@example.com 8.8.8.8", kinds=("ip",)).text == "x@example.com <IP>"
    with pytest.raises(GenzooError, match="unknown PII kind"):
        redact("x", kinds=("ssn",))
    with pytest.raises(GenzooError, match="takes a str"):
        redact(b"bytes")
    assert set(KINDS) == {"email", "card", "ip", "phone", "name"}
    assert find_pii("") == []


def test_luhn_and_card_networks():
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")
    assert is_card_number("4012888888881881") and is_card_number("6011111111111117")
    assert not is_card_number("1234567812345670")  # Luhn-valid, no network
    assert not is_card_number("41111111111111")  # Visa prefix at a length Visa does not issue


def test_phone_region_is_used_and_checked():
    assert [f.kind for f in redact("ring 020 7946 0958", phone_region="GB").findings] == ["phone"]
    with pytest.raises(GenzooError, match="region"):
        redact("ring 020 7946 0958", phone_region="not-a-region")
