"""Chunking strategies: sizes in model tokens, overlap, sections, full coverage of the text."""

from __future__ import annotations

import re

import pytest

from ragops.chunking.strategies import STRATEGIES, TokenCounter, hf_tokenize, markdown_sections, split_text
from ragops.config import ChunkingConfig
from ragops.weights import load_tokenizer
from tests.conftest import SAMPLE


@pytest.fixture(scope="module")
def tokenize():
    return hf_tokenize(load_tokenizer("all-MiniLM-L6-v2"))


@pytest.fixture(scope="module")
def long_markdown():
    return (SAMPLE / "guides" / "getting-started.md").read_text()


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_chunk_fits_the_token_budget(strategy, tokenize, long_markdown):
    cfg = ChunkingConfig(strategy=strategy, chunk_size=64, chunk_overlap=8)
    counter = TokenCounter(long_markdown, tokenize)
    spans = split_text(long_markdown, counter, cfg)
    assert len(spans) > 5
    sizes = [len(tokenize(long_markdown[s.start : s.end])) for s in spans]
    assert max(sizes) <= 64
    # nothing is lost: every word of the document is inside some chunk
    covered = set()
    for s in spans:
        covered.update(range(s.start, s.end))
    missing = [m.group() for m in re.finditer(r"\w+", long_markdown) if m.start() not in covered]
    assert missing == []


def test_token_windows_overlap_by_the_configured_amount(tokenize):
    text = " ".join(f"word{i}" for i in range(300))
    cfg = ChunkingConfig(strategy="token", chunk_size=50, chunk_overlap=10)
    spans = split_text(text, TokenCounter(text, tokenize), cfg)
    first, second = (tokenize(text[s.start : s.end]) for s in spans[:2])
    a, b = text[spans[0].start : spans[0].end], text[spans[1].start : spans[1].end]
    assert 48 <= len(first) <= 50
    shared = len(tokenize(text[spans[1].start : spans[0].end]))
    assert 8 <= shared <= 10, (a[-60:], b[:60])
    assert not b.startswith(("#", "1", "2")), "windows start on a word"


def test_recursive_prefers_paragraph_boundaries(tokenize):
    paragraphs = [f"Paragraph {i} " + "filler words here. " * 6 for i in range(6)]
    text = "\n\n".join(paragraphs)
    cfg = ChunkingConfig(strategy="recursive", chunk_size=60, chunk_overlap=0)
    chunks = [text[s.start : s.end] for s in split_text(text, TokenCounter(text, tokenize), cfg)]
    assert all(c.startswith("Paragraph") for c in chunks)


def test_markdown_chunks_carry_their_header_path(tokenize):
    text = "# Guide\n\nIntro.\n\n## Install\n\nRun it.\n\n### Linux\n\nUse apt.\n\n## Upgrade\n\nRead notes.\n"
    cfg = ChunkingConfig(strategy="markdown", chunk_size=64, chunk_overlap=0)
    spans = split_text(text, TokenCounter(text, tokenize), cfg)
    by_section = {s.section: text[s.start : s.end] for s in spans}
    assert by_section["Guide > Install > Linux"].endswith("Use apt.")
    assert "Guide > Upgrade" in by_section
    assert "Run it." not in by_section["Guide > Upgrade"]


def test_markdown_headers_inside_code_fences_are_not_sections():
    text = "# Real\n\n```bash\n# not a header\necho hi\n```\n\n## Next\n\ntext\n"
    assert [s for _, _, s in markdown_sections(text)] == ["Real", "Real > Next"]


def test_a_single_enormous_word_is_cut_hard(tokenize):
    text = "/".join(["segment"] * 400)  # e.g. a giant URL: no whitespace to split on
    cfg = ChunkingConfig(strategy="recursive", chunk_size=32, chunk_overlap=0)
    spans = split_text(text, TokenCounter(text, tokenize), cfg)
    assert len(spans) > 1
    assert spans[-1].end == len(text)
    assert max(len(tokenize(text[sp.start : sp.end])) for sp in spans) <= 32


def test_sentence_strategy_does_not_cut_mid_sentence(tokenize):
    text = " ".join(f"Sentence number {i} ends here." for i in range(40))
    cfg = ChunkingConfig(strategy="sentence", chunk_size=40, chunk_overlap=0)
    for s in split_text(text, TokenCounter(text, tokenize), cfg):
        piece = text[s.start : s.end]
        assert piece.startswith("Sentence") and piece.endswith("here.")
