"""PII detection and redaction (ragops.guardrails.pii): checksums, invalid ranges, redaction, and
no false positives on the numbers ordinary prompts are full of."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragops.errors import RagopsError
from ragops.guardrails.pii import (
    PERSON_MODEL_PATH,
    PII_ENTITIES,
    PiiSpan,
    detect_pii,
    iban_valid,
    luhn_valid,
    redact,
)

DATASET = Path("/work/shared/datasets/guardrails/pii_synth_dataset_v2.json")


def types(text: str, entities=None) -> list[tuple[str, str]]:
    return [(s.entity_type, s.text) for s in detect_pii(text, entities)]


# --- credit cards ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "card",
    ["4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111", "378282246310005",
     "3782 822463 10005", "6011000990139424", "5555555555554444", "4222222222222"],
)
def test_luhn_valid_cards_are_found_with_any_grouping(card):
    assert types(f"my card is {card}, thanks", ["CREDIT_CARD"]) == [("CREDIT_CARD", card)]


@pytest.mark.parametrize("card", ["4111111111111112", "4111 1111 1111 1121", "378282246310006"])
def test_cards_failing_luhn_are_not_cards(card):
    assert types(f"my card is {card}", ["CREDIT_CARD"]) == []


def test_luhn_edge_cases():
    assert luhn_valid("0")
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")
    assert not luhn_valid("4111-1111")  # separators are the caller's to strip
    assert not luhn_valid("")


def test_a_luhn_valid_number_of_card_length_but_no_network_is_not_a_card():
    # 16 digits, Luhn-valid, but no network issues cards starting with 9.
    assert luhn_valid("9111111111111110")
    assert types("ref 9111111111111110", ["CREDIT_CARD"]) == []


# --- IBAN ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "iban",
    ["GB82WEST12345698765432", "GB82 WEST 1234 5698 7654 32", "gb82west12345698765432",
     "DE89370400440532013000", "DE89 3704 0044 0532 0130 00", "FR1420041010050500013M02606",
     "NO9386011117947"],
)
def test_valid_ibans_spaced_or_lower_case(iban):
    assert iban_valid(iban)
    assert types(f"wire it to {iban} today", ["IBAN_CODE"]) == [("IBAN_CODE", iban)]


@pytest.mark.parametrize(
    "iban",
    ["GB82WEST12345698765431",  # one digit off: mod 97 fails
     "GB82WEST1234569876543",  # one short of GB's 22
     "DE89370400440532013000000",  # too long for DE
     "XX82WEST12345698765432",  # no such country
     ],
)
def test_invalid_ibans(iban):
    assert not iban_valid(iban)
    assert types(f"wire it to {iban} today", ["IBAN_CODE"]) == []


def test_an_iban_followed_by_words_ends_at_its_length():
    text = "IBAN GB82 WEST 1234 5698 7654 32 and then more text"
    (span,) = detect_pii(text, ["IBAN_CODE"])
    assert span.text == "GB82 WEST 1234 5698 7654 32"


# --- SSN -------------------------------------------------------------------------------------


@pytest.mark.parametrize("ssn", ["536-90-4399", "078-05-1120", "772-12-3456", "536 90 4399"])
def test_valid_ssns(ssn):
    assert types(f"SSN {ssn}", ["US_SSN"]) == [("US_SSN", ssn)]


@pytest.mark.parametrize(
    "ssn", ["000-12-3456", "666-12-3456", "900-12-3456", "999-12-3456", "123-00-4567", "123-45-0000"]
)
def test_ssns_in_never_issued_ranges_are_rejected(ssn):
    assert types(f"SSN {ssn}", ["US_SSN"]) == []


def test_nine_bare_digits_are_an_ssn_only_next_to_the_word():
    assert types("my ssn is 536904399", ["US_SSN"]) == [("US_SSN", "536904399")]
    assert types("order 536904399 shipped", ["US_SSN"]) == []


# --- e-mail, phone, IP -----------------------------------------------------------------------


def test_emails():
    assert types("write to jane.doe+tag@mail.example.co.uk.", ["EMAIL_ADDRESS"]) == [
        ("EMAIL_ADDRESS", "jane.doe+tag@mail.example.co.uk")
    ]
    assert types("not an address: user@localhost or @handle", ["EMAIL_ADDRESS"]) == []


@pytest.mark.parametrize(
    "phone",
    ["+1-984-182-0190", "(602)272-9781", "415-555-0132", "+41 (0)96 471 07 95", "+447700 921 916",
     "001-518-640-0854", "345-899-3560x4587", "+33 1 42 68 53 00", "030 12345678"],
)
def test_phone_numbers_us_and_international(phone):
    assert types(f"call me on {phone} tomorrow", ["PHONE_NUMBER"]) == [("PHONE_NUMBER", phone)]


def test_a_plain_digit_group_is_a_phone_only_with_a_phone_word_nearby():
    assert types("Phone: 467 3395", ["PHONE_NUMBER"]) == [("PHONE_NUMBER", "467 3395")]
    assert types("we shipped 467 3395 units", ["PHONE_NUMBER"]) == []


@pytest.mark.parametrize("ip", ["192.168.1.20", "8.8.8.8", "2001:db8::8a2e:370:7334",
                                "6e40:4041:c617:e898:c11:40d2:c669:2eb4", "fe80::1ff:fe23:4567:890a"])
def test_ip_addresses(ip):
    assert types(f"login from {ip}.", ["IP_ADDRESS"]) == [("IP_ADDRESS", ip)]


def test_not_ip_addresses():
    assert types("999.1.1.1 and 12:30:45 and std::vector and v1.2.3.4", ["IP_ADDRESS"]) == []


# --- no false positives on ordinary numbers --------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "In 2019 and 2020 revenue grew 12% to $4,317,000.",
        "Run the server on port 4317 (OTLP) or 8080.",
        "Upgrade from Python 3.12.1 to 3.13.0, numpy 2.1.3, and CUDA 12.4.",
        "The meeting is on 2024-05-17 at 10:30, room 101.",
        "Order #10023 shipped on 17/05/2024; tracking 1Z999AA10123456784.",
        "Chapter 3, pages 120-135, figure 4.2 and table 10.",
        "Set batch_size=32, lr=0.001, epochs 10, seed 1234567.",
    ],
)
def test_no_pii_in_ordinary_numbers(text):
    assert detect_pii(text, [e for e in PII_ENTITIES if e != "PERSON"]) == []


# --- the API ---------------------------------------------------------------------------------


def test_spans_are_sorted_non_overlapping_and_slice_the_text():
    text = ("Hi, I'm John Smith. Card 4111 1111 1111 1111, mail john.smith@example.com, "
            "IBAN GB82WEST12345698765432, phone +1-415-555-0132, ssn 536-90-4399, ip 10.0.0.7.")
    spans = detect_pii(text)
    assert [s.start for s in spans] == sorted(s.start for s in spans)
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:], strict=False))
    assert all(text[s.start : s.end] == s.text and 0 < s.score <= 1 for s in spans)
    assert {s.entity_type for s in spans} == set(PII_ENTITIES)


def test_redact_replaces_each_span_with_its_placeholder():
    text = "Mail jane@example.com or call +1-415-555-0132; card 4111111111111111."
    assert redact(text) == "Mail <EMAIL_ADDRESS> or call <PHONE_NUMBER>; card <CREDIT_CARD>."


def test_redact_with_given_spans_merges_overlaps():
    text = "abcdefghij"
    spans = [PiiSpan("PERSON", 2, 6, "cdef", 1.0), PiiSpan("EMAIL_ADDRESS", 4, 8, "efgh", 1.0)]
    assert redact(text, spans) == "ab<PERSON>ij"
    assert redact(text, []) == text


def test_entities_filter_and_unknown_entity():
    text = "mail jane@example.com, card 4111111111111111"
    assert types(text, ["CREDIT_CARD"]) == [("CREDIT_CARD", "4111111111111111")]
    with pytest.raises(RagopsError, match="unknown PII entity"):
        detect_pii(text, ["SHOE_SIZE"])
    with pytest.raises(ValueError):
        detect_pii(text, ["SHOE_SIZE"])


def test_empty_and_unicode_text():
    assert detect_pii("") == []
    assert redact("") == ""
    text = "Grüße — écrivez à zoë.müller@exämple.de ou appelez le +33 1 42 68 53 00 🙂"
    spans = detect_pii(text, [e for e in PII_ENTITIES if e != "PERSON"])
    assert [(s.entity_type, s.text) for s in spans] == [
        ("EMAIL_ADDRESS", "zoë.müller@exämple.de"), ("PHONE_NUMBER", "+33 1 42 68 53 00")
    ]
    assert redact(text, spans) == "Grüße — écrivez à <EMAIL_ADDRESS> ou appelez le <PHONE_NUMBER> 🙂"


def test_person_names_in_context():
    found = [s.text for s in detect_pii("My name is Maria Gonzalez and I live in Madrid.", ["PERSON"])]
    assert "Maria Gonzalez" in found
    assert detect_pii("What is the boiling point of water at sea level?", ["PERSON"]) == []


# --- person recall on the held-out templates --------------------------------------------------


@pytest.mark.skipif(not DATASET.exists(), reason=f"{DATASET} not present (the shared datasets are not cloned)")
def test_person_recall_on_held_out_templates_is_at_least_080():
    model = json.loads(PERSON_MODEL_PATH.read_text(encoding="utf-8"))
    test_ids = set(model["split"]["test_template_ids"])
    data = [r for r in json.loads(DATASET.read_text(encoding="utf-8")) if r["template_id"] in test_ids]
    gold = found = 0
    for rec in data:
        pred = detect_pii(rec["full_text"], ["PERSON"])
        for s in rec["spans"]:
            if s["entity_type"] == "PERSON":
                gold += 1
                found += any(p.start < s["end_position"] and s["start_position"] < p.end for p in pred)
    assert gold >= 100
    assert found / gold >= 0.80
