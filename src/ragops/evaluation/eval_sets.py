"""Versioned evaluation sets in the ``eval_sets`` Delta table, and loaders for the formats they come from.

An eval set is a named list of questions with what a correct answer contains
(``expected_answers``) and which documents hold it (``expected_doc_ids``). Every registration of
changed content becomes a new ``version`` of the set; registering unchanged content is a no-op
(no Delta commit), so a job can re-register its source on every run. An evaluation records both
the eval-set version and the Delta table version it read, so it can be re-run exactly later with
``read_eval_set(..., table_version=...)`` even after the set has moved on.

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

import difflib
import hashlib
import json
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ragops.errors import RagopsError
from ragops.lakehouse.base import Lakehouse, LakehouseError
from ragops.lakehouse.schemas import EVAL_SETS, SchemaError, utcnow, validate

log = logging.getLogger(__name__)

TABLE = EVAL_SETS.name
#: The columns of one eval-set version as loaders return it (the table adds eval_set, version, created_at).
EVAL_COLUMNS: list[str] = [c for c in EVAL_SETS.columns if c not in ("eval_set", "version", "created_at")]
LIST_FIELDS = ("expected_answers", "expected_doc_ids", "tags")
REQUIRED_FIELDS = ("question_id", "question")
#: Written when a source does not say where its questions came from.
DEFAULT_ORIGIN = "unknown"
_TABLE_ONLY = ("eval_set", "version", "created_at")


class EvalSetError(RagopsError, ValueError):
    """An eval set or its source is invalid or missing; the message names the file/row/field."""


@dataclass
class EvalSetVersion:
    """What :func:`register_eval_set` did: ``created`` is False when the content was unchanged."""

    name: str
    version: int
    rows: int
    created: bool
    table_version: int | None


@dataclass
class EvalSet:
    """One version of an eval set, with the Delta table version it was read from (for exact re-runs)."""

    name: str
    version: int
    table_version: int
    frame: pd.DataFrame

    def __len__(self) -> int:
        return len(self.frame)


# --- normalisation ------------------------------------------------------------------------------------
def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r:.60}"


def _str_list(value: Any, where: str, field: str) -> list[str]:
    if _missing(value):
        return []
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, (list, tuple, np.ndarray)):
        hint = f' (write ["{value}"])' if isinstance(value, str) else ""
        raise EvalSetError(f"{where}: field {field!r} must be a list of strings, got {_describe(value)}{hint}")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise EvalSetError(f"{where}: field {field!r}[{i}] must be a string, got {_describe(item)}")
        if not item.strip():
            raise EvalSetError(f"{where}: field {field!r}[{i}] is an empty string; remove it")
        out.append(item.strip())
    return out


def _check_columns(df: pd.DataFrame, source: str) -> None:
    columns = [str(c) for c in df.columns]
    unknown = [c for c in columns if c not in EVAL_COLUMNS and c not in _TABLE_ONLY]
    for col in unknown:
        close = difflib.get_close_matches(col, [c for c in EVAL_COLUMNS if c not in columns], n=1, cutoff=0.8)
        if close:
            raise EvalSetError(f"{source}: unknown field {col!r}; did you mean {close[0]!r}?")
    missing = [c for c in REQUIRED_FIELDS if c not in columns]
    if missing:
        raise EvalSetError(
            f"{source}: missing required field(s) {missing} (has {columns}); every question needs "
            f"{list(REQUIRED_FIELDS)}"
        )
    if unknown:
        log.warning("%s: ignoring fields %s (an eval set has %s)", source, unknown, EVAL_COLUMNS)


def normalise(df: pd.DataFrame, source: str, *, row_labels: Sequence[str] | None = None) -> pd.DataFrame:
    """Check a frame of questions and return it with exactly :data:`EVAL_COLUMNS`.

    Every check happens here, before anything is written, so a bad file never leaves half an eval
    set behind. Missing optional lists become ``[]``; strings are stripped. ``source`` (a file, a
    dataset) and ``row_labels`` (e.g. ``line 7``) only make error messages point at the culprit.
    """
    if not isinstance(df, pd.DataFrame):
        raise EvalSetError(f"{source}: expected a pandas DataFrame of questions, got {type(df).__name__}")
    _check_columns(df, source)
    labels = list(row_labels) if row_labels is not None else [f"row {i}" for i in range(len(df))]
    if len(labels) != len(df):
        raise ValueError(f"{len(labels)} row labels for {len(df)} rows")
    rows: list[dict[str, Any]] = []
    first_seen: dict[str, str] = {}
    records = df.to_dict("records")
    for label, rec in zip(labels, records, strict=True):
        qid = rec.get("question_id")
        if isinstance(qid, (int, np.integer)) and not isinstance(qid, bool):
            qid = str(qid)
        if _missing(qid) or (isinstance(qid, str) and not qid.strip()):
            raise EvalSetError(f"{source}: {label}: field 'question_id' is missing or empty")
        if not isinstance(qid, str):
            raise EvalSetError(f"{source}: {label}: field 'question_id' must be a string, got {_describe(qid)}")
        qid = qid.strip()
        where = f"{source}: {label} (question_id {qid!r})"
        if qid in first_seen:
            raise EvalSetError(
                f"{where}: duplicate question_id, first used at {first_seen[qid]}; question ids must be unique"
            )
        first_seen[qid] = label
        question = rec.get("question")
        if _missing(question) or (isinstance(question, str) and not question.strip()):
            raise EvalSetError(f"{where}: field 'question' is missing or empty")
        if not isinstance(question, str):
            raise EvalSetError(f"{where}: field 'question' must be a string, got {_describe(question)}")
        origin = rec.get("origin")
        if _missing(origin):
            origin = DEFAULT_ORIGIN
        if not isinstance(origin, str) or not origin.strip():
            raise EvalSetError(f"{where}: field 'origin' must be a non-empty string, got {_describe(origin)}")
        row = {"question_id": qid, "question": question.strip()}
        for field in LIST_FIELDS:
            row[field] = _str_list(rec.get(field), where, field)
        row["origin"] = origin.strip()
        rows.append(row)
    return pd.DataFrame(rows, columns=EVAL_COLUMNS)


def content_hash(frame: pd.DataFrame) -> str:
    """A hash of the questions that ignores row order (and ``created_at``): equal hash, same eval set."""
    norm = frame if list(frame.columns) == EVAL_COLUMNS else normalise(frame, "content_hash")
    rows = sorted(
        [r["question_id"], r["question"], *(list(r[f]) for f in LIST_FIELDS), r["origin"]]
        for r in norm.to_dict("records")
    )
    payload = json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


# --- loaders ------------------------------------------------------------------------------------------
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


# --- feedback -----------------------------------------------------------------------------------------
def _doc_ids_from_sources(raw: Any, request_id: str) -> list[str]:
    if _missing(raw) or not str(raw).strip():
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


def from_feedback(lh: Lakehouse) -> pd.DataFrame:
    """Questions users asked, with answers they confirmed or corrected — an eval set that follows real use.

    Per request (feedback joined to ``inference_log`` by ``request_id``): the latest non-empty
    ``corrected_answer`` becomes the expected answer; otherwise, if it was rated positively and
    nobody rated it negatively, the served answer is expected and its logged sources become the
    expected documents. Corrected answers take no expected documents: the sources were not judged.
    """
    empty = pd.DataFrame(columns=EVAL_COLUMNS)
    if not (lh.exists("inference_log") and lh.exists("feedback")):
        return empty
    feedback = lh.read("feedback", ["request_id", "rating", "corrected_answer", "created_at"])
    if feedback.empty:
        return empty
    requests = lh.read("inference_log", ["request_id", "question", "answer", "sources"],
                       where={"request_id": feedback["request_id"].dropna().unique().tolist()})
    by_request = {r["request_id"]: r for r in requests.to_dict("records")}
    rows = []
    for request_id, group in feedback.sort_values("created_at", kind="stable").groupby("request_id", sort=True):
        logged = by_request.get(request_id)
        if logged is None or _missing(logged["question"]) or not str(logged["question"]).strip():
            continue
        corrections = [c for c in group["corrected_answer"] if not _missing(c) and str(c).strip()]
        ratings = [int(r) for r in group["rating"] if not _missing(r)]
        row = {"question_id": f"fb-{request_id}", "question": logged["question"], "origin": "feedback"}
        if corrections:
            row.update(expected_answers=[str(corrections[-1]).strip()], expected_doc_ids=[],
                       tags=["feedback", "corrected"])
        elif ratings and max(ratings) > 0 and min(ratings) >= 0:
            answer = logged["answer"]
            if _missing(answer) or not str(answer).strip():
                continue
            row.update(expected_answers=[str(answer).strip()],
                       expected_doc_ids=_doc_ids_from_sources(logged["sources"], request_id),
                       tags=["feedback", "positive"])
        else:
            continue
        rows.append(row)
    if not rows:
        return empty
    return normalise(pd.DataFrame(rows), f"feedback in {lh.location('feedback')}")


# --- the eval_sets table ------------------------------------------------------------------------------
def _read_table(lh: Lakehouse, table_version: int | None, name: str | None = None) -> tuple[int, pd.DataFrame]:
    """The table (or one eval set of it) at a fixed Delta version, so what is read and the version
    reported always agree."""
    current = lh.version(TABLE)
    if current is None:
        raise EvalSetError(
            f"no eval sets registered yet ({TABLE} table at {lh.location(TABLE)} does not exist); "
            "register one first with register_eval_set"
        )
    tv = current if table_version is None else table_version
    if tv < 0 or tv > current:
        raise EvalSetError(f"{TABLE} table has no version {tv}; its versions are 0..{current}")
    try:
        frame = lh.read(TABLE, version=tv, where={"eval_set": [name]} if name is not None else None)
    except LakehouseError as exc:  # e.g. a version removed by VACUUM
        raise EvalSetError(f"cannot read {TABLE} as of version {tv}: {exc}") from exc
    return tv, frame


def _available(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "none"
    versions = frame.groupby("eval_set")["version"].agg(lambda v: sorted({int(x) for x in v}))
    return ", ".join(f"{name} (versions {', '.join(map(str, vs))})" for name, vs in versions.items())


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise EvalSetError(f"eval set name {name!r}: use a non-empty name without surrounding spaces")
    return name


def register_eval_set(lh: Lakehouse, name: str, df: pd.DataFrame, *, origin: str | None = None) -> EvalSetVersion:
    """Store ``df`` as the next version of eval set ``name`` — unless it equals the latest version.

    Content is compared by :func:`content_hash` (row order does not matter), so re-running the
    job that registers a set creates no Delta commit and no new version. Everything is validated
    before the single append, so bad input leaves the table untouched. One writer per eval set at
    a time (a job), as two concurrent registrations could pick the same version number.
    """
    _check_name(name)
    frame = normalise(df, f"eval set {name!r}")
    if origin is not None:
        if not isinstance(origin, str) or not origin.strip():
            raise EvalSetError(f"eval set {name!r}: origin must be a non-empty string, got {origin!r}")
        frame["origin"] = origin.strip()
    if frame.empty:
        raise EvalSetError(f"eval set {name!r}: no questions to register")
    latest, table_version = 0, lh.version(TABLE)
    if table_version is not None:
        _, existing = _read_table(lh, table_version, name)
        if not existing.empty:
            latest = int(existing["version"].max())
            current = existing[existing["version"] == latest]
            if content_hash(normalise(current, f"{TABLE} {name!r} v{latest}")) == content_hash(frame):
                log.info("eval set %s: unchanged, stays at version %d (%d questions)", name, latest, len(current))
                return EvalSetVersion(name, latest, len(current), False, table_version)
    version = latest + 1
    rows = frame.assign(eval_set=name, version=np.int32(version), created_at=utcnow())[EVAL_SETS.columns]
    rows["version"] = rows["version"].astype("int32")
    try:
        validate(TABLE, rows)
    except SchemaError as exc:
        raise EvalSetError(f"eval set {name!r}: {exc}") from exc
    result = lh.append(TABLE, rows)
    log.info("eval set %s: registered version %d (%d questions, table version %s)", name, version, len(rows),
             result.version)
    return EvalSetVersion(name, version, len(rows), True, result.version)


def read_eval_set(lh: Lakehouse, name: str, version: int | None = None, *,
                  table_version: int | None = None) -> EvalSet:
    """One version of an eval set (the latest by default), as of the current table or of ``table_version``.

    Passing the ``table_version`` an evaluation recorded reads exactly the questions it scored.
    """
    tv, mine = _read_table(lh, table_version, name)
    if mine.empty:
        everything = lh.read(TABLE, ["eval_set", "version"], version=tv)
        raise EvalSetError(
            f"no eval set {name!r} in {TABLE} (table version {tv}); available: {_available(everything)}"
        )
    versions = sorted({int(v) for v in mine["version"]})
    chosen = versions[-1] if version is None else int(version)
    if chosen not in versions:
        raise EvalSetError(
            f"eval set {name!r} has no version {chosen} (table version {tv}); its versions are {versions}"
        )
    rows = mine[mine["version"] == chosen].sort_values("question_id", kind="stable")
    return EvalSet(name, chosen, tv, normalise(rows, f"{TABLE} {name!r} v{chosen}"))


def list_eval_sets(lh: Lakehouse) -> pd.DataFrame:
    """Every version of every eval set: question count, origins and when it was registered."""
    columns = ["eval_set", "version", "questions", "origins", "created_at"]
    if not lh.exists(TABLE):
        return pd.DataFrame(columns=columns)
    frame = lh.read(TABLE, ["eval_set", "version", "question_id", "origin", "created_at"])
    if frame.empty:
        return pd.DataFrame(columns=columns)
    out = (
        frame.groupby(["eval_set", "version"], sort=True)
        .agg(questions=("question_id", "size"),
             origins=("origin", lambda o: ", ".join(sorted({x for x in o if isinstance(x, str)}))),
             created_at=("created_at", "min"))
        .reset_index()
    )
    out["version"] = out["version"].astype(int)
    return out[columns]


__all__ = [
    "DEFAULT_ORIGIN",
    "EVAL_COLUMNS",
    "EvalSet",
    "EvalSetError",
    "EvalSetVersion",
    "content_hash",
    "from_feedback",
    "list_eval_sets",
    "load_beir",
    "load_jsonl",
    "load_source",
    "load_squad",
    "normalise",
    "read_eval_set",
    "register_eval_set",
    "squad_corpus",
    "squad_paragraph_id",
]
