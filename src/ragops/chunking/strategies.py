"""Chunking strategies: pure functions from one document's text to character spans.

All strategies count size in the embedding model's tokens. The document is tokenized once
(with offsets); any span's token count is then two binary searches, so recursive splitting
costs no repeated tokenization. Spans index into the original text, so every chunk records
exactly where it came from (``start_char``/``end_char``).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass

from ragops.config import ChunkingConfig


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    section: str = ""


class TokenCounter:
    """Counts tokens in any character span of one text (tokens whose start lies in the span)."""

    def __init__(self, text: str, tokenize: Callable[[str], list[tuple[int, int]]]) -> None:
        self.offsets = [(s, e) for s, e in tokenize(text) if e > s]
        self.starts = [s for s, _ in self.offsets]

    def count(self, start: int, end: int) -> int:
        return bisect.bisect_left(self.starts, end) - bisect.bisect_left(self.starts, start)

    def token_spans(self, start: int, end: int) -> list[tuple[int, int]]:
        lo, hi = bisect.bisect_left(self.starts, start), bisect.bisect_left(self.starts, end)
        return self.offsets[lo:hi]


def regex_tokenize(text: str) -> list[tuple[int, int]]:
    """Fallback tokenizer (words and punctuation) when no model tokenizer is available."""
    return [m.span() for m in re.finditer(r"\w+|[^\w\s]", text)]


def hf_tokenize(tokenizer) -> Callable[[str], list[tuple[int, int]]]:
    def tokenize(text: str) -> list[tuple[int, int]]:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        return [tuple(o) for o in enc["offset_mapping"]]

    return tokenize


# --- primitives ----------------------------------------------------------------------------

def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def token_windows(counter: TokenCounter, start: int, end: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """Windows of at most ``size`` tokens, each overlapping the previous by about ``overlap`` tokens.

    Windows start and end on word boundaries (a token glued to the previous one, like a
    ``##piece``, never starts a window): a window cut mid-word would re-tokenize longer than
    ``size`` on its own. A single word longer than the window is cut hard."""
    toks = counter.token_spans(start, end)
    if not toks:
        return []
    n = len(toks)
    word_start = [i == 0 or toks[i][0] > toks[i - 1][1] for i in range(n)]
    out, i = [], 0
    while True:
        stop = min(i + size, n)
        if stop < n:
            snapped = stop
            while snapped > i + 1 and not word_start[snapped]:
                snapped -= 1
            stop = snapped if snapped > i + 1 or word_start[snapped] else stop
        out.append((toks[i][0], toks[stop - 1][1]))
        if stop >= n:
            break
        nxt = max(stop - overlap, i + 1)
        while nxt < stop and not word_start[nxt]:
            nxt += 1
        i = nxt
    return out


_SEPARATORS = [r"\n\n+", r"\n", r"(?<=[.!?])\s+", r"(?<=[;:,])\s+", r"\s+"]


def _split_on(text: str, start: int, end: int, pattern: str) -> list[tuple[int, int]]:
    pieces, pos = [], start
    for m in re.finditer(pattern, text[start:end]):
        cut = start + m.end()
        if cut > pos and cut < end:
            pieces.append((pos, cut))
            pos = cut
    pieces.append((pos, end))
    return [p for p in pieces if p[1] > p[0]]


def _atomic(text: str, counter: TokenCounter, start: int, end: int, size: int, seps: list[str]) -> list[tuple[int, int]]:
    """Split a span into pieces of at most ``size`` tokens, at the coarsest separator possible."""
    if counter.count(start, end) <= size:
        return [(start, end)]
    for i, sep in enumerate(seps):
        pieces = _split_on(text, start, end, sep)
        if len(pieces) > 1:
            out: list[tuple[int, int]] = []
            for a, b in pieces:
                out += _atomic(text, counter, a, b, size, seps[i + 1 :]) if counter.count(a, b) > size else [(a, b)]
            return out
    return token_windows(counter, start, end, size, 0)  # one enormous "word": hard cut


def merge_pieces(counter: TokenCounter, pieces: list[tuple[int, int]], size: int, overlap: int) -> list[tuple[int, int]]:
    """Greedily pack consecutive pieces into chunks of ≤ ``size`` tokens; start each chunk with
    trailing pieces of the previous one worth ≤ ``overlap`` tokens."""
    chunks: list[tuple[int, int]] = []
    current: list[tuple[int, int]] = []
    for piece in pieces:
        if current and counter.count(current[0][0], piece[1]) > size:
            chunks.append((current[0][0], current[-1][1]))
            while current and (
                counter.count(current[0][0], current[-1][1]) > overlap
                or counter.count(current[0][0], piece[1]) > size
            ):
                current.pop(0)
        current.append(piece)
    if current:
        chunks.append((current[0][0], current[-1][1]))
    return chunks


# --- strategies ----------------------------------------------------------------------------

def chunk_token(text: str, counter: TokenCounter, cfg: ChunkingConfig) -> list[Span]:
    return [Span(a, b) for a, b in token_windows(counter, 0, len(text), cfg.chunk_size, cfg.chunk_overlap)]


def chunk_recursive(text: str, counter: TokenCounter, cfg: ChunkingConfig, start: int = 0, end: int | None = None,
                    section: str = "") -> list[Span]:
    end = len(text) if end is None else end
    pieces = _atomic(text, counter, start, end, cfg.chunk_size, _SEPARATORS)
    return [Span(a, b, section) for a, b in merge_pieces(counter, pieces, cfg.chunk_size, cfg.chunk_overlap)]


_SENTENCE = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[A-Z0-9\"'(\[#*-])|\n{2,}")


def chunk_sentence(text: str, counter: TokenCounter, cfg: ChunkingConfig) -> list[Span]:
    sentences = _split_on(text, 0, len(text), _SENTENCE.pattern)
    pieces: list[tuple[int, int]] = []
    for a, b in sentences:  # a single over-long sentence is split further
        pieces += _atomic(text, counter, a, b, cfg.chunk_size, _SEPARATORS[3:])
    return [Span(a, b) for a, b in merge_pieces(counter, pieces, cfg.chunk_size, cfg.chunk_overlap)]


_HEADER = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


def markdown_sections(text: str) -> list[tuple[int, int, str]]:
    """(start, end, "H1 > H2 > H3") for each header-delimited section; fenced code is not parsed."""
    fences = [m.span() for m in re.finditer(r"^```.*?^```", text, re.S | re.M)]

    def in_fence(pos: int) -> bool:
        return any(a <= pos < b for a, b in fences)

    headers = [m for m in _HEADER.finditer(text) if not in_fence(m.start())]
    sections: list[tuple[int, int, str]] = []
    path: list[tuple[int, str]] = []
    if not headers or headers[0].start() > 0:
        sections.append((0, headers[0].start() if headers else len(text), ""))
    for i, m in enumerate(headers):
        level, title = len(m.group(1)), m.group(2).strip()
        path = [(lvl, t) for lvl, t in path if lvl < level] + [(level, title)]
        end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
        sections.append((m.start(), end, " > ".join(t for _, t in path)))
    return sections


def chunk_markdown(text: str, counter: TokenCounter, cfg: ChunkingConfig) -> list[Span]:
    """Split at headers first (chunks never straddle sections); oversized sections split recursively.
    Consecutive small sections under the same parent are not merged, so each chunk has one section path."""
    spans: list[Span] = []
    for a, b, section in markdown_sections(text):
        a, b = _trim(text, a, b)
        if b > a:
            spans += chunk_recursive(text, counter, cfg, a, b, section)
    return spans


STRATEGIES: dict[str, Callable[[str, TokenCounter, ChunkingConfig], list[Span]]] = {
    "token": chunk_token,
    "recursive": chunk_recursive,
    "markdown": chunk_markdown,
    "sentence": chunk_sentence,
}


def split_text(text: str, counter: TokenCounter, cfg: ChunkingConfig) -> list[Span]:
    out = []
    for span in STRATEGIES[cfg.strategy](text, counter, cfg):
        a, b = _trim(text, span.start, span.end)
        if b > a:
            out.append(Span(a, b, span.section))
    return out
