"""Shared helpers for the ragops benchmarks: BEIR loading, IR metrics, timing, memory, machine info.

Metrics follow the standard (trec_eval / pytrec_eval, as used by BEIR) definitions:

* nDCG@k: DCG = sum_{i=1..k} rel_i / log2(i + 1) with graded relevance ``rel_i`` from the qrels
  (linear gain, as trec_eval's ``ndcg_cut``); the ideal DCG sorts the query's qrels by grade.
  Every query that has qrels counts, also when nothing relevant (or nothing at all) is retrieved.
* recall@k: |relevant ∩ top-k| / |relevant|, relevant = qrels grade > 0.

Search results are chunk-level; :func:`doc_ranking` turns them into a document ranking by keeping
each document's best (first) rank and dropping later duplicates.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("RAGOPS_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
DEFAULT_DATASET = Path("/work/shared/datasets/scifact")
DEFAULT_ROOT = Path("/tmp/ragops-bench/scifact")
DOC_PREFIX = "corpus.jsonl#"


# --- BEIR ----------------------------------------------------------------------------------

def load_corpus(dataset: Path = DEFAULT_DATASET) -> dict[str, dict]:
    out = {}
    with open(Path(dataset) / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                out[str(rec["_id"])] = rec
    return out


def load_queries(dataset: Path = DEFAULT_DATASET) -> dict[str, str]:
    out = {}
    with open(Path(dataset) / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                out[str(rec["_id"])] = rec["text"]
    return out


def load_qrels(dataset: Path = DEFAULT_DATASET, split: str = "test") -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with open(Path(dataset) / "qrels" / f"{split}.tsv", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader)
        assert header[:2] == ["query-id", "corpus-id"], header
        for row in reader:
            if len(row) < 3:
                continue
            qrels.setdefault(str(row[0]), {})[str(row[1])] = int(row[2])
    return qrels


def split_queries(dataset: Path = DEFAULT_DATASET, split: str = "test") -> tuple[list[str], list[str], dict]:
    """(query ids, query texts, qrels) for the queries that have qrels in ``split``, in qrels order."""
    queries = load_queries(dataset)
    qrels = load_qrels(dataset, split)
    qids = [q for q in qrels if q in queries]
    missing = [q for q in qrels if q not in queries]
    if missing:
        raise ValueError(f"{len(missing)} {split} qrels queries missing from queries.jsonl, e.g. {missing[:3]}")
    return qids, [queries[q] for q in qids], qrels


def strip_doc_id(doc_id: str) -> str:
    return doc_id[len(DOC_PREFIX):] if doc_id.startswith(DOC_PREFIX) else doc_id.split("#", 1)[-1]


def doc_ranking(chunk_doc_ids: Iterable[str]) -> list[str]:
    """Chunk-level doc ids (best first) → document ranking: each doc at its first occurrence."""
    seen: dict[str, None] = {}
    for d in chunk_doc_ids:
        seen.setdefault(strip_doc_id(d), None)
    return list(seen)


# --- metrics -------------------------------------------------------------------------------

def ndcg_at_k(ranking: Sequence[str], rels: Mapping[str, int], k: int = 10) -> float:
    dcg = sum(rels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranking[:k]) if rels.get(d, 0) > 0)
    ideal = sorted((g for g in rels.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranking: Sequence[str], rels: Mapping[str, int], k: int = 100) -> float:
    relevant = {d for d, g in rels.items() if g > 0}
    if not relevant:
        return 0.0
    return len(relevant & set(ranking[:k])) / len(relevant)


def evaluate(run: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]],
             ndcg_k: int = 10, recall_k: int = 100) -> dict[str, float]:
    """Mean nDCG@ndcg_k and recall@recall_k over every query in ``qrels`` (missing runs score 0)."""
    qids = [q for q in qrels if any(g > 0 for g in qrels[q].values())]
    nd = [ndcg_at_k(run.get(q, []), qrels[q], ndcg_k) for q in qids]
    rc = [recall_at_k(run.get(q, []), qrels[q], recall_k) for q in qids]
    return {
        f"ndcg@{ndcg_k}": round(sum(nd) / len(nd), 4),
        f"recall@{recall_k}": round(sum(rc) / len(rc), 4),
        "queries": len(qids),
    }


# --- timing / memory / load ----------------------------------------------------------------

def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads): less sensitive to other processes'
    load than wall time, since time spent waiting for a core is not counted."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class Timer:
    """Wall seconds per named block (``seconds``) and process CPU seconds (``cpu_seconds``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        t0, c0 = time.perf_counter(), cpu_seconds()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - t0, 3)
            self.cpu_seconds[name] = round(cpu_seconds() - c0, 3)


def peak_rss_mib() -> float:
    """Peak resident set size of this process (ru_maxrss is KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def current_rss_mib() -> float:
    import psutil

    return round(psutil.Process().memory_info().rss / 2**20, 1)


def loadavg() -> dict:
    one, five, fifteen = os.getloadavg()
    try:
        uptime = subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except Exception:  # noqa: BLE001
        uptime = ""
    return {"1m": round(one, 2), "5m": round(five, 2), "15m": round(fifteen, 2), "uptime": uptime}


def percentiles(values_s: Sequence[float]) -> dict[str, float]:
    import numpy as np

    a = np.asarray(values_s, dtype=float) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p95_ms": round(float(np.percentile(a, 95)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "mean_ms": round(float(a.mean()), 3),
        "samples": len(a),
    }


# --- machine -------------------------------------------------------------------------------

def machine_info() -> dict:
    info: dict = {
        "nproc": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.readlines()
        info["cpu_model"] = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
        flags = next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), [])
        # what decides which kernels run (bf16 / int8 matmuls): the same "2 cores" differ machine to machine
        info["cpu_matmul_flags"] = sorted(f for f in flags if f.startswith(("avx", "amx", "fma")))
    except OSError:
        pass
    with contextlib.suppress(ValueError, OSError):
        info["mem_total_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    with contextlib.suppress(AttributeError):
        info["affinity_cpus"] = len(os.sched_getaffinity(0))
    for mod in ("torch", "faiss", "sentence_transformers", "transformers", "bm25s", "deltalake", "numpy", "pandas"):
        try:
            info[f"{mod}_version"] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            info[f"{mod}_version"] = None
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
    except Exception:  # noqa: BLE001
        pass
    try:
        import ragops

        info["ragops_version"] = ragops.__version__
    except Exception:  # noqa: BLE001
        pass
    return info


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --- pipeline helpers ----------------------------------------------------------------------

def source_dir_for(root: Path) -> Path:
    """The folder holding the corpus.jsonl a root was built from: ``<root>-src`` (a sibling), so that
    the full build and the incremental run ingest the same ``source`` path and doc ids."""
    root = Path(root)
    return root.parent / f"{root.name}-src"


def settings_for(root: Path, source_path: Path | str, **overrides):
    from ragops.config import Settings

    variables = {"root": str(root), "source_path": str(source_path)}
    variables.update({k: str(v) for k, v in overrides.items() if v is not None})
    return Settings.from_variables(variables)


def safe_rmtree(path: Path) -> None:
    """Remove a benchmark scratch folder; refuses anything outside /tmp."""
    path = Path(path).resolve()
    if not str(path).startswith("/tmp/") or len(path.parts) < 3:
        raise SystemExit(f"refusing to delete {path}: benchmark roots must live under /tmp/")
    shutil.rmtree(path, ignore_errors=True)


def write_result(name: str, result: dict, out: Path | None = None) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = Path(out) if out else RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result, indent=2, default=str))
    return path
