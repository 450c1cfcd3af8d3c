"""Topic / keyword block lists: case-insensitive, whole words or phrases (configured per route).

``TopicBlocklist(["bitcoin", "stock tips"]).check(text) -> TopicVerdict``: "Bitcoin" and
"stock   tips" match; "bitcoins" does not (word boundaries: a list means exactly its words);
write a plural or variant as its own entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class TopicVerdict:
    blocked: bool
    matched: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {"blocked": self.blocked, "matched": list(self.matched)}


class TopicBlocklist:
    def __init__(self, terms: Iterable[str]) -> None:
        self.terms = tuple(dict.fromkeys(t.strip() for t in terms if t and t.strip()))
        # One alternation for all terms (one pass over the text); whitespace inside a phrase matches
        # any run of whitespace; (?<!\w)/(?!\w) rather than \b so terms starting or ending with
        # punctuation ("c++") still need a word boundary around them.
        parts = [r"\s+".join(map(re.escape, t.split())) for t in self.terms]
        self.pattern = re.compile(r"(?<!\w)(?:" + "|".join(parts) + r")(?!\w)", re.IGNORECASE) if parts else None
        self._canonical = {" ".join(t.lower().split()): t for t in self.terms}

    def check(self, text: str) -> TopicVerdict:
        if self.pattern is None or not text:
            return TopicVerdict(False)
        found = dict.fromkeys(self._canonical.get(" ".join(m.group(0).lower().split()), m.group(0))
                              for m in self.pattern.finditer(text))
        return TopicVerdict(bool(found), tuple(found))


def check_topics(text: str, terms: Iterable[str]) -> TopicVerdict:
    return TopicBlocklist(terms).check(text)


__all__ = ["TopicBlocklist", "TopicVerdict", "check_topics"]
