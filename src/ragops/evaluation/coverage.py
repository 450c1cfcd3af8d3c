"""Does an eval set ask about the documents in the index? Checked before anything is generated.

Pointing the project at one's own documents (``--var source_path=my_docs``) and evaluating with
the sample eval set (questions about the sample corpus) used to spend minutes answering questions
the index cannot answer, then fail a gate with "recall@5 0.00". The expected documents of an
eval set and the doc ids of the index snapshot the model serves are both known up front, so the
mismatch is a one-line error before the first LLM call.

The rule: of the questions that name expected documents, count those with at least one of them
in the index. Under :data:`MIN_COVERED` (10%) the eval set is about another corpus and
:func:`check_coverage` raises :class:`EvalSetMismatch`; under half it warns (the metrics are real
for the covered questions, but the uncovered ones score 0 and pull every retrieval mean down).
The floor is 10%, not half, because evaluating on a subset of a corpus is legitimate (the notebook
tests index 4 of the sample corpus's documents and cover 4 of its 33 questions); one's own
documents against the sample set cover none. Questions without expected documents (unanswerable
ones, feedback corrections) are not counted either way, and a set where none names any is not
checked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from ragops.evaluation.entities import EvalTarget, EvaluationError
from ragops.evaluation.eval_sets import EvalSet

log = logging.getLogger(__name__)

#: Below this share of covered questions an eval set is about another corpus.
MIN_COVERED = 0.1
#: Below this share a warning says how many questions the index cannot answer.
WARN_COVERED = 0.5


class EvalSetMismatch(EvaluationError):
    """The eval set's expected documents are (nearly) all missing from the index being evaluated."""


@dataclass(frozen=True)
class Coverage:
    """How much of an eval set's expected documents an index holds."""

    questions: int  #: questions that name at least one expected document
    covered: int  #: of those, questions with at least one expected document in the index
    doc_ids: int  #: distinct expected doc ids
    missing_doc_ids: tuple[str, ...]  #: expected doc ids not in the index (sorted)

    @property
    def share(self) -> float | None:
        return self.covered / self.questions if self.questions else None


def coverage(questions: pd.DataFrame, index_doc_ids: Iterable[str]) -> Coverage:
    """The :class:`Coverage` of ``questions`` (an eval set frame) by an index's doc ids."""
    indexed = set(index_doc_ids)
    expected = [list(v) for v in questions["expected_doc_ids"] if v is not None and len(v)]
    wanted = {d for docs in expected for d in docs}
    return Coverage(questions=len(expected), covered=sum(bool(indexed.intersection(docs)) for docs in expected),
                    doc_ids=len(wanted), missing_doc_ids=tuple(sorted(wanted - indexed)))


def check_coverage(es: EvalSet, questions: pd.DataFrame, target: EvalTarget) -> Coverage:
    """Raise :class:`EvalSetMismatch` when ``questions`` of ``es`` are about documents the target's
    index snapshot does not hold (the rule is in the module docstring); warn when many are."""
    searcher = target.chain.searcher
    snapshot = searcher.manifest.snapshot_id
    found = coverage(questions, searcher.snapshot.rows["doc_id"])
    if found.share is None:
        return found
    missing_q = found.questions - found.covered
    what = (f"{missing_q} of {found.questions} questions' expected documents "
            f"({len(found.missing_doc_ids)} of {found.doc_ids} doc ids) are not in index snapshot {snapshot}")
    if found.share < MIN_COVERED:
        examples = ", ".join(found.missing_doc_ids[:3])
        raise EvalSetMismatch(
            f"eval set {es.name}@v{es.version} does not match the index: {what} (e.g. {examples}); "
            f"it asks about another corpus. Evaluate with questions about yours: --var eval_source=<file.jsonl> "
            f"(expected_doc_ids as ingest names your documents), or a synthetic set generated from the indexed "
            f"chunks (`ragops eval-set synthesize NAME`, then --var eval_set=NAME --var eval_source=none); "
            f"or register the model without evaluating it: --param evaluate_after_registration=false")
    if found.share < WARN_COVERED:
        log.warning("eval set %s@v%s: %s; those questions score 0 on retrieval", es.name, es.version, what)
    return found
