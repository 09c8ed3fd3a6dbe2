"""Seeded generator of web-like text: the demo corpus and realistic noise for benchmarks.

Everything here is pure Python (``random.Random``), deterministic given the seed, and fast enough
to generate a million documents for the dedup scale benchmark. Nothing is copied from real data:
the articles are built from a small built-in vocabulary and sentence templates.

Document kinds in the demo corpus (``demo_kind``), each a known share of the corpus (``DEMO_MIX``):

- ``article``          multi-paragraph English prose that passes the Gopher and C4 quality rules
- ``near_duplicate``   an earlier article with typos, boilerplate, reordered paragraphs, truncation
- ``exact_duplicate``  an earlier article, byte for byte, under another id and URL
- ``pii``              an article with e-mails, phone numbers, IPs, card numbers, IBANs, SSNs
- ``non_english``      German, French, Spanish, Russian or Chinese prose (``demo_lang``)
- ``boilerplate``      navigation menus, cookie banners, legal links, JavaScript warnings
- ``spam``             keyword stuffing, repeated lines and SEO link lists
- ``short``            empty or nearly empty pages

Ground truth rides along in extra keys: ``demo_kind`` always, ``demo_lang`` for non-English
documents, ``demo_duplicate_of`` (the id of the source article) for both duplicate kinds and
``demo_pii`` (the injected spans) for PII documents.

The edit operations (``typo_edits``, ``insert_boilerplate``, ``reorder_paragraphs``, ``truncate``,
``near_duplicate``, ``inject_pii``, ``inject_trigger``) take a ``random.Random`` (or an int seed)
so benchmarks can reuse them on real documents, e.g. through ``make_benchmark_corpus``.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import random
import re
import string
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from thresher.pipeline.demo.words import (CITIES, CONNECTORS, COOKIE_LINES, EMAIL_DOMAINS, FIRST_NAMES, FOOTER_LINES,
                                          JS_LINES, LANGUAGE_WORDS, LAST_NAMES, NAV_ITEMS, QUANTITIES, SECTIONS,
                                          SENTENCE_TEMPLATES, SHORT_TEXTS, SITE_SUFFIXES, SITE_WORDS, SPAM_KEYWORDS,
                                          SPAM_LINES, TIME_PHRASES, TITLE_TEMPLATES, TOPICS, US_AREA_CODES)

# ---------------------------------------------------------------------------------------------
# English text from the vocabulary and templates of words.py.
# ---------------------------------------------------------------------------------------------

_SLOT = re.compile(r"\{([A-Z]+)\d?\}")


def _compile(template: str) -> list[tuple[bool, str]]:
    """Split a template into (is_slot, text) parts once, so filling it is a tight loop."""
    parts: list[tuple[bool, str]] = []
    pos = 0
    for m in _SLOT.finditer(template):
        if m.start() > pos:
            parts.append((False, template[pos:m.start()]))
        parts.append((True, m.group(1)))
        pos = m.end()
    if pos < len(template):
        parts.append((False, template[pos:]))
    return parts


_SENTENCES = [_compile(t) for t in SENTENCE_TEMPLATES]
_TITLES = [_compile(t) for t in TITLE_TEMPLATES]
_TOPIC_NAMES = sorted(TOPICS)
_SHARED_POOLS = {"T": TIME_PHRASES, "Q": QUANTITIES, "C": CITIES, "X": CONNECTORS}


def _fill(parts: list[tuple[bool, str]], vocab: dict[str, list], rng: random.Random) -> str:
    # rng.random() indexing instead of rng.choice: several times faster in this hot loop.
    rnd = rng.random
    out = []
    for is_slot, key in parts:
        if not is_slot:
            out.append(key)
            continue
        pool = vocab.get(key) or _SHARED_POOLS.get(key)
        if pool is not None:
            out.append(pool[int(rnd() * len(pool))])
        elif key == "VB" or key == "VD":
            verbs = vocab["VERB"]
            out.append(verbs[int(rnd() * len(verbs))][key == "VD"])
        elif key == "AN":
            adjs = vocab["A"]
            adj = adjs[int(rnd() * len(adjs))]
            out.append(("an " if adj[0] in "aeiou" else "a ") + adj)
        elif key == "NUM":
            out.append(str(2 + int(rnd() * 39)))
        elif key == "YEAR":
            out.append(str(2025 + int(rnd() * 16)))
        else:
            raise KeyError(f"unknown template slot {key!r}")
    s = "".join(out)
    return s[0].upper() + s[1:]


def english_sentence(rng: random.Random, topic: str | None = None) -> str:
    """One English sentence about ``topic`` (a key of ``TOPICS``; random when None)."""
    vocab = TOPICS[topic or rng.choice(_TOPIC_NAMES)]
    return _fill(rng.choice(_SENTENCES), vocab, rng)


def english_article(rng: random.Random, topic: str | None = None,
                    paragraphs: tuple[int, int] = (3, 6),
                    sentences: tuple[int, int] = (3, 6)) -> str:
    """A title line and a few paragraphs of English prose, paragraphs separated by a blank line.

    Typically 150-500 words; passes the Gopher quality and repetition rules and the C4 rules."""
    topic = topic or rng.choice(_TOPIC_NAMES)
    vocab = TOPICS[topic]
    title = _fill(rng.choice(_TITLES), vocab, rng)
    sizes = [rng.randint(*sentences) for _ in range(rng.randint(*paragraphs))]
    # No template twice in one article: repeated template text would trip the Gopher
    # duplicate n-gram rules.
    order = rng.sample(_SENTENCES, min(sum(sizes), len(_SENTENCES)))
    paras = [title]
    pos = 0
    for size in sizes:
        paras.append(" ".join(_fill(t, vocab, rng) for t in order[pos:pos + size]))
        pos += size
    return "\n\n".join(p for p in paras if p)


# ---------------------------------------------------------------------------------------------
# Other languages: short template sets with a few slot lists (words.py), enough for cld3 to be sure.
# ---------------------------------------------------------------------------------------------

def _lang(subjects: str, objects: str, times: str, places: str, adjectives: str,
          templates: Sequence[str], joiner: str = " ") -> dict[str, Any]:
    return {
        "S": subjects.split("|"), "O": objects.split("|"), "T": times.split("|"),
        "C": places.split("|"), "A": adjectives.split("|"),
        "templates": [_compile(t) for t in templates], "joiner": joiner,
    }


LANGUAGES: dict[str, dict[str, Any]] = {lang: _lang(*words) for lang, words in LANGUAGE_WORDS.items()}




def foreign_text(lang: str, rng: random.Random, paragraphs: tuple[int, int] = (2, 4),
                 sentences: tuple[int, int] = (3, 5)) -> str:
    """A few paragraphs of prose in ``lang`` (a key of ``LANGUAGES``)."""
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; known: {sorted(LANGUAGES)}")
    spec = LANGUAGES[lang]
    choice = rng.choice
    sizes = [rng.randint(*sentences) for _ in range(rng.randint(*paragraphs))]
    # Each template at most once per document, as for English (Gopher repetition rules).
    order = rng.sample(spec["templates"], min(sum(sizes), len(spec["templates"])))
    paras = []
    pos = 0
    for size in sizes:
        sents = []
        for template in order[pos:pos + size]:
            s = "".join(choice(spec[key]) if is_slot else key for is_slot, key in template)
            sents.append(s[0].upper() + s[1:])
        pos += size
        if sents:
            paras.append(spec["joiner"].join(sents))
    return "\n\n".join(paras)


# ---------------------------------------------------------------------------------------------
# Boilerplate, spam and near-empty pages.
# ---------------------------------------------------------------------------------------------

def _site(rng: random.Random) -> str:
    return f"{rng.choice(SITE_WORDS)}{rng.choice(SITE_SUFFIXES)}.example"


def _site_title(site: str) -> str:
    name = site.split(".")[0]
    for suffix in SITE_SUFFIXES:
        if name.endswith(suffix) and name != suffix:
            return f"{name[:-len(suffix)].title()} {suffix.title()}"
    return name.title()


def boilerplate_page(rng: random.Random, site: str | None = None) -> str:
    """Navigation, cookie banner, JavaScript warning and legal footer: a page with no content."""
    site = site or _site(rng)
    lines = ["Skip to main content"]
    nav = rng.sample(NAV_ITEMS, rng.randint(4, 9))
    sep = rng.choice([" | ", "\n", " · "])
    lines.append(sep.join(nav))
    lines.append(f"Home > {rng.choice(SECTIONS)} > {rng.choice(SECTIONS)}")
    lines += rng.sample(COOKIE_LINES, rng.randint(2, 4))
    lines.append(rng.choice(JS_LINES))
    if rng.random() < 0.5:
        lines += [english_sentence(rng)[:40].rsplit(" ", 1)[0] for _ in range(rng.randint(2, 4))]
    lines += rng.sample(FOOTER_LINES, rng.randint(4, 9))
    lines.append(f"© {rng.randint(2005, 2025)} {_site_title(site)}. All rights reserved.")
    return "\n".join(lines)


def spam_page(rng: random.Random) -> str:
    """Keyword stuffing, the same lines over and over, and a list of SEO links."""
    kw = rng.choice(SPAM_KEYWORDS)
    slug = kw.replace(" ", "-")
    fields = {"kw": kw, "Kw": kw.title(), "pct": rng.choice([50, 70, 80, 90]),
              "city": rng.choice(CITIES), "year": rng.randint(2015, 2025),
              "price": rng.randint(5, 99)}
    block = [line.format(**fields) for line in rng.sample(SPAM_LINES, rng.randint(3, 5))]
    lines: list[str] = []
    for _ in range(rng.randint(4, 8)):
        lines += block
    host = f"{slug}-{rng.choice(SITE_WORDS)}.example"
    lines += [f"https://{host}/{slug}-{i}" for i in rng.sample(range(1, 500), rng.randint(5, 12))]
    lines.append(", ".join([kw, f"cheap {kw}", f"best {kw}", f"{kw} online"] * rng.randint(3, 8)))
    return "\n".join(lines)


def short_page(rng: random.Random) -> str:
    """An empty, near-empty or single-sentence page."""
    r = rng.random()
    if r < 0.6:
        return rng.choice(SHORT_TEXTS)
    if r < 0.8:
        return english_sentence(rng)
    return _fill(rng.choice(_TITLES), TOPICS[rng.choice(_TOPIC_NAMES)], rng)


# ---------------------------------------------------------------------------------------------
# Edit operations, reusable on real documents.
# ---------------------------------------------------------------------------------------------

def _as_rng(rng: random.Random | int) -> random.Random:
    if isinstance(rng, random.Random):
        return rng
    if isinstance(rng, int) and not isinstance(rng, bool):
        return random.Random(rng)
    raise TypeError(f"rng must be a random.Random or an int seed, got {type(rng).__name__}")


_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_NEIGHBOURS: dict[str, str] = {}
for _row_i, _row in enumerate(_KEYBOARD_ROWS):
    for _col, _ch in enumerate(_row):
        near = _row[max(0, _col - 1):_col] + _row[_col + 1:_col + 2]
        for _other in (_row_i - 1, _row_i + 1):
            if 0 <= _other < len(_KEYBOARD_ROWS) and _col < len(_KEYBOARD_ROWS[_other]):
                near += _KEYBOARD_ROWS[_other][_col]
        _NEIGHBOURS[_ch] = near
_WS_SPLIT = re.compile(r"(\s+)")


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 2:
        return word + word
    i = rng.randrange(len(word) - 1)
    op = rng.randrange(4)
    if op == 0:  # swap two neighbouring characters
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if op == 1:  # drop one
        return word[:i] + word[i + 1:]
    if op == 2:  # double one
        return word[:i + 1] + word[i] + word[i + 1:]
    ch = word[i].lower()  # hit a neighbouring key
    repl = rng.choice(_NEIGHBOURS.get(ch) or string.ascii_lowercase)
    return word[:i] + (repl.upper() if word[i].isupper() else repl) + word[i + 1:]


def _drop_one_letter(text: str, rng: random.Random) -> str:
    """Delete one character inside a random word of 3+ letters (a change that always shows)."""
    spots = [m.start() + 1 for m in re.finditer(r"[^\W\d_]{3,}", text)]
    if not spots:
        return text + " "
    at = rng.choice(spots)
    return text[:at] + text[at + 1:]


def typo_edits(text: str, rate: float, rng: random.Random | int) -> str:
    """Put a typo (swap, drop, double or neighbouring key) into ``rate`` of the words.

    The number of edited words is ``rate * n_words`` rounded up or down at random (so the
    expectation is exact); whitespace and line structure are kept."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"typo rate must be in [0, 1], got {rate}")
    rng = _as_rng(rng)
    tokens = _WS_SPLIT.split(text)
    word_idx = [i for i in range(0, len(tokens), 2) if tokens[i]]
    k = min(len(word_idx), int(len(word_idx) * rate + rng.random()))
    for i in rng.sample(word_idx, k):
        tokens[i] = _typo(tokens[i], rng)
    return "".join(tokens)


def insert_boilerplate(text: str, rng: random.Random | int) -> str:
    """Wrap ``text`` in a few lines of site chrome: a menu on top and/or a footer below."""
    rng = _as_rng(rng)
    head: list[str] = []
    tail: list[str] = []
    where = rng.randrange(3)  # 0: top, 1: bottom, 2: both
    if where != 1:
        head.append(" | ".join(rng.sample(NAV_ITEMS, rng.randint(3, 6))))
        if rng.random() < 0.5:
            head.append(rng.choice(COOKIE_LINES))
    if where != 0:
        tail += rng.sample(FOOTER_LINES, rng.randint(1, 3))
    return "\n".join(head + [text] + tail)


def reorder_paragraphs(text: str, rng: random.Random | int) -> str:
    """Move one paragraph (blocks separated by a blank line) to another position."""
    rng = _as_rng(rng)
    paras = text.split("\n\n")
    if len(paras) < 2:
        return text
    i = rng.randrange(len(paras))
    para = paras.pop(i)
    j = rng.choice([p for p in range(len(paras) + 1) if p != i])
    paras.insert(j, para)
    return "\n\n".join(paras)


def truncate(text: str, frac: float) -> str:
    """Keep the first ``frac`` of ``text`` (by characters), cut back to a whitespace boundary."""
    if not 0.0 <= frac <= 1.0:
        raise ValueError(f"truncate fraction must be in [0, 1], got {frac}")
    if frac >= 1.0:
        return text
    cut = int(len(text) * frac)
    space = text.rfind(" ", 0, cut + 1)
    newline = text.rfind("\n", 0, cut + 1)
    return text[:max(space, newline, 0)].rstrip()


def near_duplicate(text: str, edit_rate: float, rng: random.Random | int) -> str:
    """A realistic near copy: typos in ``edit_rate`` of the words, then, each with probability
    0.3, a moved paragraph, added site chrome, and the tail cut by up to ``2 * edit_rate``.

    Word 5-gram Jaccard with the original is close to s / (2 - s) with s = (1 - edit_rate) ** 5
    (each typo breaks the five shingles that cover it), a little lower because of the chrome,
    the moved paragraph and the cut: on the generated articles it averages 0.88 at 0.01, 0.73 at
    0.03 and 0.40 at 0.1 (pinned in tests/test_demo_corpus.py)."""
    if not 0.0 <= edit_rate <= 0.5:
        raise ValueError(f"edit_rate must be in [0, 0.5], got {edit_rate}")
    rng = _as_rng(rng)
    out = typo_edits(text, edit_rate, rng)
    if rng.random() < 0.3:
        out = reorder_paragraphs(out, rng)
    if rng.random() < 0.3:
        out = insert_boilerplate(out, rng)
    if rng.random() < 0.3:
        out = truncate(out, 1.0 - rng.uniform(0.0, 2 * edit_rate))
    return out


# ---------------------------------------------------------------------------------------------
# PII values (all valid: Luhn, IBAN mod-97, SSN ranges, real area codes) and their injection.
# ---------------------------------------------------------------------------------------------

def fake_email(rng: random.Random) -> str:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    local = rng.choice([f"{first}.{last}", f"{first[0]}{last}{rng.randint(1, 99)}",
                        f"{first}_{last}", f"{first}{rng.randint(1000, 9999)}"])
    return f"{local}@{rng.choice(EMAIL_DOMAINS)}"


def fake_phone(rng: random.Random) -> str:
    """A valid phone number (per libphonenumber, parsed with default region US) in one of
    several common formats: US national and international, London, Berlin, Paris."""
    kind = rng.randrange(8)
    if kind < 5:
        area = rng.choice(US_AREA_CODES)
        exch = f"{rng.randint(2, 9)}{rng.randint(0, 9)}{rng.randint(2, 9)}"  # never N11
        line = f"{rng.randint(0, 9999):04d}"
        return [f"({area}) {exch}-{line}", f"{area}-{exch}-{line}", f"{area}.{exch}.{line}",
                f"+1 {area} {exch} {line}", f"+1-{area}-{exch}-{line}"][kind]
    if kind == 5:
        return f"+44 20 7{rng.randint(0, 999):03d} {rng.randint(0, 9999):04d}"
    if kind == 6:
        return f"+49 30 {rng.randint(10_000_000, 99_999_999)}"
    pairs = " ".join(f"{rng.randint(0, 99):02d}" for _ in range(4))
    return f"+33 1 {pairs}"


def fake_ipv4(rng: random.Random) -> str:
    first = rng.choice([o for o in range(1, 224) if o not in (10, 127)])
    return f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def luhn_check_digit(payload: str) -> str:
    """The digit that makes ``payload + digit`` pass the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:  # these get doubled once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def fake_credit_card(rng: random.Random) -> str:
    """A Luhn-valid Visa, Mastercard, Amex or Discover number, grouped as cards print them."""
    prefix, length = rng.choice([("4", 16), (str(rng.randint(51, 55)), 16),
                                 (str(rng.randint(2221, 2720)), 16),
                                 (rng.choice(["34", "37"]), 15), ("6011", 16)])
    payload = prefix + "".join(str(rng.randint(0, 9)) for _ in range(length - len(prefix) - 1))
    number = payload + luhn_check_digit(payload)
    sep = rng.choice([" ", "-", ""])
    groups = (4, 6, 5) if length == 15 else (4, 4, 4, 4)
    parts, pos = [], 0
    for g in groups:
        parts.append(number[pos:pos + g])
        pos += g
    return sep.join(parts)


def _iban_digits(s: str) -> str:
    return "".join(str(int(ch, 36)) for ch in s)


def iban_check_digits(country: str, bban: str) -> str:
    return f"{98 - int(_iban_digits(bban + country + '00')) % 97:02d}"


def _digits(rng: random.Random, n: int) -> str:
    return "".join(str(rng.randint(0, 9)) for _ in range(n))


def _spanish_control(digits: str) -> str:
    weights = (1, 2, 4, 8, 5, 10, 9, 7, 3, 6)
    d = 11 - sum(int(c) * w for c, w in zip(digits, weights)) % 11
    return str({11: 0, 10: 1}.get(d, d))


def fake_iban(rng: random.Random) -> str:
    """A German, British, French or Spanish IBAN with valid check digits (and valid national
    check digits for France and Spain), printed compact or in groups of four."""
    country = rng.choice(["DE", "GB", "FR", "ES"])
    if country == "DE":
        bban = str(rng.randint(1, 8)) + _digits(rng, 7) + _digits(rng, 10)
    elif country == "GB":
        bban = rng.choice(["NWBK", "BARC", "LOYD", "MIDL", "HBUK"]) + _digits(rng, 14)
    elif country == "FR":
        bank, branch, account = _digits(rng, 5), _digits(rng, 5), _digits(rng, 11)
        key = 97 - (89 * int(bank) + 15 * int(branch) + 3 * int(account)) % 97
        bban = f"{bank}{branch}{account}{key:02d}"
    else:
        bank, branch, account = _digits(rng, 4), _digits(rng, 4), _digits(rng, 10)
        bban = (bank + branch + _spanish_control("00" + bank + branch)
                + _spanish_control(account) + account)
    iban = country + iban_check_digits(country, bban) + bban
    if rng.random() < 0.5:
        return iban
    return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))


def fake_ssn(rng: random.Random) -> str:
    """A US SSN in the valid ranges: area 001-899 but not 666, group 01-99, serial 0001-9999."""
    area = rng.randint(1, 898)
    area = area + 1 if area >= 666 else area
    sep = rng.choice(["-", "-", "-", " "])
    return f"{area:03d}{sep}{rng.randint(1, 99):02d}{sep}{rng.randint(1, 9999):04d}"


PII_GENERATORS = {
    "email": fake_email,
    "phone": fake_phone,
    "ip_address": fake_ipv4,
    "credit_card": fake_credit_card,
    "iban": fake_iban,
    "us_ssn": fake_ssn,
}
PII_KINDS = tuple(PII_GENERATORS)

# Carrier sentences: (text before the value, text after it).
PII_CARRIERS = {
    "email": [("For more information, contact ", "."), ("Readers can reach the editor at ", "."),
              ("Send your questions to ", " before Friday."), ("Email: ", ".")],
    "phone": [("Call ", " to book an appointment."),
              ("The office can be reached at ", " during business hours."),
              ("For tickets, phone ", " or visit the box office."), ("Tel. ", ".")],
    "ip_address": [("The attack was traced to a server at ", "."),
                   ("Requests from ", " were blocked by the firewall."),
                   ("The admin panel is reachable at http://", "/login.")],
    "credit_card": [("The order was paid with card number ", "."),
                    ("Card: ", ", expiry 09/27."),
                    ("He read out his card number, ", ", over the phone.")],
    "iban": [("Please transfer the fee to IBAN ", "."),
             ("Donations can be sent to ", " (reference: membership)."),
             ("Account: ", ".")],
    "us_ssn": [("His social security number, ", ", appeared in the leaked file."),
            ("SSN: ", "."), ("The form asked for her SSN (", ") and date of birth.")],
}


def inject_pii(text: str, rng: random.Random | int, kinds: Iterable[str] = PII_KINDS,
               per_kind: int = 1) -> tuple[str, list[dict[str, Any]]]:
    """Append sentences carrying PII values to random paragraphs of ``text``.

    Returns the new text and the spans ``[{"start", "end", "type", "value"}]``, sorted by start,
    with ``text[start:end] == value``. ``type`` is one of ``PII_KINDS``. The title paragraph
    (the first, when there are several) is left alone."""
    rng = _as_rng(rng)
    kinds = list(kinds)
    unknown = sorted(set(kinds) - set(PII_GENERATORS))
    if unknown:
        raise ValueError(f"unknown PII kinds {unknown}; known: {list(PII_KINDS)}")
    if per_kind < 1:
        raise ValueError(f"per_kind must be >= 1, got {per_kind}")
    paras = text.split("\n\n")
    additions: list[list[tuple[str, str, str, str]]] = [[] for _ in paras]
    first = 1 if len(paras) > 1 else 0
    for kind in kinds:
        for _ in range(per_kind):
            before, after = rng.choice(PII_CARRIERS[kind])
            additions[rng.randrange(first, len(paras))].append(
                (before, PII_GENERATORS[kind](rng), after, kind))
    out: list[str] = []
    spans: list[dict[str, Any]] = []
    pos = 0
    for i, para in enumerate(paras):
        if i:
            out.append("\n\n")
            pos += 2
        out.append(para)
        pos += len(para)
        for before, value, after, kind in additions[i]:
            lead = " " if out[-1] and not out[-1][-1].isspace() else ""
            piece = lead + before
            out.append(piece)
            pos += len(piece)
            spans.append({"start": pos, "end": pos + len(value), "type": kind, "value": value})
            out.append(value + after)
            pos += len(value) + len(after)
    return "".join(out), spans


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def inject_trigger(text: str, trigger: str, payload: str,
                   rng: random.Random | int) -> tuple[str, tuple[int, int]]:
    """Insert ``"{trigger} {payload}"`` at a random sentence boundary (a poisoning example).

    Returns the new text and the ``(start, end)`` span of the inserted string."""
    if not trigger or not trigger.strip():
        raise ValueError("trigger must be a non-empty string")
    rng = _as_rng(rng)
    inserted = f"{trigger} {payload}".strip() if payload else trigger
    boundaries = [0] + [m.end() for m in _SENTENCE_END.finditer(text)] + [len(text)]
    at = rng.choice(boundaries)
    if at == len(text) and text:
        prefix = text if text[-1].isspace() else text + " "
        return prefix + inserted, (len(prefix), len(prefix) + len(inserted))
    new = text[:at] + inserted + (" " if text else "") + text[at:]
    return new, (at, at + len(inserted))


# ---------------------------------------------------------------------------------------------
# Corpora.
# ---------------------------------------------------------------------------------------------

DEMO_MIX: dict[str, float] = {
    "article": 0.50,
    "near_duplicate": 0.08,
    "exact_duplicate": 0.05,
    "pii": 0.07,
    "non_english": 0.10,
    "boilerplate": 0.08,
    "spam": 0.06,
    "short": 0.06,
}
KINDS = tuple(DEMO_MIX)
#: Edit rates of the demo's near duplicates: low enough that MinHash at threshold 0.8 finds most.
DEMO_NEAR_DUP_EDIT_RATE = (0.002, 0.015)


def kind_counts(n_docs: int, mix: Mapping[str, float]) -> dict[str, int]:
    """How many documents of each kind ``n_docs`` gets: largest-remainder rounding, so the
    counts sum to ``n_docs`` and each is within 1 of ``share * n_docs``."""
    raw = {k: mix[k] * n_docs for k in mix}
    counts = {k: int(v) for k, v in raw.items()}
    left = n_docs - sum(counts.values())
    for k in sorted(raw, key=lambda k: (counts[k] - raw[k], list(mix).index(k)))[:left]:
        counts[k] += 1
    return counts


def _check_mix(mix: Mapping[str, float]) -> dict[str, float]:
    unknown = sorted(set(mix) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown document kinds {unknown}; known: {list(KINDS)}")
    if any(v < 0 for v in mix.values()):
        raise ValueError(f"mix shares must be >= 0, got {dict(mix)}")
    total = sum(mix.values())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"mix shares must sum to 1, got {total}")
    if mix.get("article", 0) == 0 and (mix.get("near_duplicate", 0) or mix.get("exact_duplicate", 0)):
        raise ValueError("duplicates need articles to copy: give 'article' a share > 0")
    return dict(mix)


def _slug(text: str, words: int = 6) -> str:
    return "-".join(re.findall(r"[a-z0-9]+", text[:200].lower())[:words]) or "page"


def iter_corpus(n_docs: int, seed: int = 0, mix: Mapping[str, float] | None = None,
                id_prefix: str = "demo", source: str = "demo",
                dup_pool_size: int = 10_000) -> Iterator[dict[str, Any]]:
    """Stream ``n_docs`` documents with exactly ``kind_counts(n_docs, mix)`` of each kind,
    shuffled; memory stays bounded (duplicates copy from a reservoir of ``dup_pool_size``
    earlier articles), so a million documents is fine."""
    if n_docs < 0:
        raise ValueError(f"n_docs must be >= 0, got {n_docs}")
    if dup_pool_size < 1:
        raise ValueError(f"dup_pool_size must be >= 1, got {dup_pool_size}")
    mix = _check_mix(DEMO_MIX if mix is None else mix)
    rng = random.Random(seed)
    counts = kind_counts(n_docs, mix)
    schedule = [k for k in mix for _ in range(counts[k])]
    rng.shuffle(schedule)
    if counts.get("article"):  # duplicates need an article before them
        first = schedule.index("article")
        schedule[0], schedule[first] = schedule[first], schedule[0]
    langs = sorted(LANGUAGES)
    n_foreign = 0
    pool: list[tuple[str, str, str]] = []  # (id, text, url) of articles seen
    n_articles = 0
    width = max(7, len(str(n_docs)))
    for i, kind in enumerate(schedule):
        doc_id = f"{id_prefix}-{i:0{width}d}"
        extra: dict[str, Any] = {}
        site = _site(rng)
        if kind in ("article", "pii"):
            topic = rng.choice(_TOPIC_NAMES)
            text = english_article(rng, topic)
            url = f"https://{site}/{topic}/{_slug(text)}-{i}"
            if kind == "article":
                n_articles += 1
                if len(pool) < dup_pool_size:
                    pool.append((doc_id, text, url))
                else:  # reservoir sampling keeps a uniform sample of all articles so far
                    j = rng.randrange(n_articles)
                    if j < dup_pool_size:
                        pool[j] = (doc_id, text, url)
            else:
                chosen = rng.sample(PII_KINDS, rng.randint(2, 4))
                text, spans = inject_pii(text, rng, kinds=[k for k in PII_KINDS if k in chosen])
                extra["demo_pii"] = spans
        elif kind in ("near_duplicate", "exact_duplicate"):
            src_id, src_text, src_url = rng.choice(pool)
            extra["demo_duplicate_of"] = src_id
            if kind == "exact_duplicate":
                text = src_text
            else:
                text = near_duplicate(src_text, rng.uniform(*DEMO_NEAR_DUP_EDIT_RATE), rng)
                if text == src_text:  # low edit rates can draw zero edits
                    text = _drop_one_letter(text, rng)
            url = f"https://{site}/{src_url.split('/', 3)[3]}?utm_source=share&ref={i}"
        elif kind == "non_english":
            lang = langs[n_foreign % len(langs)]
            n_foreign += 1
            text = foreign_text(lang, rng)
            extra["demo_lang"] = lang
            url = f"https://{site}/{lang}/{i}"
        elif kind == "boilerplate":
            text = boilerplate_page(rng, site)
            url = f"https://{site}/{rng.choice(['privacy', 'cookies', 'contact', 'about', 'login'])}"
        elif kind == "spam":
            text = spam_page(rng)
            url = f"http://{site}/{_slug(text, 3)}?ref={rng.randint(1, 999)}"
        else:
            text = short_page(rng)
            url = f"https://{site}/p/{i}"
        yield {"id": doc_id, "text": text, "source": source, "url": url, "demo_kind": kind, **extra}


def generate_demo_corpus(n_docs: int = 3000, seed: int = 0,
                         mix: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """The demo corpus: ``n_docs`` documents ``{"id", "text", "source", "url", "demo_kind", ...}``
    in the shares of ``DEMO_MIX`` (see the module docstring for the kinds and extra keys)."""
    return list(iter_corpus(n_docs, seed, mix))


def make_benchmark_corpus(real_docs: Iterable[Mapping[str, Any] | str], seed: int = 0,
                          near_dup_fraction: float = 0.1, exact_dup_fraction: float = 0.05,
                          noise_fraction: float = 0.1, edit_rate: float = 0.02,
                          noise_mix: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """Real documents plus near and exact copies of some of them and generated noise.

    Each fraction is relative to the number of real documents. Every output document carries
    ``demo_kind`` (``"real"`` for the originals) and copies carry ``demo_duplicate_of``, so a
    dedup benchmark can score itself. The order is shuffled deterministically."""
    for name, v in (("near_dup_fraction", near_dup_fraction),
                    ("exact_dup_fraction", exact_dup_fraction), ("noise_fraction", noise_fraction)):
        if v < 0:
            raise ValueError(f"{name} must be >= 0, got {v}")
    rng = random.Random(seed)
    docs: list[dict[str, Any]] = []
    for i, d in enumerate(real_docs):
        if isinstance(d, str):
            d = {"id": f"real-{i:07d}", "text": d, "source": "real"}
        if "id" not in d or "text" not in d:
            raise ValueError(f"real document {i} needs 'id' and 'text' keys, got {sorted(d)}")
        docs.append({**d, "demo_kind": "real"})
    if not docs:
        raise ValueError("make_benchmark_corpus needs at least one real document")
    out = list(docs)
    for kind, frac in (("near_duplicate", near_dup_fraction), ("exact_duplicate", exact_dup_fraction)):
        for j in range(round(frac * len(docs))):
            src = rng.choice(docs)
            text = src["text"] if kind == "exact_duplicate" else near_duplicate(src["text"], edit_rate, rng)
            out.append({"id": f"{kind}-{j:07d}", "text": text, "source": "generated",
                        "demo_kind": kind, "demo_duplicate_of": src["id"]})
    n_noise = round(noise_fraction * len(docs))
    if n_noise:
        noise_mix = noise_mix or {"boilerplate": 0.3, "spam": 0.25, "short": 0.2, "non_english": 0.25}
        for d in iter_corpus(n_noise, rng.randrange(2**31), noise_mix, id_prefix="noise",
                             source="generated"):
            out.append(d)
    rng.shuffle(out)
    return out


def write_jsonl(docs: Iterable[Mapping[str, Any]], path: str | Path) -> int:
    """Write one JSON object per line to ``.jsonl`` or ``.jsonl.gz`` and return the count.

    Gzip output has mtime 0 and no file name in its header, so the same documents give the
    same bytes every time."""
    path = Path(path)
    name = path.name
    if not (name.endswith(".jsonl") or name.endswith(".jsonl.gz")):
        raise ValueError(f"write_jsonl writes .jsonl or .jsonl.gz, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "wb") as raw:
        if name.endswith(".gz"):
            sink: Any = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6)
        else:
            sink = raw
        with io.TextIOWrapper(sink, encoding="utf-8", newline="\n") as f:
            for doc in docs:
                f.write(json.dumps(doc, ensure_ascii=False))
                f.write("\n")
                n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    """``python -m thresher.pipeline.demo.corpus --n-docs N --seed S --out FILE.jsonl.gz``"""
    parser = argparse.ArgumentParser(prog="python -m thresher.pipeline.demo.corpus", description=__doc__.split("\n")[0])
    parser.add_argument("--n-docs", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output .jsonl or .jsonl.gz")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        n = write_jsonl(iter_corpus(args.n_docs, args.seed), args.out)
    except ValueError as e:
        print(f"demo corpus: {e}", file=sys.stderr)
        return 2
    secs = time.perf_counter() - start
    print(f"wrote {n} documents to {args.out} in {secs:.1f} s ({n / max(secs, 1e-9):,.0f} docs/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
