"""How a metric declares itself: one :class:`MetricInfo` named ``METRIC`` in its own file.

The declaration says what the evaluator needs to know without calling the metric: its canonical
name, its kind, what it reads, whether it takes a cut-off, and the function. ``needs`` lists the
function's positional parameters in order — row inputs (:data:`INPUTS`) or ``embed`` (the
evaluation's embedding function); a metric with a cut-off takes ``k`` last. The scorers
(:mod:`ragops.evaluation.scorers`) wire every declared metric from this alone, so a new metric is
one file in this package.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Row = tuple[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]]  # inputs, outputs, expectations

#: The row inputs a metric can need, read from one scorer row (inputs, outputs, expectations).
INPUTS: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]], Any]] = {
    "retrieved": lambda i, o, e: list(o.get("retrieved_doc_ids") or []),
    "expected_doc_ids": lambda i, o, e: list(e.get("expected_doc_ids") or []),
    "answer": lambda i, o, e: o.get("answer") or "",
    "expected_answers": lambda i, o, e: list(e.get("expected_answers") or []),
    "question": lambda i, o, e: i["question"],
    "contexts": lambda i, o, e: list(o.get("contexts") or []),
    "answerable": lambda i, o, e: bool(e.get("answerable", True)),
}
#: Needs that are not row inputs but something the evaluation supplies.
RESOURCES = ("embed",)
KINDS = ("retrieval", "answer", "rag")
#: ``cutoff``: "" none; "ks" one metric per evaluation cut-off (eval_ks); "ndcg_k" the nDCG cut-off.
CUTOFFS = ("", "ks", "ndcg_k")


@dataclass(frozen=True)
class MetricInfo:
    """What the evaluator and reports need to know about a metric, and the function itself."""

    name: str  #: canonical name; metrics with a cut-off are templates ending in "@k"
    kind: str  #: "retrieval" | "answer" | "rag"
    description: str
    fn: Callable[..., float | None] | None = field(default=None, compare=False, repr=False)
    #: the function's positional inputs, in order: retrieved, expected_doc_ids, answer,
    #: expected_answers, question, contexts, answerable, embed (an embedding function)
    needs: tuple[str, ...] = ()
    cutoff: str = ""
    #: a metric without a cut-off in its canonical name that may still carry one ("mrr@10")
    optional_k: bool = False
    higher_is_better: bool = True
    #: reporting order within its kind
    order: int = 100

    def __post_init__(self) -> None:
        unknown = [n for n in self.needs if n not in INPUTS and n not in RESOURCES]
        if unknown or self.kind not in KINDS or self.cutoff not in CUTOFFS:
            raise ValueError(f"metric {self.name!r}: needs {unknown} unknown (use {[*INPUTS, *RESOURCES]}), "
                             f"kind {self.kind!r} (use {KINDS}), cutoff {self.cutoff!r} (use {CUTOFFS})")
        if self.cutoff and not self.name.endswith("@k"):
            raise ValueError(f"metric {self.name!r} takes a cut-off: name it '<stem>@k'")

    def bind(self, k: int | None = None, **resources: Any) -> Callable[[Mapping[str, Any], Mapping[str, Any],
                                                                         Mapping[str, Any]], float | None]:
        """The metric as a function of one scorer row, with its resources (and cut-off) fixed."""
        fn, needs = self.fn, self.needs
        extra = (k,) if self.cutoff else ()

        def score(i: Mapping[str, Any], o: Mapping[str, Any], e: Mapping[str, Any]) -> float | None:
            args = [resources[n] if n in RESOURCES else INPUTS[n](i, o, e) for n in needs]
            return fn(*args, *extra)

        return score
