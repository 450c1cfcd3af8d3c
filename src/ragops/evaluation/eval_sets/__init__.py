"""Eval sets: what one is (:mod:`.schema`), where they come from (:mod:`.sources`: JSONL, BEIR,
SQuAD, feedback) and where they are kept (:mod:`.store`: the versioned ``eval_sets`` Delta table).

``from ragops.evaluation.eval_sets import read_eval_set, load_source, ...`` keeps working: every
public name is re-exported here.
"""

from ragops.evaluation.eval_sets.schema import (
    DEFAULT_ORIGIN,
    EVAL_COLUMNS,
    LIST_FIELDS,
    REQUIRED_FIELDS,
    TABLE,
    EvalSetError,
    content_hash,
    normalise,
)
from ragops.evaluation.eval_sets.sources import (
    RatedRequest,
    from_feedback,
    load_beir,
    load_jsonl,
    load_source,
    load_squad,
    rated_requests,
    squad_corpus,
    squad_paragraph_id,
)
from ragops.evaluation.eval_sets.store import (
    EvalSet,
    EvalSetVersion,
    ensure_eval_set,
    list_eval_sets,
    read_eval_set,
    register_eval_set,
)

__all__ = [
    "DEFAULT_ORIGIN",
    "EVAL_COLUMNS",
    "LIST_FIELDS",
    "REQUIRED_FIELDS",
    "TABLE",
    "EvalSet",
    "EvalSetError",
    "EvalSetVersion",
    "RatedRequest",
    "content_hash",
    "ensure_eval_set",
    "from_feedback",
    "list_eval_sets",
    "load_beir",
    "load_jsonl",
    "load_source",
    "load_squad",
    "normalise",
    "rated_requests",
    "read_eval_set",
    "register_eval_set",
    "squad_corpus",
    "squad_paragraph_id",
]
