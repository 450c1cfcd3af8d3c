"""An eval set about another corpus fails at once, naming the set, the missing documents and what
to do — before a single answer is generated (it used to cost minutes, then "recall@5 0.00")."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from ragops.evaluation.coverage import EvalSetMismatch, coverage
from ragops.evaluation.eval_sets import load_jsonl
from tests.conftest import REPO, run_pipeline

SAMPLE_QUESTIONS = REPO / "data" / "eval" / "questions.jsonl"


def test_coverage_counts_questions_with_an_expected_document_in_the_index():
    frame = pd.DataFrame({"expected_doc_ids": [["a.md"], ["b.md", "c.md"], [], ["d.md"]]})
    found = coverage(frame, ["a.md", "c.md", "x.md"])
    assert (found.questions, found.covered, found.doc_ids) == (3, 2, 4)
    assert found.missing_doc_ids == ("b.md", "d.md") and found.share == pytest.approx(2 / 3)
    assert coverage(pd.DataFrame({"expected_doc_ids": [[], None]}), ["a.md"]).share is None


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """An index over two documents of one's own, and the sample eval set (about the sample corpus)."""
    from ragops.config import Settings

    tmp = tmp_path_factory.mktemp("foreign")
    docs = tmp / "my_docs"
    docs.mkdir()
    (docs / "sourdough.md").write_text("# Sourdough\n\nFeed the starter with equal weights of flour and water "
                                       "every day, and bake when it doubles within six hours.\n")
    (docs / "tomatoes.md").write_text("# Tomatoes\n\nPlant tomatoes after the last frost, 60 cm apart, and "
                                      "water them at the base in the morning.\n")
    variables = {"root": str(tmp / "state"), "source_path": str(docs), "eval_source": str(SAMPLE_QUESTIONS)}
    settings = Settings.from_variables(variables)
    run_pipeline(settings)
    return settings, variables


@pytest.fixture
def no_generation(monkeypatch):
    """Counts answers the chain generates (there must be none)."""
    from ragops.chain.rag import RagChain

    calls = []
    real = RagChain.invoke

    def counted(self, *args, **kwargs):
        calls.append(args)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(RagChain, "invoke", counted)
    return calls


def test_an_eval_set_about_another_corpus_fails_before_any_answer(foreign, no_generation):
    from ragops.chain.prompts import ResolvedPrompt
    from ragops.chain.rag import RagChain
    from ragops.evaluation.base import evaluate
    from ragops.evaluation.entities import EvalTarget
    from ragops.evaluation.eval_sets import ensure_eval_set
    from ragops.index.search import Searcher
    from ragops.lakehouse import open_lakehouse

    settings, _ = foreign
    searcher = Searcher.open(settings)
    chain = RagChain(searcher, None, ResolvedPrompt("rag_answer", 1, "production", [{"role": "user", "content": "{question}"}]), settings.chain)
    with open_lakehouse(settings) as lh:
        es = ensure_eval_set(lh, settings.evaluation)
        started = time.perf_counter()
        with pytest.raises(EvalSetMismatch) as err:
            evaluate(settings, lh, EvalTarget(chain), es, options=settings.evaluation)
    assert time.perf_counter() - started < 5 and no_generation == []
    message = str(err.value)
    expected = load_jsonl(SAMPLE_QUESTIONS)
    n = sum(bool(len(d)) for d in expected["expected_doc_ids"])
    docs = len({d for ds in expected["expected_doc_ids"] for d in ds})
    assert (f"eval set sample@v{es.version} does not match the index: {n} of {n} questions' expected documents "
            f"({docs} of {docs} doc ids) are not in index snapshot {searcher.manifest.snapshot_id}") in message
    assert "--var eval_source=" in message and "ragops eval-set synthesize" in message
    assert "--param evaluate_after_registration=false" in message


def test_the_evaluate_job_fails_with_that_one_message(foreign, no_generation, capsys):
    from ragops.jobs import eval_set, evaluate
    from ragops.models.log import log_chain

    settings, variables = foreign
    log_chain(settings)  # (logging answers the input example once)
    no_generation.clear()
    params = [f"--{k}={v}" for k, v in variables.items()]
    assert eval_set.main(params) == 0
    capsys.readouterr()
    started = time.perf_counter()
    code = evaluate.main(params)
    seconds = time.perf_counter() - started
    out = capsys.readouterr()
    assert code == 1 and no_generation == []
    assert seconds < 60, f"the mismatch took {seconds:.0f}s to report"
    assert "does not match the index" in out.err and "evaluate_after_registration=false" in out.err
    assert "Traceback" not in out.err
