"""Shared fixtures: small corpora written per test, and one pipeline build shared by read-only tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["RAGOPS_PROGRESS"] = "0"
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")  # as the CLI: traces readable at once

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "corpus"
DATASETS = REPO.parent / "shared" / "datasets"

#: A small corpus that exercises every loader and still embeds in seconds.
SMALL_FILES = [
    "guides/retention.md",
    "guides/collector-setup.md",
    "reference/ports-and-protocols.html",
    "pricing/support-sla.pdf",
    "release-notes/4.0.0.txt",
    "kb/kb-1042-disk-full.json",
    "broken/empty.md",
    "broken/binary_blob.txt",
]


def copy_corpus(dest: Path, files: list[str] = SMALL_FILES) -> Path:
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLE / rel, target)
    return dest


@pytest.fixture
def small_corpus(tmp_path: Path) -> Path:
    return copy_corpus(tmp_path / "corpus")


@pytest.fixture
def make_settings(tmp_path: Path):
    from ragops.config import Settings

    def make(**variables):
        variables.setdefault("root", str(tmp_path / "state"))
        return Settings.from_variables(variables)

    return make


def run_pipeline(settings) -> dict:
    """ingest → chunk → embed → index_sync, as ingest_job runs them; the summary of each step."""
    from ragops.index.build import build_index

    return build_index(settings)


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """The whole sample corpus through the pipeline once; tests must only read from it."""
    from ragops.config import Settings

    root = tmp_path_factory.mktemp("built")
    settings = Settings.from_variables({"root": str(root / "state"), "source_path": str(SAMPLE)})
    summaries = run_pipeline(settings)
    return settings, summaries
