import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from thresher.filters.base import apply_decision
from thresher.filters.pii import (PiiDetector, PiiStage, Span, iban_valid, luhn_valid,
                                  resolve_overlaps)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ALL = ["email", "phone", "ip_address", "credit_card", "iban", "us_ssn"]


def found(text, entities=ALL, regions=("US", "GB", "DE", "FR", "IN")):
    detector = PiiDetector(entities, list(regions))
    return [(text[s.start:s.end], s.entity) for s in detector.find(text)]


def stage(**kwargs):
    s = PiiStage(**kwargs)
    s.setup()
    return s


def doc(text, id_="d"):
    return {"id": id_, "text": text, "source": "test", "meta": {}}


# --- e-mail -------------------------------------------------------------------------------

def test_email_plain_and_punctuation():
    assert found("Write to jane.doe+news@mail.example.co.uk.") == [("jane.doe+news@mail.example.co.uk", "EMAIL_ADDRESS")]


def test_email_inside_url_query_is_only_the_address():
    text = "see https://example.com/contact?to=jane@example.org&x=1 or mailto:bob@example.net"
    assert found(text, ["email"]) == [("jane@example.org", "EMAIL_ADDRESS"), ("bob@example.net", "EMAIL_ADDRESS")]


def test_at_sign_in_url_path_is_not_an_email():
    assert found("https://medium.com/@someone/a-post and user@localhost", ["email"]) == []


# --- phones -------------------------------------------------------------------------------

@pytest.mark.parametrize("number", [
    "(415) 555-2671", "415-555-2671", "+1 415 555 2671", "+44 20 7946 0958", "020 7946 0958",
    "+49 30 901820", "+33 1 42 68 53 00", "01 42 68 53 00", "+91 98765 43210", "+41 (0)44 668 18 00",
])
def test_valid_phone_formats(number):
    assert found(f"Call me at {number} tomorrow.", ["phone"]) == [(number, "PHONE_NUMBER")]


def test_bracketed_number_keeps_brackets_out_of_the_span():
    assert found("Reach us (Tel. 020 7946 0958) today", ["phone"]) == [("020 7946 0958", "PHONE_NUMBER")]


def test_phone_extension_is_part_of_the_span():
    assert found("Office: 463-612-6138x036 ask for Jo", ["phone"]) == [("463-612-6138x036", "PHONE_NUMBER")]


@pytest.mark.parametrize("text", [
    "It happened on 2021-03-04 at 12:30:45 sharp.",
    "Born 04/03/1987 in Paris, married 12.06.2010.",
    "The laptop costs $1299.99 or 1 299 EUR in Berlin.",
    "ISBN 978-3-16-148410-0 and ISBN-10: 0-306-40615-2 are books.",
    "Upgrade to version 10.0.19041.1 or v2.31.4 of the tool.",
    "Population 8336817 in 2019, area 783.8 km2.",
    "The house at 17151 2450 Crown St is for sale.",
    "Voted best for four years (2015-2018), and again 1999 - 2003.",
    "a long count date (9.15.10.0.0) that corresponds to 731 AD",
])
def test_numbers_that_look_like_phones_but_are_not(text):
    assert found(text, ["phone"]) == []


def test_price_and_version_words_need_word_boundaries():
    assert found("Tel 0207 946 0958 Europe office", ["phone"]) == [("0207 946 0958", "PHONE_NUMBER")]
    assert found("Nav 020 7946 0958 please", ["phone"]) == [("020 7946 0958", "PHONE_NUMBER")]


def test_short_local_number_needs_a_phone_word():
    assert found("Flat 467 3395 Main Road", ["phone"]) == []
    assert found("Phone: 467 3395", ["phone"]) == [("467 3395", "PHONE_NUMBER")]


def test_phone_regions_are_configurable():
    # A French national number is valid for FR, not for US only.
    assert found("appelez le 01 42 68 53 00 svp", ["phone"], regions=["US"]) == []
    assert found("appelez le 01 42 68 53 00 svp", ["phone"], regions=["FR"]) == [("01 42 68 53 00", "PHONE_NUMBER")]


# --- IP addresses -------------------------------------------------------------------------

def test_ipv4_octets_are_range_checked():
    assert found("from 192.168.0.1 and 999.1.1.1 and 256.0.0.1", ["ip_address"]) == [("192.168.0.1", "IP_ADDRESS")]


def test_ipv6_full_and_compressed_but_not_clock_times():
    text = "hosts 2001:db8::8a2e:370:7334, 6e40:4041:c617:e898:c11:40d2:c669:2eb4 at 12:30:45"
    assert found(text, ["ip_address"]) == [
        ("2001:db8::8a2e:370:7334", "IP_ADDRESS"), ("6e40:4041:c617:e898:c11:40d2:c669:2eb4", "IP_ADDRESS")]


# --- cards, IBAN, SSN ----------------------------------------------------------------------

def test_luhn():
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")


def test_credit_cards_with_separators_and_luhn():
    text = "Visa 4111 1111 1111 1111, MC 5500-0000-0000-0004, bad 4111 1111 1111 1112, amex 378282246310005"
    assert found(text, ["credit_card"]) == [
        ("4111 1111 1111 1111", "CREDIT_CARD"), ("5500-0000-0000-0004", "CREDIT_CARD"), ("378282246310005", "CREDIT_CARD")]


def test_luhn_valid_number_outside_card_ranges_needs_card_context():
    # 9 prefix is no card network; Luhn-valid.
    assert found("order 9000000000000001 shipped", ["credit_card"]) == []
    assert found("my card 9000000000000001 was lost", ["credit_card"]) == [("9000000000000001", "CREDIT_CARD")]


def test_iban_mod97_grouped_and_compact():
    assert iban_valid("GB82WEST12345698765432")
    assert not iban_valid("GB82WEST12345698765433")
    text = "IBAN GB82 WEST 1234 5698 7654 32 or DE89370400440532013000, not GB82WEST12345698765433"
    assert found(text, ["iban"]) == [("GB82 WEST 1234 5698 7654 32", "IBAN_CODE"), ("DE89370400440532013000", "IBAN_CODE")]


def test_ssn_ranges():
    text = "ok 123-45-6789; bad 000-12-3456 666-12-3456 912-34-5678 123-00-4567 123-45-0000"
    assert found(text, ["us_ssn"]) == [("123-45-6789", "US_SSN")]


# --- overlaps, redaction, stage -----------------------------------------------------------

def test_overlaps_longest_then_priority_deterministic():
    spans = [Span(0, 10, "PHONE_NUMBER"), Span(0, 10, "US_SSN"), Span(2, 20, "CREDIT_CARD"), Span(25, 30, "EMAIL_ADDRESS")]
    assert resolve_overlaps(spans) == [Span(2, 20, "CREDIT_CARD"), Span(25, 30, "EMAIL_ADDRESS")]
    assert resolve_overlaps(reversed(spans)) == resolve_overlaps(spans)
    assert resolve_overlaps([Span(0, 11, "PHONE_NUMBER"), Span(0, 11, "US_SSN")]) == [Span(0, 11, "US_SSN")]


def test_redact_leaves_no_digit_of_a_number_behind():
    s = stage()
    text = "Call +1 (415) 555-2671 x123 or card 4111-1111-1111-1111; SSN 123-45-6789 ip 10.0.0.1."
    decision = s.process(doc(text))
    assert decision.keep
    assert decision.text == ("Call |||PHONE_NUMBER||| or card |||CREDIT_CARD|||; SSN |||US_SSN||| "
                             "ip |||IP_ADDRESS|||.")
    assert decision.meta["pii_counts"] == {"CREDIT_CARD": 1, "IP_ADDRESS": 1, "PHONE_NUMBER": 1, "US_SSN": 1}


def test_placeholders_are_not_recounted_and_configurable():
    s = stage(placeholders={"EMAIL_ADDRESS": "<EMAIL>"})
    first = s.process(doc("mail a@b.org and c@d.org"))
    assert first.text == "mail <EMAIL> and <EMAIL>"
    again = s.process(doc(first.text + " |||PHONE_NUMBER|||"))
    assert again.text is None and again.meta["pii_counts"] == {}
    assert s.stats() == {"pii.EMAIL_ADDRESS": 2.0}
    assert s.stats() == {}  # counters are handed over once


def test_drop_action_counts_entities():
    s = stage(action="drop", max_entities=1)
    one = s.process(doc("mail a@b.org"))
    two = s.process(doc("mail a@b.org, ip 8.8.8.8"))
    assert one.keep and one.text is None
    assert not two.keep and two.reason == "pii" and two.value == 2.0
    assert two.meta["pii_counts"] == {"EMAIL_ADDRESS": 1, "IP_ADDRESS": 1}


def test_annotate_records_spans_and_keeps_text():
    s = stage(action="annotate", entities=["email"])
    d = doc("x a@b.org 8.8.8.8")
    decision = s.process(d)
    out = apply_decision(d, decision)
    assert out["text"] == d["text"]
    assert out["meta"]["pii_spans"] == [[2, 9, "EMAIL_ADDRESS"]]


def test_entities_are_switchable():
    s = stage(entities=["ip_address"])
    assert s.process(doc("a@b.org 8.8.8.8")).text == "a@b.org |||IP_ADDRESS|||"


def test_bad_parameters_are_clear_errors():
    with pytest.raises(ValidationError, match="unknown phone region"):
        PiiStage(phone_regions=["XX"])
    with pytest.raises(ValidationError, match="unknown entity type"):
        PiiStage(placeholders={"EMAIL": "x"})
    with pytest.raises(ValidationError):
        PiiStage(entities=["passport"])


def test_presidio_dataset_targets():
    path = DATA / "pii" / "presidio-synth_dataset_v2.json"
    if not path.exists():
        pytest.skip("shared data not present")
    data = json.loads(path.read_text())
    detector = PiiDetector(ALL, ["US", "GB", "DE", "FR", "IN"])
    types = {"EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "US_SSN"}
    tp, n_pred, n_gold = {t: 0 for t in types}, {t: 0 for t in types}, {t: 0 for t in types}
    for x in data:
        gold = {(s["start_position"], s["end_position"], s["entity_type"]) for s in x["spans"] if s["entity_type"] in types}
        pred = {(s.start, s.end, s.entity) for s in detector.find(x["full_text"])}
        for g in gold:
            n_gold[g[2]] += 1
        for p in pred:
            n_pred[p[2]] += 1
            tp[p[2]] += p in gold
    for t in types:
        floor = 0.90 if t == "PHONE_NUMBER" else 0.95
        assert tp[t] / n_pred[t] >= floor, t
        assert tp[t] / n_gold[t] >= floor, t
