"""Where eval sets come from: the project's JSONL format, BEIR, SQuAD, and user feedback.

Each loader returns a frame of :data:`~.schema.EVAL_COLUMNS` (checked by :func:`~.schema.normalise`);
:func:`load_source` picks one from a one-string spec, as jobs and the CLI take it.

Document ids in ``expected_doc_ids`` follow the ingest convention, so they compare equal to what
retrieval returns:

- a file: its POSIX path relative to the ingested folder (``guides/retention.md``);
- a record of a JSONL/JSON/CSV/Parquet file: ``<relative path of the file>#<record id>``.
  BEIR corpora are ingested from ``corpus.jsonl``, hence :func:`load_beir`'s default
  ``doc_id_prefix="corpus.jsonl#"``;
- SQuAD paragraphs: ``<article title>/<paragraph index>`` (``Super_Bowl_50/0``), the ``id`` that
  :func:`squad_corpus` exports. Written to e.g. ``squad.jsonl`` and ingested, they become
  ``squad.jsonl#Super_Bowl_50/0``: pass ``doc_id_prefix="squad.jsonl#"`` to :func:`load_squad`.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ragops.evaluation.eval_sets.schema import EVAL_COLUMNS, EvalSetError, is_missing, normalise
from ragops.lakehouse.base import Lakehouse

log = logging.getLogger(__name__)


def load_jsonl(path: str | Path) -> pd.DataFrame:
    """The project's eval-set format (``data/eval/README.md``): one JSON object per line."""
    p = Path(path)
    if not p.is_file():
        raise EvalSetError(f"eval set file {p} not found")
    try:
        lines = p.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise EvalSetError(f"{p}: not UTF-8 text ({exc}); save the file as UTF-8") from exc
    records: list[dict[str, Any]] = []
    labels: list[str] = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalSetError(
                f"{p}: line {lineno}: invalid JSON ({exc.msg} at column {exc.colno}); fix or remove the line"
            ) from exc
        if not isinstance(rec, dict):
            raise EvalSetError(f"{p}: line {lineno}: expected a JSON object, got {type(rec).__name__}")
        records.append(rec)
        labels.append(f"line {lineno}")
    if not records:
        raise EvalSetError(f"{p}: no questions (the file is empty)")
    return normalise(pd.DataFrame.from_records(records), str(p), row_labels=labels)


def _read_jsonl_records(path: Path) -> list[dict[str, Any]]:
    out = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise EvalSetError(f"{path}: line {lineno}: invalid JSON ({exc.msg})") from exc
    return out


def load_beir(folder: str | Path, split: str = "test", doc_id_prefix: str = "corpus.jsonl#") -> pd.DataFrame:
    """Queries of a BEIR dataset (``queries.jsonl`` + ``qrels/<split>.tsv``) that have a relevant document.

    BEIR has no reference answers, so ``expected_answers`` is empty: these sets measure retrieval.
    ``doc_id_prefix`` turns corpus ids into ingest doc ids (``corpus.jsonl#<id>`` when the
    dataset's ``corpus.jsonl`` is ingested from the root of the source folder).
    """
    root = Path(folder)
    qrels_path, queries_path = root / "qrels" / f"{split}.tsv", root / "queries.jsonl"
    if not qrels_path.is_file():
        splits = sorted(p.stem for p in (root / "qrels").glob("*.tsv")) if (root / "qrels").is_dir() else []
        raise EvalSetError(
            f"BEIR dataset {root}: no qrels file {qrels_path}"
            + (f"; available splits: {splits}" if splits else "; is this a BEIR folder (qrels/<split>.tsv)?")
        )
    if not queries_path.is_file():
        raise EvalSetError(f"BEIR dataset {root}: {queries_path} not found")
    try:
        qrels = pd.read_csv(qrels_path, sep="\t", dtype={"query-id": str, "corpus-id": str})
    except Exception as exc:  # pandas parser errors vary by version
        raise EvalSetError(f"{qrels_path}: unreadable qrels file ({exc})") from exc
    needed = {"query-id", "corpus-id", "score"}
    if not needed <= set(qrels.columns):
        raise EvalSetError(f"{qrels_path}: expected columns {sorted(needed)}, got {list(qrels.columns)}")
    relevant: dict[str, list[str]] = {}
    for qid, cid, score in qrels[["query-id", "corpus-id", "score"]].itertuples(index=False):
        if float(score) > 0:
            docs = relevant.setdefault(str(qid), [])
            if f"{doc_id_prefix}{cid}" not in docs:
                docs.append(f"{doc_id_prefix}{cid}")
    queries = {str(q.get("_id")): q.get("text") for q in _read_jsonl_records(queries_path) if isinstance(q, dict)}
    unknown = [q for q in relevant if q not in queries]
    if unknown:
        log.warning("%s: %d judged queries are not in %s (e.g. %s); skipped", qrels_path, len(unknown),
                    queries_path.name, unknown[:3])
    rows = [
        {"question_id": qid, "question": queries[qid], "expected_answers": [], "expected_doc_ids": docs,
         "tags": ["beir", split], "origin": "imported"}
        for qid, docs in relevant.items() if qid in queries
    ]
    if not rows:
        raise EvalSetError(f"{qrels_path}: no query has a relevant (score > 0) document in {queries_path.name}")
    return normalise(pd.DataFrame(rows), f"BEIR {root} ({split})")


def squad_paragraph_id(title: str, paragraph_index: int) -> str:
    """The doc id of a SQuAD paragraph: ``<article title>/<paragraph index>``; stable for a given file."""
    return f"{title}/{paragraph_index}"


def _squad_articles(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.is_file():
        raise EvalSetError(f"SQuAD file {p} not found")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvalSetError(f"{p}: not a SQuAD JSON file ({exc})") from exc
    articles = data.get("data") if isinstance(data, dict) else None
    if not isinstance(articles, list):
        raise EvalSetError(f"{p}: expected SQuAD v1.1 JSON ({{'data': [{{'title', 'paragraphs'}}]}})")
    return articles


def squad_corpus(path: str | Path) -> pd.DataFrame:
    """SQuAD paragraphs as documents (``id``, ``title``, ``text``), one row per paragraph.

    ``id`` is exactly the doc id :func:`load_squad` expects, so writing this frame as JSONL or
    Parquet and ingesting it gives a corpus the SQuAD eval set can be scored against (prefix the
    ids with the file's path, as ingest does, through ``load_squad(doc_id_prefix=...)``).
    """
    rows = []
    for article in _squad_articles(path):
        title = str(article.get("title", ""))
        for i, paragraph in enumerate(article.get("paragraphs", [])):
            rows.append({"id": squad_paragraph_id(title, i), "title": title.replace("_", " "),
                         "text": paragraph.get("context", "")})
    return pd.DataFrame(rows, columns=["id", "title", "text"])


def load_squad(path: str | Path, sample: int | None = None, seed: int = 0, doc_id_prefix: str = "") -> pd.DataFrame:
    """SQuAD v1.1 questions: the gold answer texts (deduplicated, in order) and their paragraph's doc id.

    ``sample`` keeps a fixed random subset (same ``seed`` and file → same questions, in file
    order), so a benchmark on a few hundred questions is reproducible.
    """
    rows = []
    for article in _squad_articles(path):
        title = str(article.get("title", ""))
        for i, paragraph in enumerate(article.get("paragraphs", [])):
            doc_id = doc_id_prefix + squad_paragraph_id(title, i)
            for qa in paragraph.get("qas", []):
                answers = [str(a.get("text", "")).strip() for a in qa.get("answers", []) if isinstance(a, dict)]
                rows.append({"question_id": qa.get("id"), "question": qa.get("question"),
                             "expected_answers": list(dict.fromkeys(a for a in answers if a)),
                             "expected_doc_ids": [doc_id], "tags": [title], "origin": "imported"})
    if sample is not None:
        if sample < 1:
            raise EvalSetError(f"SQuAD sample size must be at least 1, got {sample}")
        if sample < len(rows):
            keep = sorted(random.Random(seed).sample(range(len(rows)), sample))
            rows = [rows[i] for i in keep]
    return normalise(pd.DataFrame(rows, columns=EVAL_COLUMNS), f"SQuAD {path}")


def load_source(spec: str) -> pd.DataFrame:
    """A loader chosen by a one-string spec, as jobs and the CLI take it.

    ``jsonl:<path>`` or ``<path>.jsonl``; ``beir:<folder>[:split]`` (split defaults to test);
    ``squad:<path>[:sample]``.
    """
    kind, sep, rest = spec.partition(":")
    if sep and kind == "jsonl":
        return load_jsonl(rest)
    if sep and kind == "beir":
        folder, split = _split_option(rest)
        return load_beir(folder, split or "test")
    if sep and kind == "squad":
        path, option = _split_option(rest)
        if option is not None and not option.isdigit():
            raise EvalSetError(f"eval set source {spec!r}: sample must be a whole number, got {option!r}")
        return load_squad(path, sample=int(option) if option else None)
    unknown_scheme = sep and kind.isalpha() and len(kind) > 1 and not Path(spec).exists()
    if spec.endswith(".jsonl") and not unknown_scheme:
        return load_jsonl(spec)
    raise EvalSetError(
        f"eval set source {spec!r} not understood; use jsonl:<path> (or a .jsonl path), "
        "beir:<folder>[:split] or squad:<path>[:sample]"
    )


def _split_option(rest: str) -> tuple[str, str | None]:
    """``<path>:<option>`` → (path, option); a path that exists as given keeps its colons."""
    head, sep, tail = rest.rpartition(":")
    if not sep or not tail or "/" in tail or "\\" in tail or Path(rest).exists():
        return rest, None
    return head, tail


def _doc_ids_from_sources(raw: Any, request_id: str) -> list[str]:
    if is_missing(raw) or not str(raw).strip():
        return []
    try:
        sources = json.loads(raw)
    except json.JSONDecodeError:
        log.warning("inference_log request %s: 'sources' is not JSON; no expected documents taken", request_id)
        return []
    if not isinstance(sources, list):
        return []
    ids = [s.get("doc_id") for s in sources if isinstance(s, dict)]
    return list(dict.fromkeys(i for i in ids if isinstance(i, str) and i))


@dataclass(frozen=True)
class RatedRequest:
    """One served (non-shadow) request with the feedback it got, oldest feedback first."""

    request_id: str
    question: str
    answer: str
    doc_ids: tuple[str, ...]  #: the documents of the sources it was served with
    ratings: tuple[int, ...]  #: up = 1, down = -1
    corrections: tuple[str, ...]  #: non-empty corrected answers

    @property
    def corrected(self) -> str | None:
        """The latest correction, if any."""
        return self.corrections[-1] if self.corrections else None

    @property
    def confirmed(self) -> bool:
        """Rated up by someone, down by nobody."""
        return bool(self.ratings) and max(self.ratings) > 0 and min(self.ratings) >= 0

    @property
    def rejected(self) -> bool:
        """Rated down, or corrected: the served answer was wrong."""
        return bool(self.corrections) or (bool(self.ratings) and min(self.ratings) < 0)


def rated_requests(lh: Lakehouse) -> list[RatedRequest]:
    """Feedback joined to the served, non-shadow ``inference_log`` row by ``request_id`` (the gateway
    writes both tables, ``ragops.serving.gateway``), one entry per request that has a question.
    What evaluation (:func:`from_feedback`) and fine-tuning (``ragops.finetune.datasets``) learn from."""
    if not (lh.exists("inference_log") and lh.exists("feedback")):
        return []
    feedback = lh.read("feedback", ["request_id", "rating", "corrected_answer", "created_at"])
    if feedback.empty:
        return []
    requests = lh.read("inference_log", ["request_id", "shadow", "question", "answer", "sources"],
                       where={"request_id": feedback["request_id"].dropna().unique().tolist()})
    # Users rated the answer they were served, not the shadow model's (logged under the same id).
    by_request = {r["request_id"]: r for r in requests.to_dict("records") if not r["shadow"]}
    out = []
    for request_id, group in feedback.sort_values("created_at", kind="stable").groupby("request_id", sort=True):
        logged = by_request.get(request_id)
        if logged is None or is_missing(logged["question"]) or not str(logged["question"]).strip():
            continue
        answer = "" if is_missing(logged["answer"]) else str(logged["answer"]).strip()
        out.append(RatedRequest(
            request_id=str(request_id), question=str(logged["question"]), answer=answer,
            doc_ids=tuple(_doc_ids_from_sources(logged["sources"], request_id)),
            ratings=tuple(int(r) for r in group["rating"] if not is_missing(r)),
            corrections=tuple(str(c).strip() for c in group["corrected_answer"] if not is_missing(c) and str(c).strip()),
        ))
    return out


def from_feedback(lh: Lakehouse) -> pd.DataFrame:
    """Questions users asked, with answers they confirmed or corrected — an eval set that follows real use.

    Per request (:func:`rated_requests`): the latest non-empty ``corrected_answer`` becomes the
    expected answer; otherwise, if it was rated positively and nobody rated it negatively, the
    served answer is expected and its logged sources become the expected documents. Corrected
    answers take no expected documents: the sources were not judged.
    """
    rows = []
    for r in rated_requests(lh):
        row = {"question_id": f"fb-{r.request_id}", "question": r.question, "origin": "feedback"}
        if r.corrected:
            row.update(expected_answers=[r.corrected], expected_doc_ids=[], tags=["feedback", "corrected"])
        elif r.confirmed and r.answer:
            row.update(expected_answers=[r.answer], expected_doc_ids=list(r.doc_ids), tags=["feedback", "positive"])
        else:
            continue
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=EVAL_COLUMNS)
    return normalise(pd.DataFrame(rows), f"feedback in {lh.location('feedback')}")
