"""PII detection and redaction: e-mail addresses, phone numbers, IP addresses, credit cards, IBANs
and US social-security numbers.

Every detector finds candidates with a cheap regular expression and then validates them with the
format's own rules (phonenumbers metadata, octet ranges, ``ipaddress``, Luhn, mod-97, SSN ranges),
so "looks like a number" is never enough on its own. Detections from all detectors are merged by
``resolve_overlaps``: the longest span wins, ties go to the detector with the higher priority, so a
redaction always covers the whole number and never leaves digits of it behind.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar, Iterable, Literal

import phonenumbers
from pydantic import Field, PrivateAttr, field_validator

from thresher.filters.base import Decision, Document, DocumentStage

EMAIL = "EMAIL_ADDRESS"
PHONE = "PHONE_NUMBER"
IP = "IP_ADDRESS"
CARD = "CREDIT_CARD"
IBAN = "IBAN_CODE"
SSN = "US_SSN"

#: config name -> entity type
ENTITY_TYPES: dict[str, str] = {
    "email": EMAIL,
    "phone": PHONE,
    "ip_address": IP,
    "credit_card": CARD,
    "iban": IBAN,
    "us_ssn": SSN,
}

#: tie-break between overlapping spans of equal length: lower number wins
PRIORITY: dict[str, int] = {EMAIL: 0, IBAN: 1, CARD: 2, SSN: 3, IP: 4, PHONE: 5}


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int
    entity: str

    def __len__(self) -> int:
        return self.end - self.start


def resolve_overlaps(spans: Iterable[Span]) -> list[Span]:
    """Keep a non-overlapping subset: longest first, then entity priority, then leftmost.
    Deterministic whatever order the detectors produced the spans in."""
    chosen: list[Span] = []
    for span in sorted(set(spans), key=lambda s: (-len(s), PRIORITY[s.entity], s.start)):
        if all(span.end <= c.start or span.start >= c.end for c in chosen):
            chosen.append(span)
    return sorted(chosen, key=lambda s: s.start)


def mask(text: str, spans: Iterable[tuple[int, int]], filler: str = "\x00") -> str:
    """Replace the given ranges by a same-length filler, so offsets stay valid and no detector
    sees what is inside them."""
    chars = list(text)
    for start, end in spans:
        chars[start:end] = filler * (end - start)
    return "".join(chars)


# --------------------------------------------------------------------------------------------
# e-mail


class EmailDetector:
    entity = EMAIL
    # The local part cannot contain "/", ":", "=", "?" or "&", so an address inside a URL query
    # (?to=jane@x.org) or after mailto: is matched without the URL around it, and "/@user" paths
    # (medium.com/@user) match nothing.
    _pattern = re.compile(
        r"(?<![\w.%+\-])"
        r"[A-Za-z0-9](?:[A-Za-z0-9._%+\-]{0,62}[A-Za-z0-9_%+\-])?"
        r"@"
        r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+"
        r"[A-Za-z]{2,24}"
        r"(?![\w\-]|\.[A-Za-z0-9])"
    )

    def find(self, text: str) -> Iterable[Span]:
        if "@" not in text:
            return
        for m in self._pattern.finditer(text):
            if ".." in m.group(0):
                continue
            yield Span(m.start(), m.end(), EMAIL)


# --------------------------------------------------------------------------------------------
# IP addresses


class IpDetector:
    entity = IP
    _v4 = re.compile(r"(\d(?<![\w.]\d)\d{0,2})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?!\w|\.\d)")
    _v6_chars = frozenset("0123456789abcdefABCDEF:.")

    def find(self, text: str) -> Iterable[Span]:
        if "." in text:
            for m in self._v4.finditer(text):
                if all(int(g) <= 255 for g in m.groups()):
                    yield Span(m.start(), m.end(), IP)
        if ":" in text:
            yield from self._find_v6(text)

    def _find_v6(self, text: str) -> Iterable[Span]:
        # Grow a run of hex digits, colons and dots around each colon: far faster than a regex
        # that would try every hex letter of ordinary words as the start of an address.
        chars, n = self._v6_chars, len(text)
        i = text.find(":")
        while i != -1:
            start, end = i, i
            while start > 0 and text[start - 1] in chars:
                start -= 1
            while end < n and text[end] in chars:
                end += 1
            i = text.find(":", end)
            while end > start and text[end - 1] in ".:" and not text[start:end].endswith("::"):
                end -= 1  # sentence punctuation after the address
            while start < end and text[start] == "." :
                start += 1
            if (start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_")) or \
                    (end < n and (text[end].isalnum() or text[end] == "_")):
                continue
            candidate = text[start:end]
            if candidate.count(":") < 2:
                continue
            # A clock time (12:30:00) is a valid compressed IPv6 only with "::"; require either all
            # 8 groups, an IPv4 tail, or "::" with at least two groups around it.
            groups = [g for g in re.split(r":+", candidate) if g]
            if "::" not in candidate and len(candidate.split(":")) < 8 and "." not in candidate:
                continue
            if "::" in candidate and len(groups) < 2:
                continue
            try:
                ipaddress.IPv6Address(candidate)
            except ValueError:
                continue
            yield Span(start, end, IP)


# --------------------------------------------------------------------------------------------
# credit cards


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


#: (IIN prefix range low, high, allowed lengths), from the card networks' published ranges.
_IIN_RANGES: list[tuple[int, int, frozenset[int]]] = [
    (4, 4, frozenset({13, 16, 19})),                       # Visa
    (51, 55, frozenset({16})),                             # Mastercard
    (2221, 2720, frozenset({16})),                         # Mastercard 2-series
    (34, 34, frozenset({15})), (37, 37, frozenset({15})),  # American Express
    (300, 305, frozenset(range(14, 20))), (36, 36, frozenset(range(14, 20))),  # Diners Club
    (38, 39, frozenset(range(14, 20))),
    (6011, 6011, frozenset(range(16, 20))), (644, 649, frozenset(range(16, 20))),  # Discover
    (65, 65, frozenset(range(16, 20))),
    (3528, 3589, frozenset(range(16, 20))),                # JCB
    (1800, 1800, frozenset({15})), (2131, 2131, frozenset({15})),  # JCB, 15-digit legacy
    (62, 62, frozenset(range(16, 20))),                    # UnionPay
    (50, 50, frozenset(range(12, 20))), (56, 69, frozenset(range(12, 20))),  # Maestro (12-19)
]


def known_iin(digits: str) -> bool:
    for low, high, lengths in _IIN_RANGES:
        width = len(str(low))
        if len(digits) in lengths and low <= int(digits[:width]) <= high:
            return True
    return False


_CARD_CONTEXT = re.compile(
    r"\b(?:card|credit|debit|cc|visa|mastercard|amex|maestro|jcb|discover|diners|payment)\b", re.IGNORECASE)


class CreditCardDetector:
    entity = CARD
    # 12-19 digits, optionally grouped by single spaces or dashes (one separator style).
    _pattern = re.compile(r"\d(?<![\w\-.]\d)(?:[ \-]?\d){11,18}(?![\w]|[\-.]\d)")

    def __init__(self, use_context: bool = True) -> None:
        self.use_context = use_context

    def find(self, text: str) -> Iterable[Span]:
        for m in self._pattern.finditer(text):
            candidate = m.group(0)
            if " " in candidate and "-" in candidate:
                continue
            digits = candidate.replace(" ", "").replace("-", "")
            if not luhn_valid(digits):
                continue
            # Outside the published IIN ranges a Luhn-valid number (1 in 10 random ones is) is a
            # card only when the text says so.
            if known_iin(digits) or (self.use_context and _CARD_CONTEXT.search(text[max(0, m.start() - 40):m.start()])):
                yield Span(m.start(), m.end(), CARD)


# --------------------------------------------------------------------------------------------
# IBAN

#: ISO 13616 registry: country code -> IBAN length
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}


def iban_valid(compact: str) -> bool:
    compact = compact.upper()
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


class IbanDetector:
    entity = IBAN
    # Country code, check digits, then the BBAN either compact or in groups of four.
    _pattern = re.compile(
        # Matching starts at the check digits (digits are rarer than letters); the two letters
        # before them are checked by lookbehind and added back in find().
        r"\d(?<=[A-Za-z]{2}\d)(?<!\w[A-Za-z]{2}\d)\d(?:[A-Za-z0-9]{11,30}|(?: [A-Za-z0-9]{4}){2,7}(?: [A-Za-z0-9]{1,4})?)(?!\w)"
    )

    def find(self, text: str) -> Iterable[Span]:
        for m in self._pattern.finditer(text):
            start = m.start() - 2
            candidate = text[start:m.end()]
            compact = candidate.replace(" ", "")
            if iban_valid(compact):
                yield Span(start, m.end(), IBAN)
            elif " " in candidate:
                # A grouped IBAN followed by an unrelated short word: retry without the last group.
                shorter = candidate.rsplit(" ", 1)[0]
                if iban_valid(shorter.replace(" ", "")):
                    yield Span(start, start + len(shorter), IBAN)


# --------------------------------------------------------------------------------------------
# US social-security numbers


def ssn_valid(area: str, group: str, serial: str) -> bool:
    a = int(area)
    return a != 0 and a != 666 and a < 900 and group != "00" and serial != "0000"


class UsSsnDetector:
    entity = SSN
    # AAA-GG-SSSS or AAA GG SSSS with the same separator twice; bare 9-digit runs are too
    # ambiguous (order numbers, phone numbers) to call an SSN without context.
    _pattern = re.compile(r"(\d(?<![\w\-.]\d)\d{2})([\- ])(\d{2})\2(\d{4})(?![\w]|[\-.]\d)")

    def find(self, text: str) -> Iterable[Span]:
        for m in self._pattern.finditer(text):
            if ssn_valid(m.group(1), m.group(3), m.group(4)):
                yield Span(m.start(), m.end(), SSN)


# --------------------------------------------------------------------------------------------
# phone numbers

_DIGIT = re.compile(r"\d")
_PHONE_CONTEXT_BEFORE = re.compile(
    r"\b(?:phone|tel|telephone|mobile|mob|cell|cellphone|fax|call|ring|dial|text|sms|whats ?app|"
    r"messages?|contact|reach|hotline|helpline|office|desk|answering)"
    r"\W{0,4}(?:(?:me|us|them|him|her|at|on|to|is|number|no|nr)\W{1,3}){0,3}$",
    re.IGNORECASE,
)
_PHONE_CONTEXT_AFTER = re.compile(
    r"^[\s\-(,\\]{0,3}(?:office|fax|mobile|cell|home|work|phone|tel|desk)\b", re.IGNORECASE
)
_NOT_PHONE_BEFORE = re.compile(
    r"(?:[$€£¥₹]|\b(?:isbn(?:-1[03])?:?|version|v|ver\.?|release|build))\s*$", re.IGNORECASE)
_NOT_PHONE_AFTER = re.compile(r"^\s*(?:[€%]|(?:eur|usd|gbp|dollars?|euros?)\b)", re.IGNORECASE)

# Spans that are never (part of) a phone number: calendar dates, clock times, year ranges.
_DATE_TIME = re.compile(
    # "\d(?<!\d\d)" is "a digit not preceded by a digit", written so the pattern starts with \d and
    # the regex engine can skip to digits instead of trying every position.
    r"\d(?<!\d\d)(?:"
    r"\d{3}[\-/.]\d{1,2}[\-/.]\d{1,2}"                                   # 2021-03-04
    r"|\d?[\-/.]\d{1,2}[\-/.]\d{4}"                                      # 04/03/2021
    r"|\d?:\d{2}(?::\d{2})?"                                              # 12:30:45
    r"|(?:(?<=1)[5-9]|(?<=2)0)\d\d ?[\-–] ?(?:1[5-9]|20)\d\d"              # 2015-2018
    r")(?!\d)"
)


def _isbn13_valid(digits: str) -> bool:
    return len(digits) == 13 and digits[:3] in ("978", "979") and sum(
        int(d) * (1 if i % 2 == 0 else 3) for i, d in enumerate(digits)) % 10 == 0


class PhoneDetector:
    """Phone numbers: a permissive candidate pattern (digit groups separated by one space, dash
    or dot, optional +country code, (area) code, (0) trunk prefix and xNNN extension), then
    phonenumbers decides. A candidate that is a valid number in one of ``regions`` (or as an
    international number) is a phone. With ``use_context``, a candidate that phonenumbers only
    calls *possible* counts too when a phone word (phone, call, fax, ...) stands right before or
    after it: many real numbers are from regions not listed, or are short local numbers."""

    entity = PHONE
    _candidate = re.compile(
        # Each branch starts with its literal first character and then looks back past it (the
        # same "not preceded by" test as a leading lookbehind), so the engine can skip ahead to
        # candidate characters instead of trying every position. Likewise in the patterns below.
        r"(?:\+(?<![\w+\-.@/]\+)\(?\d|\((?<![\w+\-.@/]\()\d|\d(?<![\w+\-.@/]\d))"
        r"[\d()]*(?:[ .\-]{1,2}\(?\d[\d()]*|\(0\)\d*)*"
        r"(?:\s?(?:x|ext\.?|extension)\s?\d{1,6})?"
        r"(?![\w@]|[\-.]\d)",
        re.IGNORECASE,
    )
    _extension = re.compile(r"\s?(?:x|ext\.?|extension)\s?\d{1,6}$", re.IGNORECASE)

    def __init__(self, regions: list[str], use_context: bool = True) -> None:
        self.regions = regions
        self.use_context = use_context

    def find(self, text: str) -> Iterable[Span]:
        if not _DIGIT.search(text):
            return
        blocked = [m.span() for m in _DATE_TIME.finditer(text)]
        masked = mask(text, blocked) if blocked else text
        for m in self._candidate.finditer(masked):
            span = self._validate(text, masked, m.start(), m.end())
            if span is not None:
                yield span

    def _validate(self, text: str, masked: str, start: int, end: int) -> Span | None:
        candidate = masked[start:end]
        # Trim brackets that do not belong to the number ("(call 555-1234)").
        while candidate.endswith(")") and candidate.count(")") > candidate.count("("):
            candidate, end = candidate[:-1], end - 1
        while candidate.startswith("(") and candidate.count("(") > candidate.count(")"):
            candidate, start = candidate[1:], start + 1
        # A whole number in brackets, "(555 1234)": the brackets are prose, not an area code.
        if candidate.startswith("(") and candidate.endswith(")") and "(" not in candidate[1:] \
                and ")" not in candidate[:-1]:
            candidate, start, end = candidate[1:-1], start + 1, end - 1
        core = self._extension.sub("", candidate)
        digits = re.sub(r"\D", "", core)
        if not 7 <= len(digits) <= 15:
            return None
        if re.fullmatch(r"\d+(?:\.\d+)+", core) and any(len(g) == 1 for g in core.split(".")):
            return None  # version numbers (1.2.3456.7) and decimals
        before, after = text[max(0, start - 30):start], text[end:end + 20]
        if _NOT_PHONE_BEFORE.search(before) or _NOT_PHONE_AFTER.search(after):
            return None
        if _isbn13_valid(digits) and "-" in core:
            return None
        if self.use_context and self._has_context(before, after):
            return Span(start, end, PHONE) if self._possible(core) else None
        # Without a phone word, a short bare digit group (555 1234) is as likely a house number,
        # postcode or licence number; it needs an unambiguous phone shape to count.
        phone_shaped = core[0] in "+(0" or len(digits) >= 10
        if phone_shaped and self._parse_valid(core) is not None:
            return Span(start, end, PHONE)
        return None

    def _parse_valid(self, core: str) -> phonenumbers.PhoneNumber | None:
        international = core.startswith("+") or core.startswith("00")
        regions = [None] if core.startswith("+") else self.regions
        for region in regions:
            try:
                number = phonenumbers.parse(core, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(number):
                return number
            if international:
                break
        return None

    def _possible(self, core: str) -> bool:
        if core.startswith("+"):
            try:
                return phonenumbers.is_possible_number(phonenumbers.parse(core, None))
            except phonenumbers.NumberParseException:
                return False
        return True  # a local number in an unlisted region: the context word decides

    @staticmethod
    def _has_context(before: str, after: str) -> bool:
        return bool(_PHONE_CONTEXT_BEFORE.search(before) or _PHONE_CONTEXT_AFTER.search(after))


# --------------------------------------------------------------------------------------------
# the detector and the stage

DEFAULT_PLACEHOLDERS: dict[str, str] = {entity: f"|||{entity}|||" for entity in ENTITY_TYPES.values()}
_PLACEHOLDER_SHAPE = re.compile(r"\|\|\|[A-Z_]+\|\|\|")


class PiiDetector:
    """All enabled detectors plus overlap resolution; the Beam-free core of the ``pii`` stage."""

    def __init__(self, entities: Iterable[str], phone_regions: list[str], context: bool = True,
                 placeholders: Iterable[str] = ()) -> None:
        makers = {
            "email": EmailDetector,
            "phone": lambda: PhoneDetector(phone_regions, context),
            "ip_address": IpDetector,
            "credit_card": lambda: CreditCardDetector(context),
            "iban": IbanDetector,
            "us_ssn": UsSsnDetector,
        }
        self.detectors = [makers[name]() for name in entities]
        self._placeholders = [p for p in placeholders if p]

    def find(self, text: str) -> list[Span]:
        # Existing placeholders (ours or a configured custom one) are hidden, so text redacted
        # once is not counted again.
        hidden = [m.span() for m in _PLACEHOLDER_SHAPE.finditer(text)]
        for placeholder in self._placeholders:
            hidden += [m.span() for m in re.finditer(re.escape(placeholder), text)]
        if hidden:
            text = mask(text, hidden, filler=" ")
        spans = [span for detector in self.detectors for span in detector.find(text)]
        return resolve_overlaps(spans)


def redact(text: str, spans: list[Span], placeholders: dict[str, str]) -> str:
    out, last = [], 0
    for span in spans:
        out.append(text[last:span.start])
        out.append(placeholders[span.entity])
        last = span.end
    out.append(text[last:])
    return "".join(out)


class PiiStage(DocumentStage):
    """Find PII and redact it, drop documents with too much of it, or only annotate it.

    entities:      which detectors run (email, phone, ip_address, credit_card, iban, us_ssn).
    action:        ``redact`` replaces each entity by its placeholder; ``drop`` rejects documents
                   with more than ``max_entities`` entities (reason ``pii``, value = the count) and
                   keeps the rest unchanged; ``annotate`` changes nothing and records the spans.
    phone_regions: regions whose national formats count as valid phone numbers.
    context:       weaker evidence counts next to a telling word: a possible (not valid) phone
                   number after "phone", "call", "fax", ...; a Luhn-valid number outside the
                   known card ranges after "card", "credit", "cc", ...
    placeholders:  entity type -> replacement text, overriding the ``|||TYPE|||`` defaults.
    Every action writes ``pii_counts`` (entity type -> count) into meta; ``annotate`` (and
    ``spans: true``) also writes ``pii_spans`` as [start, end, type] on the input text.
    """

    name: ClassVar[str] = "pii"

    entities: list[Literal["email", "phone", "ip_address", "credit_card", "iban", "us_ssn"]] = Field(
        default_factory=lambda: list(ENTITY_TYPES))
    action: Literal["redact", "drop", "annotate"] = "redact"
    max_entities: int = Field(default=0, ge=0)
    phone_regions: list[str] = Field(default_factory=lambda: ["US", "GB", "DE", "FR", "IN"])
    context: bool = True
    placeholders: dict[str, str] = Field(default_factory=dict)
    spans: bool = False

    _detector: PiiDetector | None = PrivateAttr(default=None)
    _totals: Counter = PrivateAttr(default_factory=Counter)

    @field_validator("phone_regions")
    @classmethod
    def _known_regions(cls, regions: list[str]) -> list[str]:
        supported = phonenumbers.SUPPORTED_REGIONS
        unknown = [r for r in regions if r not in supported]
        if unknown:
            raise ValueError(f"unknown phone region(s) {unknown}; use ISO 3166 codes such as US, GB, DE")
        return regions

    @field_validator("placeholders")
    @classmethod
    def _known_entity_types(cls, placeholders: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(placeholders) - set(DEFAULT_PLACEHOLDERS))
        if unknown:
            raise ValueError(f"placeholders for unknown entity type(s) {unknown}; "
                             f"known: {sorted(DEFAULT_PLACEHOLDERS)}")
        return placeholders

    @property
    def placeholder_map(self) -> dict[str, str]:
        return {**DEFAULT_PLACEHOLDERS, **self.placeholders}

    def setup(self) -> None:
        self._detector = PiiDetector(self.entities, self.phone_regions, self.context,
                                     placeholders=self.placeholder_map.values())

    def process(self, doc: Document) -> Decision:
        if self._detector is None:
            self.setup()
        text = doc["text"]
        spans = self._detector.find(text)
        counts = Counter(span.entity for span in spans)
        self._totals.update(counts)
        meta: dict = {"pii_counts": dict(sorted(counts.items()))}
        if self.action == "annotate" or self.spans:
            meta["pii_spans"] = [[s.start, s.end, s.entity] for s in spans]
        if self.action == "drop":
            if len(spans) > self.max_entities:
                return Decision.reject("pii", value=float(len(spans)), meta=meta)
            return Decision.accept(meta=meta)
        if self.action == "redact" and spans:
            return Decision.accept(text=redact(text, spans, self.placeholder_map), meta=meta)
        return Decision.accept(meta=meta)

    def stats(self) -> dict[str, float]:
        totals = {f"pii.{entity}": float(n) for entity, n in sorted(self._totals.items())}
        self._totals.clear()
        return totals
