"""Train the person-name detector shipped as ``src/ragops/guardrails/person_model.json``.

Data: presidio-research's ``synth_dataset_v2.json`` (microsoft/presidio-research, MIT licence), read
from ``/work/shared/datasets/guardrails/pii_synth_dataset_v2.json`` (``--dataset``); never copied
into the project. What ships is derived from it: feature weights and the lower-cased name tokens
seen in the TRAIN split (the gazetteer), and the list of TEST templates so the benchmark and the test
measure on exactly the sentences the model never saw.

Split: by *template* (``template_id``), not by sentence. The 1,500 sentences are ~200 templates
filled with different values; a sentence split would put the same context ("My name is ...") on
both sides and overstate what the model learned. A template is TEST when
``sha1(str(template_id))`` mod 100 < 20 (≈20% of templates; deterministic, no seed to lose).

Model: a token classifier (is this word part of a person name?): L2 logistic regression over
``ragops.guardrails.pii.token_features`` (word, shape, affixes, two words either side, line
position, gazetteer membership of the word and its neighbours, whether it is a "common word" seen
in lower case in SQuAD/SciFact prose, whether it occurs in TRAIN's GPE / ORGANIZATION / STREET_ADDRESS /
NRP / TITLE spans). The gazetteer features are
*cross-fitted*: on TRAIN, each fold's tokens see a gazetteer built from the other folds only, so the
model learns how much to trust "this word was seen as a name elsewhere" for names it has not
memorised; at run time the gazetteer is every TRAIN name token. 2,000 sentences of SciFact abstracts
are added as all-negative examples (to every CV training fold and the final fit, never to the CV
evaluation): the synthetic set has no capitalised sentence-initial technical terms that are not names. The decision threshold is the one
with the best span F1 among those keeping recall >= 0.85 in a grouped 5-fold cross-validation on
TRAIN; TEST is not looked at.

    .venv/bin/python benchmarks/train_person_detector.py            # writes person_model.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LogisticRegression

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from ragops.guardrails.pii import (  # noqa: E402
    PERSON_MODEL_PATH,
    decode_person_spans,
    token_features,
    tokenize,
)

DEFAULT_DATASET = Path("/work/shared/datasets/guardrails/pii_synth_dataset_v2.json")
# General English prose for the "common word" list: SQuAD v1.1 dev contexts (Wikipedia, CC BY-SA 4.0)
# and SciFact abstracts. A word counts when it occurs in all-lower-case form at least COMMON_MIN times.
SQUAD = Path("/work/shared/datasets/squad_v1.1/dev-v1.1.json")
SCIFACT = Path("/work/shared/datasets/scifact/corpus.jsonl")
COMMON_MIN = 3
# Sentences of SciFact abstracts used as extra all-negative examples (scientific prose rarely names
# anyone): the synthetic set never shows a capitalised sentence-initial drug or a nationality as a
# non-name, so without them "Albendazole reduces ..." reads like "Kelly is very reliable".
NEGATIVE_SENTENCES = 2000
TEST_PERCENT = 20
FOLDS = 5
MIN_CV_RECALL = 0.85


def is_test_template(template_id: int) -> bool:
    return int(hashlib.sha1(str(template_id).encode()).hexdigest(), 16) % 100 < TEST_PERCENT


def load(dataset: Path) -> list[dict]:
    return json.loads(dataset.read_text(encoding="utf-8"))


def common_words(squad: Path, scifact: Path) -> set[str]:
    """Words seen in lower case at least COMMON_MIN times in general prose (names rarely are)."""
    from collections import Counter

    texts = []
    if squad.exists():
        for art in json.loads(squad.read_text(encoding="utf-8"))["data"]:
            texts.extend(p["context"] for p in art["paragraphs"])
    if scifact.exists():
        with scifact.open(encoding="utf-8") as f:
            texts.extend(json.loads(line)["text"] for line in f)
    counts: Counter[str] = Counter()
    for t in texts:
        counts.update(tok for tok, _, _ in tokenize(t) if tok.isalpha() and tok.islower() and len(tok) > 1)
    return {w for w, c in counts.items() if c >= COMMON_MIN}


def negative_sentences(scifact: Path, n: int) -> list[dict]:
    import re

    if not scifact.exists() or n <= 0:
        return []
    out = []
    with scifact.open(encoding="utf-8") as f:
        for k, line in enumerate(f):
            if k % 2:
                continue  # every other abstract, for variety within the budget
            for sent in re.split(r"(?<=[.!?])\s+", json.loads(line)["text"]):
                if 30 <= len(sent) <= 300:
                    out.append({"full_text": sent, "spans": [], "template_id": -1})
                    break
            if len(out) >= n:
                break
    return out


def person_spans(rec: dict) -> list[tuple[int, int]]:
    return [(s["start_position"], s["end_position"]) for s in rec["spans"] if s["entity_type"] == "PERSON"]


def token_labels(tokens, gold) -> list[int]:
    """1 for a word token that overlaps a gold PERSON span."""
    return [int(tok[0].isalpha() and any(st < ge and gs < en for gs, ge in gold)) for tok, st, en in tokens]


OTHER_TYPES = ("GPE", "ORGANIZATION", "STREET_ADDRESS", "NRP", "TITLE")


def name_tokens(recs, types=("PERSON",)) -> set[str]:
    """Lower-cased word tokens of the gold spans of ``types``."""
    out = set()
    for rec in recs:
        text = rec["full_text"]
        spans = [(x["start_position"], x["end_position"]) for x in rec["spans"] if x["entity_type"] in types]
        for s, e in spans:
            for tok, _, _ in tokenize(text[s:e]):
                if tok[0].isalpha() and len(tok) > 1:
                    out.add(tok.lower())
    return out


def featurize(recs, gazetteer, common, others) -> tuple[list[dict], list[int], list[tuple[int, int]]]:
    """Feature dicts and labels of the word tokens, and (record index, token index) of each row."""
    X, y, where = [], [], []
    for ri, rec in enumerate(recs):
        text = rec["full_text"]
        tokens = tokenize(text)
        labels = token_labels(tokens, person_spans(rec))
        for ti, (tok, _, _) in enumerate(tokens):
            if not tok[0].isalpha():
                continue
            X.append(dict.fromkeys(token_features(text, tokens, ti, gazetteer, common, others), 1))
            y.append(labels[ti])
            where.append((ri, ti))
    return X, y, where


def span_scores(recs, where, proba) -> list[list[float]]:
    per = [[0.0] * len(tokenize(r["full_text"])) for r in recs]
    for (ri, ti), p in zip(where, proba, strict=True):
        per[ri][ti] = float(p)
    return per


def span_metrics(recs, per_token, threshold) -> dict:
    """Overlap matching: a gold name is found when a predicted PERSON span overlaps it; a predicted
    span is correct when it overlaps some gold name."""
    tp_gold = n_gold = tp_pred = n_pred = 0
    for rec, scores in zip(recs, per_token, strict=True):
        text = rec["full_text"]
        pred = decode_person_spans(text, tokenize(text), scores, threshold)
        gold = person_spans(rec)
        n_gold += len(gold)
        n_pred += len(pred)
        tp_gold += sum(any(p.start < e and s < p.end for p in pred) for s, e in gold)
        tp_pred += sum(any(p.start < e and s < p.end for s, e in gold) for p in pred)
    recall = tp_gold / n_gold if n_gold else 1.0
    precision = tp_pred / n_pred if n_pred else 1.0
    return {"recall": recall, "precision": precision, "gold": n_gold, "predicted": n_pred}


def fold_of(template_id: int) -> int:
    return int(hashlib.sha1(f"fold-{template_id}".encode()).hexdigest(), 16) % FOLDS


def crossfit_features(recs, common):
    """Features of every TRAIN record with a gazetteer from the other folds' names."""
    folds = defaultdict(list)
    for i, r in enumerate(recs):
        folds[fold_of(r["template_id"])].append(i)
    X = [None] * len(recs)
    for k, idx in folds.items():
        others = [recs[i] for kk, ii in folds.items() if kk != k for i in ii]
        gaz = name_tokens(others)
        other_gaz = name_tokens(others, OTHER_TYPES) - gaz
        for i in idx:
            X[i] = featurize([recs[i]], gaz, common, other_gaz)
    return X, folds


def fit(rows, C):
    vec = DictVectorizer()
    Xm = vec.fit_transform([x for r in rows for x in r[0]])
    y = np.array([v for r in rows for v in r[1]])
    clf = LogisticRegression(C=C, max_iter=2000, class_weight={0: 1.0, 1: 2.0})
    clf.fit(Xm, y)
    return vec, clf


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    ap.add_argument("--out", type=Path, default=PERSON_MODEL_PATH)
    ap.add_argument("--squad", type=Path, default=SQUAD)
    ap.add_argument("--scifact", type=Path, default=SCIFACT)
    ap.add_argument("--negatives", type=int, default=NEGATIVE_SENTENCES)
    ap.add_argument("--C", type=float, default=0.3)
    ap.add_argument("--prune", type=float, default=0.01, help="drop weights smaller than this")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    data = load(args.dataset)
    train = [r for r in data if not is_test_template(r["template_id"])]
    test_templates = sorted({r["template_id"] for r in data if is_test_template(r["template_id"])})
    print(f"{len(train)} TRAIN sentences, {len(data) - len(train)} TEST ({len(test_templates)} templates)")

    common = common_words(args.squad, args.scifact)
    print(f"{len(common)} common words")
    feats, folds = crossfit_features(train, common)
    negatives = negative_sentences(args.scifact, args.negatives)
    all_names = name_tokens(train)
    all_others = name_tokens(train, OTHER_TYPES) - all_names
    neg_feats = [featurize([r], all_names, common, all_others) for r in negatives]
    print(f"{len(negatives)} negative sentences from {args.scifact}")

    # Threshold: grouped CV on TRAIN only.
    cv_scores = [None] * len(train)
    for k, idx in folds.items():
        tr = [feats[i] for kk, ii in folds.items() if kk != k for i in ii] + neg_feats
        vec, clf = fit(tr, args.C)
        for i in idx:
            X, _, where = feats[i]
            proba = clf.predict_proba(vec.transform(X))[:, 1] if X else []
            cv_scores[i] = span_scores([train[i]], where, proba)[0]
    best = None
    for thr in np.arange(0.05, 0.91, 0.025):
        m = span_metrics(train, cv_scores, float(thr))
        p, r = m["precision"], m["recall"]
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        # Best F1 among thresholds keeping CV recall >= MIN_CV_RECALL (a margin over the 0.80 target,
        # as unseen templates may be harder); the highest-recall threshold if none does.
        key = (r >= MIN_CV_RECALL, f1 if r >= MIN_CV_RECALL else r)
        if best is None or key > best[0]:
            best = (key, float(thr), m, f1)
    _, threshold, cvm, f1 = best
    print(f"CV on TRAIN: threshold {threshold:.3f} F1 {f1:.3f} recall {cvm['recall']:.3f} "
          f"precision {cvm['precision']:.3f}")

    vec, clf = fit(feats + neg_feats, args.C)
    names = vec.get_feature_names_out()
    coef = clf.coef_[0]
    weights = {n: round(float(w), 4) for n, w in zip(names, coef, strict=True) if abs(w) >= args.prune}
    gazetteer = sorted(name_tokens(train))
    other_tokens = sorted(name_tokens(train, OTHER_TYPES) - set(gazetteer))
    model = {
        "about": (
            "Person-name token classifier for ragops.guardrails.pii, built by "
            "benchmarks/train_person_detector.py from the TRAIN split of microsoft/presidio-research "
            "data/synth_dataset_v2.json (MIT licence, Copyright (c) Microsoft Corporation). Weights are "
            "logistic-regression coefficients over token_features(); gazetteer is the lower-cased name "
            "tokens of the TRAIN split; common_words are words seen "
            f"in lower case >= {COMMON_MIN} times in SQuAD v1.1 dev contexts (CC BY-SA 4.0) and SciFact abstracts; "
            "other_entity_tokens are the lower-cased TRAIN tokens of GPE/ORGANIZATION/STREET_ADDRESS/NRP/TITLE "
            "spans that are not name tokens. Training also used 2,000 SciFact abstract sentences as all-negative "
            "examples (none of their text is stored here)."
        ),
        "split": {
            "rule": f"template TEST iff int(sha1(str(template_id)), 16) % 100 < {TEST_PERCENT}",
            "test_template_ids": test_templates,
        },
        "cv_train": {"threshold": threshold, **cvm},
        "C": args.C,
        "bias": round(float(clf.intercept_[0]), 4),
        "threshold": threshold,
        "gazetteer": gazetteer,
        "common_words": sorted(common),
        "other_entity_tokens": other_tokens,
        "weights": weights,
    }
    args.out.write_text(json.dumps(model, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    print(f"{len(weights)} weights, {len(gazetteer)} gazetteer tokens -> {args.out} "
          f"({args.out.stat().st_size / 1e6:.2f} MB) in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
