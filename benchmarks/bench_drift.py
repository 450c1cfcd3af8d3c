"""Query drift (issue 14): power and false-alarm rate of ``ragops.monitoring.drift.detect_drift``,
by simulation over many windows of real questions.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_drift.py [--windows 1000] [--compare 100] [--seed 0]

Data, read by path from ``../shared/datasets`` (never copied into the project): the 1,109 SciFact
queries (claims, the "in-distribution" traffic) and the 10,570 SQuAD v1.1 dev questions (the
"different corpus"). Every text is embedded once with ``embed_queries`` (the index's query embedder)
and cached under ``/tmp/ragops-bench/drift``.

Scenarios, each over ``--windows`` null windows and as many drift windows:

- ``reference``: a fixed random sample of 300 SciFact queries plays the eval set; a null window is 500
  queries drawn without replacement from the other 809 (so windows never share a query with the
  reference, but overlap one another: 809 is all there is); a drift window is 400 of those plus 100
  SQuAD questions (20%).
- ``reference_redrawn``: the same, with a new random reference of 300 drawn for every window, so the
  rates do not hang on one lucky or unlucky reference sample.
- ``previous``: against the previous window instead of the eval set: two disjoint windows of 500 drawn
  from all 1,109 SciFact queries (null), or a SciFact window of 500 followed by a disjoint window of
  400 SciFact + 100 SQuAD (drift).

Reports power (share of drift windows flagged), false-alarm rate (share of null windows flagged) with
Wilson 95% intervals, the AUC and outlier-share distributions (mean, 5th/95th percentile), the wall
time of one test, and how the rates move for other choices of Z and MIN_EFFECT (which is how the
module's constants were chosen), and on the first ``--compare`` windows the AUC of a logistic
regression C2ST on the same windows. Results go to ``benchmarks/results/bench_drift.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO_ROOT, load_queries, loadavg, machine_info, now_iso, write_result  # noqa: E402

from ragops.config import Settings  # noqa: E402
from ragops.embedding import embedder_identity  # noqa: E402
from ragops.monitoring import drift  # noqa: E402

DATASETS = REPO_ROOT.parent / "shared" / "datasets"
SCIFACT = DATASETS / "scifact"
SQUAD = DATASETS / "squad_v1.1" / "dev-v1.1.json"
CACHE = Path("/tmp/ragops-bench/drift")
REFERENCE_SIZE, WINDOW, DRIFT_SHARE = 300, 500, 0.20
SCENARIOS = ("reference", "reference_redrawn", "previous")

log = logging.getLogger("bench_drift")


def squad_questions(path: Path = SQUAD) -> list[str]:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    return [qa["question"] for article in data for paragraph in article["paragraphs"] for qa in paragraph["qas"]]


def cached_embeddings(settings: Settings, name: str, texts: list[str]) -> np.ndarray:
    """``embed_queries(texts)``, cached on disk by embedder identity and text content."""
    key = hashlib.sha256(("\n".join([embedder_identity(settings.embedding), *texts])).encode()).hexdigest()[:16]
    path = CACHE / f"{name}-{key}.npy"
    if path.is_file():
        return np.load(path)
    started = time.perf_counter()
    vectors = np.asarray(drift.embed_queries(settings, texts))
    log.info("embedded %d %s texts in %.1f s", len(texts), name, time.perf_counter() - started)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def wilson(successes: int, n: int, z: float = 1.96) -> list[float]:
    if n == 0:
        return [math.nan, math.nan]
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def summary(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    return {"mean": round(float(a.mean()), 4), "sd": round(float(a.std(ddof=1)), 4),
            "p5": round(float(np.percentile(a, 5)), 4), "p95": round(float(np.percentile(a, 95)), 4),
            "min": round(float(a.min()), 4), "max": round(float(a.max()), 4)}


def draw(rng: np.random.Generator, scenario: str, kind: str, scifact: np.ndarray, squad: np.ndarray,
         fixed_reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(reference, window) rows for one simulated window."""
    n_drift = round(WINDOW * DRIFT_SHARE) if kind == "drift" else 0
    if scenario == "previous":
        order = rng.permutation(len(scifact))
        reference_rows, rest = order[:WINDOW], order[WINDOW:]
    else:
        order = fixed_reference if scenario == "reference" else rng.permutation(len(scifact))
        reference_rows = order[:REFERENCE_SIZE]
        rest = np.setdiff1d(np.arange(len(scifact)), reference_rows) if scenario == "reference" \
            else order[REFERENCE_SIZE:]
    in_distribution = rng.choice(rest, WINDOW - n_drift, replace=False)
    window = scifact[in_distribution]
    if n_drift:
        window = np.vstack([window, squad[rng.choice(len(squad), n_drift, replace=False)]])
    return scifact[reference_rows], window


def logistic_auc(reference: np.ndarray, current: np.ndarray, seed: int) -> float:
    """The textbook C2ST for comparison: one 5-fold split, L2-regularised logistic regression (C=0.1)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    features = np.vstack([reference, current])
    labels = np.r_[np.zeros(len(reference)), np.ones(len(current))]
    scores = np.empty(len(labels))
    for train, test in StratifiedKFold(5, shuffle=True, random_state=seed).split(features, labels):
        model = LogisticRegression(C=0.1, class_weight="balanced", max_iter=500).fit(features[train], labels[train])
        scores[test] = model.decision_function(features[test])
    return float(roc_auc_score(labels, scores))


def run_scenario(scenario: str, windows: int, seed: int, scifact: np.ndarray, squad: np.ndarray,
                 fixed_reference: np.ndarray, compare: int) -> dict:
    out: dict = {}
    raw: dict = {}
    for kind in ("null", "drift"):
        rng = np.random.default_rng([seed, SCENARIOS.index(scenario), int(kind == "drift")])
        aucs, outliers, flagged, seconds, logistic = [], [], 0, [], []
        threshold = None
        for i in range(windows):
            reference, window = draw(rng, scenario, kind, scifact, squad, fixed_reference)
            started = time.perf_counter()
            result = drift.detect_drift(reference, window, seed=i)
            seconds.append(time.perf_counter() - started)
            aucs.append(result.statistic)
            outliers.append(result.outlier_share)
            flagged += result.drifted
            threshold = result.threshold
            if i < compare:
                logistic.append(logistic_auc(reference, window, seed=i))
        rate_name = "false_alarm_rate" if kind == "null" else "power"
        out[kind] = {
            "windows": windows, "n_reference": len(reference), "n_current": len(window),
            "threshold": round(threshold, 4), "flagged": flagged, rate_name: round(flagged / windows, 4),
            f"{rate_name}_wilson95": wilson(flagged, windows),
            "auc": summary(aucs), "outlier_share": summary(outliers),
            "test_seconds_p50": round(float(np.median(seconds)), 4),
            "test_seconds_max": round(float(np.max(seconds)), 4),
        }
        if logistic:
            out[kind]["logistic_regression_comparison"] = {
                "windows": len(logistic), "auc": summary(logistic),
                rate_name: round(float(np.mean(np.asarray(logistic) > threshold)), 4),
                "centroid_auc_same_windows": summary(aucs[:len(logistic)]),
            }
        raw[kind] = (np.asarray(aucs), len(reference), len(window))
        log.info("%s/%s: %s %.3f, AUC mean %.3f (p5 %.3f, p95 %.3f), threshold %.3f", scenario, kind, rate_name,
                 flagged / windows, np.mean(aucs), np.percentile(aucs, 5), np.percentile(aucs, 95), threshold)
    out["threshold_sweep"] = sweep(raw)
    return out


def sweep(raw: dict) -> list[dict]:
    """False-alarm rate and power had the module used other Z / MIN_EFFECT values (same AUCs)."""
    rows = []
    for z in (1.645, 2.0, 2.326, 2.576, 3.0):
        for min_effect in (0.0, 0.02, 0.04, 0.045, 0.05, 0.06):
            row: dict = {"z": z, "min_effect": min_effect}
            for kind, (aucs, n_ref, n_cur) in raw.items():
                threshold = max(0.5 + z * drift.null_standard_error(n_ref, n_cur), 0.5 + min_effect)
                key = "false_alarm_rate" if kind == "null" else "power"
                row[key] = round(float(np.mean(aucs > threshold)), 4)
                row["threshold"] = round(threshold, 4)
            rows.append(row)
    return rows


def timing(scifact: np.ndarray, squad: np.ndarray, repeats: int = 20) -> dict:
    """Wall time of one detect_drift call, 500 vs 500 queries of the embedder's dimension."""
    rng = np.random.default_rng(7)
    reference = scifact[rng.choice(len(scifact), 500, replace=False)]
    window = np.vstack([scifact[rng.choice(len(scifact), 400, replace=False)], squad[:100]])
    drift.detect_drift(reference, window)  # imports, first-call costs
    seconds = []
    for i in range(repeats):
        started = time.perf_counter()
        drift.detect_drift(reference, window, seed=i)
        seconds.append(time.perf_counter() - started)
    return {"n_reference": 500, "n_current": 500, "dimension": int(scifact.shape[1]), "repeats": repeats,
            "p50_s": round(float(np.median(seconds)), 4), "max_s": round(float(np.max(seconds)), 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=1000, help="null windows and drift windows per scenario")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare", type=int, default=100,
                        help="windows per kind also scored by logistic regression, for comparison")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    settings = Settings.from_variables({"root": str(CACHE / "state")})
    scifact_texts = list(load_queries(SCIFACT).values())
    squad_texts = squad_questions()
    scifact = cached_embeddings(settings, "scifact", scifact_texts)
    squad = cached_embeddings(settings, "squad", squad_texts)
    fixed_reference = np.random.default_rng(args.seed).permutation(len(scifact))

    started = time.perf_counter()
    result = {
        "benchmark": "bench_drift", "created_at": now_iso(), "machine": machine_info(), "load_before": loadavg(),
        "embedder": embedder_identity(settings.embedding),
        "data": {"scifact_queries": len(scifact_texts), "squad_questions": len(squad_texts),
                 "reference_size": REFERENCE_SIZE, "window": WINDOW, "drift_share": DRIFT_SHARE,
                 "note": ("reference scenarios: windows drawn without replacement from the 809 SciFact queries "
                          "outside the reference (disjoint from it, overlapping each other); previous: two "
                          "disjoint windows of all 1,109 SciFact queries")},
        "method": {"statistic": (f"ROC AUC of the nearest-centroid classifier, out of fold, mean over {drift.REPEATS} "
                                 f"stratified {drift.FOLDS}-fold splits, on L2-normalised query embeddings"),
                   "threshold": "max(0.5 + Z*sqrt((n_ref+n_cur+1)/(12 n_ref n_cur)), 0.5 + MIN_EFFECT)",
                   "Z": drift.Z, "MIN_EFFECT": drift.MIN_EFFECT},
        "timing_500x500": timing(scifact, squad),
        "scenarios": {},
        "targets": {"power": ">= 0.95", "false_alarm_rate": "<= 0.05"},
    }
    for scenario in SCENARIOS:
        result["scenarios"][scenario] = run_scenario(scenario, args.windows, args.seed, scifact, squad,
                                                     fixed_reference, args.compare)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["load_after"] = loadavg()
    write_result("bench_drift", result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
