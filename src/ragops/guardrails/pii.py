"""PII detection and redaction: text in → spans out, pure and offline.

Pattern entities are found by a regular expression *and* a validation a random string of the same
shape fails, so that ordinary numbers (years, ports, order numbers, versions) are not flagged:

* ``CREDIT_CARD``: 13–19 digits (12 for Maestro), optionally grouped by spaces or dashes, a card
  network's leading digit, and the Luhn checksum;
* ``IBAN_CODE``: the country's registered length and the ISO 13616 mod-97 checksum (spaces and
  lower case accepted);
* ``US_SSN``: ``AAA-GG-SSSS`` (dashes or spaces; nine bare digits only next to "SSN" or "social
  security") without the numbers the SSA never issues: area 000, 666 or 9xx, group 00, serial 0000;
* ``EMAIL_ADDRESS``; ``IP_ADDRESS``: IPv4 and IPv6, parsed by :mod:`ipaddress`;
* ``PHONE_NUMBER``: 7–15 digits in a phone layout. International (``+41 …``, ``00…``), parenthesised
  area codes, North American ``NXX-NXX-XXXX`` and extensions count on their own; a plain group of
  digits (``467 3395``) only next to a word such as "phone", "call", "fax" or "mobile".

``PERSON`` names are found by a token classifier (logistic regression over word shape, affixes,
the neighbouring words, a list of name tokens, a list of words people write in lower case, and a list
of place / organisation tokens) trained by ``benchmarks/train_person_detector.py``
on the TRAIN split of the presidio-research synthetic set (MIT licence) and shipped as
``person_model.json`` beside this file; inference is a dictionary lookup per feature, so scikit-learn
is not needed at run time and nothing is downloaded. BENCHMARKS.md §11 has the measured recall,
precision and latency.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ragops.errors import RagopsError

PII_ENTITIES: tuple[str, ...] = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
    "PERSON",
)

PERSON_MODEL_PATH = Path(__file__).with_name("person_model.json")


class UnknownPiiEntity(RagopsError, ValueError):
    """``detect_pii(entities=...)`` named an entity type this module does not detect."""


class PersonModelError(RagopsError, RuntimeError):
    """The shipped person-name model is missing or unreadable (a broken install)."""


@dataclass(frozen=True)
class PiiSpan:
    """One detected entity: ``text[start:end] == span.text``; ``score`` in (0, 1]."""

    entity_type: str
    start: int
    end: int
    text: str
    score: float


# When two detections overlap, the one with the higher priority wins (then the higher score, then
# the longer). Checksummed types first: a Luhn-valid card is not a phone number even though its digit
# groups look like one, and a name token inside an e-mail address is part of the address.
_PRIORITY = {
    "EMAIL_ADDRESS": 6,
    "IBAN_CODE": 6,
    "CREDIT_CARD": 5,
    "IP_ADDRESS": 5,
    "US_SSN": 4,
    "PHONE_NUMBER": 3,
    "PERSON": 1,
}


# --------------------------------------------------------------------------------------------------
# Checksums
# --------------------------------------------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of a string of digits; separators must be removed first."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# IBAN lengths by country, from the SWIFT IBAN registry (release 98, 2024) plus the experimental
# national IBANs Presidio also accepts; a wrong length fails before the checksum is even computed.
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
}  # fmt: skip


def iban_valid(iban: str) -> bool:
    """ISO 13616: known country, its registered length, and (rearranged as digits) mod 97 == 1.

    Spaces are ignored and letters may be lower case (people type them so)."""
    s = iban.replace(" ", "").upper()
    if len(s) < 5 or not s.isalnum() or not s.isascii():
        return False
    if IBAN_LENGTHS.get(s[:2]) != len(s) or not s[2:4].isdigit():
        return False
    rearranged = s[4:] + s[:4]
    # int(c, 36) maps 0-9 to themselves and A-Z to 10-35, which is exactly the IBAN letter encoding.
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """The numbers the SSA never assigns (including since the 2011 randomisation): area 000, 666 and
    900–999, group 00, serial 0000."""
    return not (
        area == "000" or area == "666" or area[0] == "9" or group == "00" or serial == "0000"
    )


# --------------------------------------------------------------------------------------------------
# Pattern recognisers
# --------------------------------------------------------------------------------------------------

_EMAIL_RE = re.compile(
    r"(?<![\w.%+-])[\w.%+-]+@[^\W_](?:[\w-]*[^\W_])?(?:\.[^\W_](?:[\w-]*[^\W_])?)*\.[^\W\d_]{2,}(?![\w-])"
)

# Digits in groups separated by a single space or dash, not glued to other digits or dashes.
_CARD_RE = re.compile(r"(?<![\d-])\d(?:[ -]?\d){11,18}(?![\d]|-\d)")

# Two letters, two check digits, then the BBAN (optionally in groups of four); the exact length is
# settled against IBAN_LENGTHS below, because a greedy match may run into the following word.
_IBAN_RE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){10,30}")

_SSN_RE = re.compile(r"(?<![\d-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\d]|-\d)")
_SSN_BARE_RE = re.compile(r"(?<![\d-])(\d{3})(\d{2})(\d{4})(?![\d]|-\d)")
_SSN_CONTEXT_RE = re.compile(r"\b(?:ssn|ssns|social\s+security|ss#|ss\s+no)\b", re.IGNORECASE)

_IPV4_RE = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
_IPV6_RE = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{0,4})(?![\w:]|\.\d)"
)

# A phone candidate: optional "+", then digits, spaces/tabs, dots, dashes and parentheses, ending in
# a digit, then an optional extension. No newline inside, so the lines of a signature stay apart.
_PHONE_RE = re.compile(
    r"(?<![\w+.-])(?:\+|\(\+?)?\d[\d \t().-]{4,22}\d(?:\s?(?:x|ext\.?|extension)\s?\d{1,6})?(?![\w]|[.-]\d)",
    re.IGNORECASE,
)
_PHONE_NANP_RE = re.compile(
    r"^(?:(?:\+?1|001)[ .-]?)?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}(?:\s?(?:x|ext\.?|extension)\s?\d{1,6})?$",
    re.IGNORECASE,
)
_PHONE_PARENS_RE = re.compile(r"^\(\+?\d{1,4}\)")
_PHONE_EXT_RE = re.compile(r"(?:x|ext\.?|extension)\s?\d{1,6}$", re.IGNORECASE)
_DATE_RE = re.compile(r"^(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4})(?:[ T]\d{1,2})?$")
# Words that, shortly before or after a bare group of digits, make it a phone number. Generic
# telephony words, not the benchmark's templates.
_PHONE_CONTEXT_RE = re.compile(
    r"\b(?:phone|phones|telephone|tel|tél|cell|cellphone|mobile|mob|fax|desk|office|home|work|"
    r"call|calls|called|calling|ring|dial|text|texts|sms|whatsapp|contact|reach|number|no|"
    r"message|messages|answering|voicemail|hotline|extension|ext)\b",
    re.IGNORECASE,
)
_PHONE_CONTEXT_BEFORE = 40  # characters before the number (e.g. "Please have the manager call me at")
_PHONE_CONTEXT_AFTER = 12  # characters after it (e.g. "416 60 039 office")


def _emails(text: str) -> Iterable[PiiSpan]:
    for m in _EMAIL_RE.finditer(text):
        yield PiiSpan("EMAIL_ADDRESS", m.start(), m.end(), m.group(), 1.0)


def _card_network_ok(digits: str) -> bool:
    """A leading digit some card network issues with this length: 2 (Mastercard 2-series, JCB 2131),
    3 (Amex, Diners, JCB), 4 (Visa), 5 (Mastercard, Maestro), 6 (Discover, UnionPay, Maestro), and
    JCB's 1800. Maestro is the only network with 12-digit cards (IIN 50, 56–69)."""
    n = len(digits)
    if n == 12:
        return digits[:2] == "50" or "56" <= digits[:2] <= "69"
    return digits[0] in "23456" or digits.startswith("1800")


def _cards(text: str) -> Iterable[PiiSpan]:
    for m in _CARD_RE.finditer(text):
        raw = m.group()
        digits = raw.replace(" ", "").replace("-", "")
        # Mixed separators ("1234-5678 9012") are not how anyone writes a card number.
        if " " in raw and "-" in raw:
            continue
        if 12 <= len(digits) <= 19 and _card_network_ok(digits) and luhn_valid(digits):
            yield PiiSpan("CREDIT_CARD", m.start(), m.end(), raw, 1.0)


def _ibans(text: str) -> Iterable[PiiSpan]:
    for m in _IBAN_RE.finditer(text):
        raw = m.group()
        length = IBAN_LENGTHS.get(raw[:2].upper())
        if length is None:
            continue
        # Take exactly `length` alphanumerics from the start; the IBAN must end on a word boundary.
        count = 0
        end = None
        for i, ch in enumerate(raw):
            if ch != " ":
                count += 1
                if count == length:
                    end = i + 1
                    break
        if end is None:
            continue
        abs_end = m.start() + end
        if abs_end < len(text) and text[abs_end].isalnum():
            continue
        candidate = raw[:end]
        if iban_valid(candidate):
            yield PiiSpan("IBAN_CODE", m.start(), abs_end, candidate, 1.0)


def _ssns(text: str) -> Iterable[PiiSpan]:
    for m in _SSN_RE.finditer(text):
        area, _, group, serial = m.groups()
        if ssn_valid(area, group, serial):
            yield PiiSpan("US_SSN", m.start(), m.end(), m.group(), 0.85)
    # Nine bare digits are as likely an order or account number: only next to the word "SSN".
    for m in _SSN_BARE_RE.finditer(text):
        if ssn_valid(*m.groups()) and _SSN_CONTEXT_RE.search(text, max(0, m.start() - 40), m.start()):
            yield PiiSpan("US_SSN", m.start(), m.end(), m.group(), 0.6)


def _ips(text: str) -> Iterable[PiiSpan]:
    for m in _IPV4_RE.finditer(text):
        try:
            ipaddress.IPv4Address(m.group())  # rejects octets > 255 and leading zeros
        except ValueError:
            continue
        yield PiiSpan("IP_ADDRESS", m.start(), m.end(), m.group(), 0.95)
    if ":" not in text:
        return
    for m in _IPV6_RE.finditer(text):
        cand = m.group()
        try:
            ipaddress.IPv6Address(cand)
        except ValueError:
            continue
        groups = [g for g in re.split(r"[:.]", cand) if g]
        # "a::b" or "::1" parse, but in prose they are C++ scopes or loopback, not someone's address.
        if "::" in cand and (len(groups) < 2 or sum(len(g) for g in groups) < 4):
            continue
        yield PiiSpan("IP_ADDRESS", m.start(), m.end(), cand, 0.95)


def _phone_context(text: str, start: int, end: int) -> bool:
    before = text[max(0, start - _PHONE_CONTEXT_BEFORE) : start]
    after = text[end : end + _PHONE_CONTEXT_AFTER]
    return bool(_PHONE_CONTEXT_RE.search(before) or _PHONE_CONTEXT_RE.search(after))


def _phones(text: str) -> Iterable[PiiSpan]:
    for m in _PHONE_RE.finditer(text):
        raw = m.group().strip()
        start = m.start() + (len(m.group()) - len(m.group().lstrip()))
        end = start + len(raw)
        body = _PHONE_EXT_RE.sub("", raw).strip()
        digits = re.sub(r"\D", "", body)
        if not 7 <= len(digits) <= 15:
            continue
        if raw.count("(") != raw.count(")") or "((" in raw or "))" in raw:
            continue
        if re.search(r"[ .-]{2,}", body.replace(" (", "(").replace(") ", ")")):
            continue  # "1 - 2" or "1..2": a range or an enumeration, not a number someone dials
        if _DATE_RE.match(body):
            continue
        if re.fullmatch(r"\d{3}-\d{2}-\d{4}", body):
            continue  # the SSN layout; no numbering plan writes a phone number 3-2-4
        if re.fullmatch(r"(?:\d{1,3}\.){3}\d{1,3}", body):
            continue  # an IPv4 address (valid or not), not a phone number
        international = body.startswith("+") or body.startswith("(+") or body.startswith("00")
        strong = (
            international
            or bool(_PHONE_PARENS_RE.match(body))
            or bool(_PHONE_NANP_RE.match(raw))
            or bool(_PHONE_EXT_RE.search(raw))
        )
        if strong:
            yield PiiSpan("PHONE_NUMBER", start, end, raw, 0.75)
        elif _phone_context(text, start, end):
            yield PiiSpan("PHONE_NUMBER", start, end, raw, 0.6)


# --------------------------------------------------------------------------------------------------
# Person names: a token classifier
# --------------------------------------------------------------------------------------------------

# Words (letters, with inner hyphens or apostrophes as in "Jean-Luc" and "O'Neil", but not the
# possessive 's), numbers, and single punctuation marks.
_TOKEN_RE = re.compile(r"[^\W\d_]+(?:[-'’](?![sS]\b)[^\W\d_]+)*|\d+|[^\w\s]")


def tokenize(text: str) -> list[tuple[str, int, int]]:
    """``(token, start, end)`` for each token; the person model's unit."""
    return [(m.group(), m.start(), m.end()) for m in _TOKEN_RE.finditer(text)]


def _shape(tok: str) -> str:
    out = []
    for ch in tok:
        c = "X" if ch.isupper() else "x" if ch.isalpha() else "d" if ch.isdigit() else ch
        if not out or out[-1] != c:
            out.append(c)
    return "".join(out)[:6]


def token_features(
    text: str,
    tokens: Sequence[tuple[str, int, int]],
    i: int,
    gazetteer: Collection[str],
    common: Collection[str] = frozenset(),
    others: Collection[str] = frozenset(),
) -> list[str]:
    """The features of token ``i``: its form, shape and affixes, two words either side, whether it
    starts or ends a line, and whether it and its neighbours are in the name-token gazetteer.

    Shared by the trainer (``benchmarks/train_person_detector.py``) and inference, so a rebuilt model
    always matches this code."""
    tok, start, end = tokens[i]
    low = tok.lower()
    feats = [
        "b",
        "w=" + low,
        "sh=" + _shape(tok),
        "s3=" + low[-3:],
        "s2=" + low[-2:],
        "p3=" + low[:3],
        "len=" + str(min(len(tok), 8)),
    ]
    if low in gazetteer:
        feats.append("gaz")
        feats.append("gaz_sh=" + _shape(tok))
    # A word people write in lower case in ordinary prose ("mail", "patient", "park") is rarely a
    # name even when capitalised at the start of a line.
    if low in common:
        feats.append("common")
        feats.append("common_sh=" + _shape(tok))
    line_start = start == 0 or "\n" in text[max(0, start - 4) : start] or text[:start].strip() == ""
    if line_start:
        feats.append("line_start")
    # Capitalisation means more in mid-sentence than at the start of a line or sentence: the
    # conjunctions let the linear model weigh "Xx" differently by position.
    where = "ls" if line_start else "ss" if i > 0 and tokens[i - 1][0] in ".!?:;\"" else "mid"
    feats.append(f"shpos={_shape(tok)}|{where}")
    if low in common:
        feats.append(f"commonpos={_shape(tok)}|{where}")
    if low in gazetteer:
        feats.append(f"gazpos={where}")
    # Seen in a place, organisation or street name: the proper nouns most often mistaken for names.
    if low in others:
        feats.append("other_gaz")
        if low in gazetteer:
            feats.append("other_and_gaz")
    nl = text.find("\n", end)
    if (nl != -1 and text[end:nl].strip() == "") or text[end:].strip() == "":
        feats.append("line_end")
    for off in (-2, -1, 1, 2):
        j = i + off
        if 0 <= j < len(tokens):
            ntok = tokens[j][0]
            nlow = ntok.lower()
            feats.append(f"w{off}={nlow}")
            if off in (-1, 1):
                feats.append(f"sh{off}={_shape(ntok)}")
                if nlow in gazetteer:
                    feats.append(f"gaz{off}")
                if nlow in common:
                    feats.append(f"common{off}")
        else:
            feats.append(f"w{off}=<none>")
    if i > 0:
        feats.append("w-1w0sh=" + tokens[i - 1][0].lower() + "|" + _shape(tok))
    return feats


@dataclass(frozen=True)
class _PersonModel:
    weights: dict[str, float]
    bias: float
    threshold: float
    gazetteer: frozenset[str]
    common: frozenset[str]
    others: frozenset[str]


@lru_cache(maxsize=1)
def _person_model() -> _PersonModel:
    try:
        raw = json.loads(PERSON_MODEL_PATH.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PersonModelError(
            f"cannot read the person-name model {PERSON_MODEL_PATH}: {exc}; "
            "reinstall ragops or rebuild it with benchmarks/train_person_detector.py"
        ) from exc
    return _PersonModel(
        weights=raw["weights"],
        bias=float(raw["bias"]),
        threshold=float(raw["threshold"]),
        gazetteer=frozenset(raw["gazetteer"]),
        common=frozenset(raw.get("common_words", ())),
        others=frozenset(raw.get("other_entity_tokens", ())),
    )


def _is_word(tok: str) -> bool:
    return tok[0].isalpha()


def person_token_scores(text: str, tokens: Sequence[tuple[str, int, int]] | None = None) -> list[float]:
    """P(token is part of a person name) for each token of ``text`` (0 for non-words)."""
    model = _person_model()
    tokens = tokenize(text) if tokens is None else tokens
    w = model.weights
    out = []
    for i, (tok, _, _) in enumerate(tokens):
        if not _is_word(tok):
            out.append(0.0)
            continue
        z = model.bias
        for f in token_features(text, tokens, i, model.gazetteer, model.common, model.others):
            z += w.get(f, 0.0)
        out.append(1.0 / (1.0 + math.exp(-z)) if z > -30 else 0.0)
    return out


_ROMAN_SUFFIXES = frozenset({"II", "III", "IV", "VI", "JR", "SR"})
# Capitals inside a name come after a particle or a hyphen/apostrophe: McDowell, LeBatelier, DiCaprio,
# O'Neil, Jean-Luc. Anything else with inner capitals (AMPK, CPCs, eRNAs, iPhone) is an acronym or a
# product, which scientific and technical prompts are full of.
_INNER_CAPS_NAME_RE = re.compile(r"^(?:Mc|Mac|Le|La|De|Di|Da|Du|Van|Von|O['’])?[A-Z][a-z]+(?:[-'’][A-Za-z][a-z]*)*$")


def _name_like(tok: str) -> bool:
    """Could this word be (part of) a person's name by its casing alone?"""
    if tok.islower() or (len(tok) == 1 and tok.isupper()) or tok in _ROMAN_SUFFIXES:
        return True
    if tok[0].isupper() and (tok[1:].islower() or not any(c.isupper() for c in tok[1:])):
        return True
    return bool(_INNER_CAPS_NAME_RE.match(tok))


def decode_person_spans(
    text: str, tokens: Sequence[tuple[str, int, int]], scores: Sequence[float], threshold: float
) -> list[PiiSpan]:
    """Person spans from per-token scores: runs of adjacent name-like tokens scoring ``>= threshold``,
    through an initial's period ("Faina D. Yefremova"), never across a line break, and not a lone
    initial."""
    scores = [sc if sc >= threshold and _name_like(tokens[i][0]) else 0.0 for i, sc in enumerate(scores)]
    spans = []
    i = 0
    n = len(tokens)
    while i < n:
        if scores[i] < threshold:
            i += 1
            continue
        j = i
        span_scores = [scores[i]]
        while True:
            k = j + 1
            if k < n and tokens[k][0] == "." and len(tokens[j][0]) == 1 and tokens[k][1] == tokens[j][2]:
                k += 1  # the period of an initial
            if k < n and scores[k] >= threshold and "\n" not in text[tokens[j][2] : tokens[k][1]]:
                span_scores.append(scores[k])
                j = k
            else:
                break
        start, end = tokens[i][1], tokens[j][2]
        if j + 1 < n and tokens[j + 1][0] == "." and len(tokens[j][0]) == 1 and tokens[j + 1][1] == end:
            end += 1  # a trailing initial keeps its period
        # A lone initial ("T", "H.") identifies no one; in prose it is a variable or an abbreviation.
        if any(len(tokens[k][0]) > 1 for k in range(i, j + 1)):
            score = round(sum(span_scores) / len(span_scores), 4)
            spans.append(PiiSpan("PERSON", start, end, text[start:end], score))
        i = j + 1
    return spans


def _persons(text: str) -> Iterable[PiiSpan]:
    if not any(ch.isalpha() for ch in text):
        return []
    tokens = tokenize(text)
    return decode_person_spans(text, tokens, person_token_scores(text, tokens), _person_model().threshold)


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------

_RECOGNIZERS = {
    "EMAIL_ADDRESS": _emails,
    "PHONE_NUMBER": _phones,
    "CREDIT_CARD": _cards,
    "IBAN_CODE": _ibans,
    "US_SSN": _ssns,
    "IP_ADDRESS": _ips,
    "PERSON": _persons,
}


def _resolve_overlaps(spans: Iterable[PiiSpan]) -> list[PiiSpan]:
    chosen: list[PiiSpan] = []
    for s in sorted(spans, key=lambda s: (-_PRIORITY[s.entity_type], -s.score, s.start - s.end, s.start)):
        if all(s.end <= c.start or s.start >= c.end for c in chosen):
            chosen.append(s)
    return sorted(chosen, key=lambda s: s.start)


def detect_pii(text: str, entities: Collection[str] | None = None) -> list[PiiSpan]:
    """The PII in ``text``: spans sorted by position, never overlapping (on overlap the validated
    pattern wins over the looser one, and any pattern over a person name).

    ``entities`` restricts the search to some of :data:`PII_ENTITIES`; an unknown name raises
    :class:`UnknownPiiEntity`."""
    if entities is None:
        wanted: Collection[str] = PII_ENTITIES
    else:
        unknown = sorted(set(entities) - set(PII_ENTITIES))
        if unknown:
            raise UnknownPiiEntity(
                f"unknown PII entity type(s) {', '.join(unknown)}; known: {', '.join(PII_ENTITIES)}"
            )
        wanted = entities
    if not text:
        return []
    found: list[PiiSpan] = []
    for name in PII_ENTITIES:
        if name in wanted:
            found.extend(_RECOGNIZERS[name](text))
    return _resolve_overlaps(found)


def redact(text: str, spans: Sequence[PiiSpan] | None = None) -> str:
    """``text`` with each span replaced by ``<ENTITY_TYPE>``, e.g. ``"mail <EMAIL_ADDRESS>"``.

    Without ``spans`` it redacts what :func:`detect_pii` finds. Given spans may overlap (from several
    detectors): of overlapping spans the earliest-starting, then longest, is replaced."""
    if spans is None:
        spans = detect_pii(text)
    out = []
    pos = 0
    for s in sorted(spans, key=lambda s: (s.start, -s.end)):
        if s.start < pos:
            # Overlaps the span just replaced: widen that placeholder rather than leave a tail of PII.
            pos = max(pos, s.end)
            continue
        out.append(text[pos : s.start])
        out.append(f"<{s.entity_type}>")
        pos = s.end
    out.append(text[pos:])
    return "".join(out)


__all__ = [
    "PII_ENTITIES",
    "PersonModelError",
    "PiiSpan",
    "UnknownPiiEntity",
    "detect_pii",
    "iban_valid",
    "luhn_valid",
    "redact",
    "ssn_valid",
]
