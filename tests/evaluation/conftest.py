"""A small registered chain and its eval set, shared by the evaluation flow tests of one module."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO, copy_corpus, run_pipeline

#: questions of data/eval/questions.jsonl answerable from tests.conftest.SMALL_FILES, plus the unanswerable ones
SMALL_QUESTIONS = ["q001", "q002", "q019", "q023", "q029", "q034", "q035", "q036"]


def write_small_eval_set(path: Path) -> Path:
    lines = [line for line in (REPO / "data/eval/questions.jsonl").read_text().splitlines()
             if json.loads(line)["question_id"] in SMALL_QUESTIONS]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def small_state(tmp_path_factory):
    """The small corpus through the pipeline, with the small eval set file next to it (no model yet)."""
    from ragops.config import Settings

    tmp = tmp_path_factory.mktemp("evalstate")
    corpus = copy_corpus(tmp / "corpus")
    eval_file = write_small_eval_set(tmp / "questions.jsonl")
    variables = {"root": str(tmp / "state"), "source_path": str(corpus), "llm_max_new_tokens": "12",
                 "eval_source": str(eval_file)}
    settings = Settings.from_variables(variables)
    run_pipeline(settings)
    return settings, variables, tmp
