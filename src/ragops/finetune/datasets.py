"""SFT examples and DPO preference pairs, built from eval sets and feedback in the chain's own prompt.

Every example is what the chain would send the LLM for its question: the registered prompt, the
context the chain's retriever returns *now* (``k``, search mode, similarity floor and all), so the
model learns to answer from noisy context as it will be asked to. The answer to learn is

- the eval set's first reference answer, when the context can support it (it holds the expected
  document, or the answer's text); otherwise the chain's ``DONT_KNOW``: a model trained to produce
  the answer without its evidence learns to hallucinate;
- ``DONT_KNOW`` for unanswerable questions, and for a share (``finetune_dont_know_share``) of
  answerable ones asked again with their source documents removed from the context ("don't know"
  rows, so the model learns when to decline);
- from feedback (:func:`ragops.evaluation.eval_sets.rated_requests`): a corrected answer, or an
  answer rated up by someone and down by nobody (a person's judgement: learned as it is).

Preference pairs (DPO), chosen vs rejected for the same prompt:

- ``feedback``: a correction over the answer it corrected; an up-voted answer over a down-voted
  one to the same question;
- ``distractor``: the reference over another question's answer from the same documents (a
  plausible span that answers something else);
- ``verbose``: the reference over a verbose non-answer (the small base model's habit);
- ``hallucination``: ``DONT_KNOW`` over an answer, when the context lacks the source.

**Leak-free split** (:func:`split_groups`): questions are grouped by what they are about: their
expected documents, connected (two questions sharing a document share a group), or their first
tag (``finetune_split_by=tag``: a SQuAD article). A group is ``holdout`` when any question of
``finetune_holdout_eval_set`` (the set the gates score) touches it, else ``validation`` for a
seeded ``finetune_validation_share`` of groups, else ``train``. Only ``train`` is trained on and
holdout rows are not written at all. A feedback question whose text is a holdout or validation
question goes with it.

A build is identified by ``build_id``, a hash of everything it was built from (eval set versions,
the feedback and inference-log table versions, the index snapshot, the prompt version, the chain
and builder settings): re-running with nothing changed finds the build in the tables and writes
nothing. Rows are stored in ``finetune_sft`` / ``finetune_dpo`` keyed by (build_id, id), and a
training run records the build id and both table versions as its dataset version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from ragops.chain.prompts import DONT_KNOW
from ragops.config import Settings, config_hash
from ragops.errors import RagopsError
from ragops.evaluation.eval_sets import EvalSet, RatedRequest, rated_requests, read_eval_set
from ragops.evaluation.harness import answerable, as_list
from ragops.evaluation.synthetic import answer_in_text
from ragops.lakehouse.base import Lakehouse
from ragops.llm.messages import to_dicts
from ragops.progress import progress

log = logging.getLogger(__name__)

SFT_TABLE, DPO_TABLE = "finetune_sft", "finetune_dpo"
SPLITS = ("train", "validation", "holdout")
#: Verbose non-answers (the rejected side of ``verbose`` pairs): what a small base model says instead
#: of the span the question asks for.
VERBOSE_NON_ANSWERS = (
    "Based on the context provided, the passages discuss this topic in some detail, and the answer depends on "
    "several of the factors they describe, so it is best to read them in full.",
    "The documents contain information that is related to your question. They describe the relevant background "
    "and explain the main points, which should help you find what you are looking for.",
    "According to the context, there are several aspects to consider here, and the passages above go into them; "
    "the exact answer can be found by reviewing the cited sources.",
)


class FinetuneDataError(RagopsError, ValueError):
    """The sources cannot give a training set (no eval set rows with answers, nothing left after the split)."""


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", str(text).lower()).split())


def _hash(*parts: Any, length: int = 16) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:length]


# --- the split ------------------------------------------------------------------------------


class _Groups:
    """Union-find over questions and documents: a question's documents end up in one group."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _keys(row: dict[str, Any], split_by: str) -> list[str]:
    """What ties a question to others: its documents (``doc:``) or its first tag (``tag:``); a
    question with neither is a group of its own (its normalised text, so repeats stay together)."""
    if split_by == "tag":
        tags = as_list(row.get("tags"))
        keys = [f"tag:{tags[0]}"] if tags else []
    else:
        keys = [f"doc:{d}" for d in as_list(row.get("expected_doc_ids"))]
    return keys or [f"q:{_norm(row['question'])}"]


def split_groups(rows: Sequence[dict[str, Any]], holdout: Sequence[dict[str, Any]], *, split_by: str,
                 validation_share: float, seed: int) -> tuple[list[str], list[str]]:
    """(group, split) per row of ``rows``: connected by shared keys (:func:`_keys`) and by question
    text; ``holdout`` if any ``holdout`` question is in the group, else a seeded share ``validation``."""
    uf = _Groups()
    for row in [*rows, *holdout]:
        keys = [*_keys(row, split_by), f"q:{_norm(row['question'])}"]
        for k in keys[1:]:
            uf.union(keys[0], k)
    held = {uf.find(_keys(r, split_by)[0]) for r in holdout}
    groups, splits = [], []
    for row in rows:
        g = uf.find(_keys(row, split_by)[0])
        groups.append(g)
        if g in held:
            splits.append("holdout")
        else:
            # a stable uniform draw per group (not per row), from the seed and the group's name
            u = int(hashlib.sha256(f"{seed}:{g}".encode()).hexdigest()[:12], 16) / 16**12
            splits.append("validation" if u < validation_share else "train")
    return groups, splits


# --- examples -------------------------------------------------------------------------------


@dataclass
class _Question:
    question_id: str
    question: str
    answer: str | None  # None: unanswerable
    doc_ids: list[str]
    origin: str
    kind: str = "answer"  # answer | upvoted | corrected
    rejected: list[str] = field(default_factory=list)  # answers known to be wrong (feedback)
    tags: list[str] = field(default_factory=list)

    def as_row(self) -> dict[str, Any]:
        return {"question": self.question, "expected_doc_ids": self.doc_ids, "tags": self.tags}


def _eval_questions(es: EvalSet) -> list[_Question]:
    out = []
    for row in es.frame.to_dict("records"):
        answers = as_list(row.get("expected_answers"))
        if answerable(row) and not answers:
            continue  # a retrieval-only question: nothing to learn to say
        out.append(_Question(str(row["question_id"]), str(row["question"]), answers[0] if answers else None,
                             as_list(row.get("expected_doc_ids")), f"eval_set:{es.name}@{es.version}",
                             tags=as_list(row.get("tags"))))
    return out


def _feedback_questions(requests: Iterable[RatedRequest]) -> list[_Question]:
    """Feedback as questions: the answer to learn and the answers users rejected, merged per question
    text (one user's up-vote and another's down-vote of a different answer make a pair)."""
    by_text: dict[str, _Question] = {}
    for r in requests:
        good = r.corrected or (r.answer if r.confirmed else None)
        q = by_text.get(_norm(r.question))
        if q is None:
            q = by_text[_norm(r.question)] = _Question(f"fb-{r.request_id}", r.question, None,
                                                       list(r.doc_ids), "feedback", kind="")
        if good:
            q.answer, q.kind = good, "corrected" if r.corrected else "upvoted"
            if r.corrected:
                q.doc_ids = []  # the sources were not judged
        if r.rejected and r.answer and r.answer != good:
            q.rejected.append(r.answer)
    return [q for q in by_text.values() if q.answer or q.rejected]


def _supports(results, q: _Question) -> bool:
    """Whether the retrieved context can support ``q``'s answer: it holds an expected document, or
    the answer's words appear in it (corrected feedback has no judged documents)."""
    if q.doc_ids and any(r.doc_id in q.doc_ids for r in results):
        return True
    return bool(q.answer) and any(answer_in_text(q.answer, r.text) for r in results)


@dataclass
class DatasetBuild:
    """What :func:`build_datasets` built (or found already built)."""

    build_id: str
    created: bool
    sft_rows: dict[str, int]  #: per split
    dpo_rows: dict[str, int]
    sft_kinds: dict[str, int]  #: train rows per kind
    dpo_kinds: dict[str, int]
    sft_table_version: int | None
    dpo_table_version: int | None
    sources: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def lineage(self) -> dict[str, Any]:
        """The dataset version a training run records."""
        return {"dataset_build_id": self.build_id, "finetune_sft_version": self.sft_table_version,
                "finetune_dpo_version": self.dpo_table_version,
                **{f"source_{k}": v for k, v in self.sources.items() if not isinstance(v, dict)},
                "source_eval_sets": ",".join(f"{k}@{v}" for k, v in self.sources["eval_sets"].items())}


def _builder_settings(settings: Settings) -> dict[str, Any]:
    f = settings.finetune
    return {"split_by": f.split_by, "validation_share": f.validation_share, "dont_know_share": f.dont_know_share,
            "feedback": f.feedback, "seed": f.seed, "holdout": f.holdout_eval_set}


def build_datasets(lh: Lakehouse, settings: Settings, chain) -> DatasetBuild:
    """Build (or find) the SFT and DPO datasets of ``settings.finetune`` with ``chain``'s retriever and prompt."""
    cfg = settings.finetune
    eval_sets = [read_eval_set(lh, name) for name in cfg.eval_set_names]
    holdout = read_eval_set(lh, cfg.holdout_eval_set) if cfg.holdout_eval_set else None
    feedback = rated_requests(lh) if cfg.feedback else []
    sources = {
        "eval_sets": {es.name: es.version for es in eval_sets},
        "eval_sets_table_version": lh.version("eval_sets"),
        "holdout_eval_set": f"{holdout.name}@{holdout.version}" if holdout else "",
        "feedback_table_version": lh.version("feedback") if cfg.feedback else None,
        "inference_log_table_version": lh.version("inference_log") if cfg.feedback else None,
        **{k: chain.lineage.get(k) for k in ("index_snapshot", "index_source_version", "prompt", "prompt_version",
                                              "chain_config_hash")},
        "builder_config_hash": config_hash(_builder_settings(settings)),
    }
    build_id = _hash(sources, length=12)
    lh.ensure_tables([SFT_TABLE, DPO_TABLE])
    existing = lh.read(SFT_TABLE, ["split", "kind"], where={"build_id": [build_id]})
    if not existing.empty:
        log.info("fine-tune datasets: build %s exists (nothing changed since); reusing it", build_id)
        dpo = lh.read(DPO_TABLE, ["split", "kind"], where={"build_id": [build_id]})
        return DatasetBuild(build_id, False, _counts(existing, "split"), _counts(dpo, "split"),
                            _counts(existing[existing["split"] == "train"], "kind"),
                            _counts(dpo[dpo["split"] == "train"], "kind") if not dpo.empty else {},
                            lh.version(SFT_TABLE), lh.version(DPO_TABLE), sources)

    questions = [q for es in eval_sets for q in _eval_questions(es)] + _feedback_questions(feedback)
    if not questions:
        raise FinetuneDataError(
            f"no examples: the eval sets {', '.join(cfg.eval_set_names)} have no questions with reference answers"
            + (" and no feedback rated or corrected an answer" if cfg.feedback else ""))
    held_rows = holdout.frame.to_dict("records") if holdout is not None else []
    groups, splits = split_groups([q.as_row() for q in questions], held_rows, split_by=cfg.split_by,
                                  validation_share=cfg.validation_share, seed=cfg.seed)
    sft, dpo = _examples(chain, questions, groups, splits, cfg.dont_know_share, cfg.seed)
    if not any(r["split"] == "train" for r in sft):
        raise FinetuneDataError(
            f"no training examples left after the split: {len(questions)} questions, {splits.count('holdout')} "
            f"holdout, {splits.count('validation')} validation (finetune_split_by={cfg.split_by}, "
            f"finetune_validation_share={cfg.validation_share})")
    now = datetime.now(UTC)
    payload = json.dumps(sources, sort_keys=True, default=str)
    for rows in (sft, dpo):
        for r in rows:
            r.update(build_id=build_id, sources=payload, built_at=now)
    sft_frame = pd.DataFrame(sft)
    dpo_frame = pd.DataFrame(dpo)
    sft_version = lh.upsert(SFT_TABLE, sft_frame).version
    dpo_version = lh.upsert(DPO_TABLE, dpo_frame).version if dpo else lh.version(DPO_TABLE)
    build = DatasetBuild(build_id, True, _counts(sft_frame, "split"), _counts(dpo_frame, "split") if dpo else {},
                         _counts(sft_frame[sft_frame["split"] == "train"], "kind"),
                         _counts(dpo_frame[dpo_frame["split"] == "train"], "kind") if dpo else {},
                         sft_version, dpo_version, sources)
    log.info("fine-tune datasets: build %s: SFT %s, DPO %s (train kinds: SFT %s, DPO %s)", build_id,
             build.sft_rows, build.dpo_rows, build.sft_kinds, build.dpo_kinds)
    return build


def _counts(frame: pd.DataFrame, column: str) -> dict[str, int]:
    if frame.empty:
        return {}
    return {str(k): int(v) for k, v in frame[column].value_counts().sort_index().items()}


class _Builder:
    """Writes one question's SFT rows and DPO pairs (:func:`_examples`)."""

    def __init__(self, chain, questions: list[_Question], groups: list[str], splits: list[str], seed: int) -> None:
        self.chain = chain
        self.rng = random.Random(seed)
        self.sft: list[dict[str, Any]] = []
        self.dpo: list[dict[str, Any]] = []
        # answers per group: the distractors of each other's pairs (same documents, another question)
        self.by_group: dict[str, list[str]] = {}
        for q, g, s in zip(questions, groups, splits, strict=True):
            if s != "holdout" and q.answer:
                self.by_group.setdefault(g, []).append(q.answer)
        self.all_answers = [a for answers in self.by_group.values() for a in answers]

    def distractor(self, group: str, avoid: str | None) -> str | None:
        """Another question's answer: from the same group if it has one, else from anywhere."""
        pool = [a for a in self.by_group.get(group, []) if _norm(a) != _norm(avoid or "")]
        if not pool:
            pool = [a for a in self.rng.sample(self.all_answers, min(len(self.all_answers), 20))
                    if _norm(a) != _norm(avoid or "")]
        return self.rng.choice(pool) if pool else None

    def add_sft(self, base: dict[str, Any], kind: str, prompt: str, completion: str, results) -> None:
        self.sft.append({**base, "example_id": _hash(base["question_id"], kind, prompt, completion), "kind": kind,
                         "prompt": prompt, "completion": completion,
                         "context_doc_ids": list(dict.fromkeys(r.doc_id for r in results))})

    def add_pair(self, base: dict[str, Any], kind: str, prompt: str, chosen: str, rejected: str) -> None:
        self.dpo.append({**base, "pair_id": _hash(base["question_id"], kind, prompt, chosen, rejected),
                         "kind": kind, "prompt": prompt, "chosen": chosen, "rejected": rejected})

    def without_sources(self, q: _Question) -> list:
        """What the chain's retriever returns for ``q`` once its expected documents are gone."""
        cfg = self.chain.config
        deeper = self.chain.searcher.search(q.question, k=cfg.k * 4, mode=cfg.search_mode,
                                            vector_scores=cfg.min_similarity > 0)
        return [r for r in deeper if r.doc_id not in q.doc_ids
                and (cfg.min_similarity <= 0 or (r.vector_score or 0.0) >= cfg.min_similarity)][:cfg.k]

    def question(self, q: _Question, group: str, split: str, dont_know_share: float) -> None:
        base = {"question_id": q.question_id, "question": q.question, "split": split, "split_group": group,
                "origin": q.origin}
        results = self.chain.retrieve(q.question)
        prompt = _prompt(self.chain, q.question, results)
        if q.answer is None:  # unanswerable (feedback with only rejected answers has no chosen side)
            if q.origin != "feedback" and results:
                self.add_sft(base, "dont_know", prompt, DONT_KNOW, results)
                if (wrong := self.distractor(group, None)) is not None:
                    self.add_pair(base, "hallucination", prompt, DONT_KNOW, wrong)
            return
        # A person's correction or up-vote is trusted as it is; a reference answer is learned only
        # where the retrieved context can support it.
        supported = q.origin == "feedback" or _supports(results, q)
        if results:  # with no context the chain answers DONT_KNOW itself and never asks the LLM
            target = q.answer if supported else DONT_KNOW
            kind = (q.kind if q.origin == "feedback" else "answer") if supported else "dont_know"
            self.add_sft(base, kind, prompt, target, results)
            for wrong in q.rejected:
                self.add_pair(base, "feedback", prompt, target, wrong)
            if supported:
                if (wrong := self.distractor(group, q.answer)) is not None:
                    self.add_pair(base, "distractor", prompt, q.answer, wrong)
                verbose = VERBOSE_NON_ANSWERS[self.rng.randrange(len(VERBOSE_NON_ANSWERS))]
                self.add_pair(base, "verbose", prompt, q.answer, verbose)
            else:
                self.add_pair(base, "hallucination", prompt, DONT_KNOW, q.answer)
        # the same question with its sources taken out of the context: learn to decline
        if supported and q.doc_ids and self.rng.random() < dont_know_share:
            without = self.without_sources(q)
            if without and not _supports(without, q):
                p = _prompt(self.chain, q.question, without)
                self.add_sft(base, "dont_know", p, DONT_KNOW, without)
                self.add_pair(base, "hallucination", p, DONT_KNOW, q.answer)


def _examples(chain, questions: list[_Question], groups: list[str], splits: list[str], dont_know_share: float,
              seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    builder = _Builder(chain, questions, groups, splits, seed)
    todo = [(q, g, s) for q, g, s in zip(questions, groups, splits, strict=True) if s != "holdout"]
    with progress(len(todo), desc="fine-tune examples", unit="question") as bar:
        for q, group, split in todo:
            builder.question(q, group, split, dont_know_share)
            bar.update()
    return _dedupe(builder.sft, "example_id"), _dedupe(builder.dpo, "pair_id")


def _dedupe(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for r in rows:
        seen.setdefault(r[key], r)
    return list(seen.values())


def _prompt(chain, question: str, results) -> str:
    return json.dumps(to_dicts(chain.messages(question, [], results)), ensure_ascii=False)


# --- reading them back for the trainers ------------------------------------------------------


def read_sft(lh: Lakehouse, build_id: str, split: str = "train", *, version: int | None = None) -> list[dict[str, Any]]:
    """TRL conversational prompt-completion records of one build and split, in a stable order."""
    frame = _read(lh, SFT_TABLE, build_id, split, version)
    return [{"prompt": json.loads(r.prompt), "completion": [{"role": "assistant", "content": r.completion}]}
            for r in frame.itertuples()]


def read_dpo(lh: Lakehouse, build_id: str, split: str = "train", *, version: int | None = None) -> list[dict[str, Any]]:
    """TRL conversational preference records (prompt, chosen, rejected) of one build and split."""
    frame = _read(lh, DPO_TABLE, build_id, split, version)
    return [{"prompt": json.loads(r.prompt), "chosen": [{"role": "assistant", "content": r.chosen}],
             "rejected": [{"role": "assistant", "content": r.rejected}]} for r in frame.itertuples()]


def _read(lh: Lakehouse, table: str, build_id: str, split: str, version: int | None) -> pd.DataFrame:
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: use {', '.join(SPLITS)}")
    if not lh.exists(table):
        return pd.DataFrame(columns=["prompt"])
    frame = lh.read(table, version=version, where={"build_id": [build_id]})
    frame = frame[frame["split"] == split]
    key = "example_id" if table == SFT_TABLE else "pair_id"
    return frame.sort_values(key, kind="stable")
