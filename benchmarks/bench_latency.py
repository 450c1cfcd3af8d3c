"""Search latency: (a) the SciFact index (single queries, per mode) and (b) ``VectorIndex`` on
1,000,000 synthetic 384-d normalised float32 vectors (flat exact, and HNSW).

    .venv/bin/python benchmarks/bench_latency.py
    .venv/bin/python benchmarks/bench_latency.py --n 1000000 --hnsw-n 200000 --hnsw-budget-s 600

(a) ``Searcher.search(query, k=10, mode)`` one query at a time, 300 test queries, after warm-up
    queries; the query-embedding share is measured separately.
(b) Random Gaussian vectors (seeded), L2-normalised; 200 random queries (another seed), k=10, one
    query per call. Build time, RSS growth, p50/p95. HNSW (M=32, efSearch=128, FAISS default
    efConstruction=40) is first built on ``--hnsw-n`` vectors; the 1M build is attempted only when the
    projection from that build (n·log n scaling) fits ``--hnsw-budget-s`` — otherwise the result
    says so and reports the smaller size. HNSW recall@10 is measured against exact search on the
    same vectors. Random vectors are a worst case for HNSW recall (no cluster structure).
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", type=Path, default=C.DEFAULT_DATASET)
    p.add_argument("--root", type=Path, default=C.DEFAULT_ROOT)
    p.add_argument("--queries", type=int, default=300, help="SciFact test queries timed per mode")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--n", type=int, default=1_000_000, help="synthetic vectors for the flat index")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--synthetic-queries", type=int, default=200)
    p.add_argument("--hnsw-n", type=int, default=200_000, help="first (always) HNSW build size")
    p.add_argument("--hnsw-budget-s", type=float, default=600.0, help="attempt HNSW at --n only if projected under this")
    p.add_argument("--hnsw-remove", action="store_true", help="also time VectorIndex.remove() of 52 ids on the HNSW index")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-scifact", action="store_true")
    p.add_argument("--skip-synthetic", action="store_true")
    p.add_argument("--name", default="bench_latency")
    return p.parse_args(argv)


def scifact_latency(args) -> dict:
    from ragops.index import Searcher

    settings = C.settings_for(args.root, "/unused")
    searcher = Searcher.open(settings)
    qids, texts, _ = C.split_queries(args.dataset, "test")
    texts = texts[: args.queries]
    train_texts = C.split_queries(args.dataset, "train")[1][: args.warmup]
    out = {"snapshot": searcher.manifest.snapshot_id, "chunks": searcher.manifest.counts.get("chunks"),
           "vector_index": searcher.snapshot.vectors.config.vector_index, "k": 10, "queries": len(texts)}
    modes = ("vector", "keyword", "hybrid")
    for q in train_texts:  # warm-up on other queries
        for mode in modes:
            searcher.search(q, k=10, mode=mode)
    # Modes interleaved per query (v, k, h, v, k, h, …) so that load from other processes hits all alike.
    times: dict[str, list[float]] = {m: [] for m in modes}
    for q in texts:
        for mode in modes:
            t0 = time.perf_counter()
            searcher.search(q, k=10, mode=mode)
            times[mode].append(time.perf_counter() - t0)
    for mode in modes:
        out[mode] = C.percentiles(times[mode])
    # where the time goes: query embedding, raw FAISS, raw BM25, result materialisation
    emb, fa, kw = [], [], []
    for q in texts:
        t0 = time.perf_counter()
        v = searcher.embedder.encode([q])
        t1 = time.perf_counter()
        searcher.snapshot.vectors.search(v, 10)
        t2 = time.perf_counter()
        searcher.snapshot.keywords.search(q, 10)
        t3 = time.perf_counter()
        emb.append(t1 - t0), fa.append(t2 - t1), kw.append(t3 - t2)
    t0 = time.perf_counter()
    for _ in range(1000):
        searcher._result(0, 1.0, 1)
    materialise_us = round((time.perf_counter() - t0) * 1e3, 2)  # 1000 calls: ms total = µs each
    out["breakdown"] = {"query_embedding": C.percentiles(emb), "faiss_search_k10": C.percentiles(fa),
                        "bm25_search_k10": C.percentiles(kw), "result_row_materialisation_us_each": materialise_us}
    out["hnsw_on_scifact_vectors"] = scifact_hnsw(searcher, texts)
    return out


def scifact_hnsw(searcher, texts) -> dict:
    """The snapshot's real chunk vectors in an HNSW VectorIndex: build time and recall@10 vs the flat index."""
    from ragops.config import IndexConfig
    from ragops.index.vector import VectorIndex

    flat = searcher.snapshot.vectors
    ids = flat.ids()
    vecs = flat.index.index.reconstruct_n(0, len(flat))
    h = VectorIndex(flat.dimension, IndexConfig(vector_index="hnsw"))
    t0 = time.perf_counter()
    h.add(ids, vecs)
    build = time.perf_counter() - t0
    qv = searcher.embedder.encode(list(texts))
    truth = flat.search(qv, 10)[1]
    times, found = [], []
    for row in qv:
        t0 = time.perf_counter()
        found.append(h.search(row[None, :], 10)[1][0])
        times.append(time.perf_counter() - t0)
    return {"n": len(ids), "build_s": round(build, 3), "recall@10_vs_flat": recall_at(found, list(truth)),
            **C.percentiles(times)}


def synthetic(n: int, dim: int, seed: int, chunk: int = 100_000):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - s), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        x[s : s + len(block)] = block
    return x


def time_queries(index, queries, k=10):
    times, ids = [], []
    for q in queries:
        t0 = time.perf_counter()
        _, i = index.search(q[None, :], k)
        times.append(time.perf_counter() - t0)
        ids.append(i[0])
    return C.percentiles(times), ids


def recall_at(found, truth) -> float:
    return round(sum(len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)) / len(truth), 4)


def build(kind: str, x, ids, m: int | None = None):
    from ragops.config import IndexConfig
    from ragops.index.vector import VectorIndex

    gc.collect()
    rss0 = C.current_rss_mib()
    index = VectorIndex(x.shape[1], IndexConfig(vector_index=kind))
    t0 = time.perf_counter()
    index.add(ids, x)
    secs = time.perf_counter() - t0
    return index, {"n": int(len(x)), "build_s": round(secs, 2), "rss_growth_mib": round(C.current_rss_mib() - rss0, 1),
                   "vectors_per_s": round(len(x) / secs, 1)}


def synthetic_latency(args) -> dict:
    import faiss
    import numpy as np

    out: dict = {"dim": args.dim, "k": 10, "queries": args.synthetic_queries, "seed": args.seed,
                 "faiss_omp_threads": faiss.omp_get_max_threads()}
    t0 = time.perf_counter()
    x = synthetic(args.n, args.dim, args.seed)
    q = synthetic(args.synthetic_queries, args.dim, args.seed + 1)
    out["generate_s"] = round(time.perf_counter() - t0, 2)
    out["raw_vectors_mib"] = round(x.nbytes / 2**20, 1)
    ids = np.arange(args.n, dtype=np.int64)

    flat, info = build("flat", x, ids)
    pct, flat_ids = time_queries(flat, q)
    t0 = time.perf_counter()
    flat.search(q, 10)
    info["batch_200_queries_s"] = round(time.perf_counter() - t0, 3)
    out["flat"] = {**info, **pct}
    del flat
    gc.collect()

    def hnsw_at(n: int) -> dict:
        index, info = build("hnsw", x[:n], ids[:n])
        pct, found = time_queries(index, q)
        if n == args.n:
            truth = flat_ids
        else:  # exact top-10 on the same subset
            exact = faiss.IndexFlatIP(args.dim)
            exact.add(x[:n])
            truth = list(exact.search(q, 10)[1])
        res = {**info, **pct, "recall@10_vs_exact": recall_at(found, truth),
               "efSearch": index.config.hnsw_ef_search, "M": index.config.hnsw_m,
               "efConstruction": faiss.downcast_index(index.index.index).hnsw.efConstruction}
        if args.hnsw_remove:
            t0 = time.perf_counter()
            removed = index.remove(ids[:52])
            res["remove_52_ids_s"] = round(time.perf_counter() - t0, 2)
            res["remove_52_ids_removed"] = removed
        return res

    out["hnsw"] = {}
    first = hnsw_at(min(args.hnsw_n, args.n))
    out["hnsw"][str(first["n"])] = first
    if args.n > args.hnsw_n:
        projected = first["build_s"] * (args.n / args.hnsw_n) * (math.log(args.n) / math.log(args.hnsw_n))
        out["hnsw_projected_build_s_at_n"] = round(projected, 1)
        if projected <= args.hnsw_budget_s:
            out["hnsw"][str(args.n)] = hnsw_at(args.n)
            out["hnsw_note"] = f"HNSW built at {args.n:,} (projected {projected:.0f}s ≤ budget)"
        else:
            out["hnsw_note"] = (f"HNSW NOT built at {args.n:,}: projected {projected:.0f}s from the {args.hnsw_n:,} build "
                                f"exceeds the {args.hnsw_budget_s:.0f}s budget; reported at {args.hnsw_n:,} only")
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    result: dict = {"benchmark": "bench_latency", "date": C.now_iso(), "argv": sys.argv, "load_before": C.loadavg(),
                    "machine": C.machine_info()}
    if not args.skip_scifact:
        result["scifact"] = scifact_latency(args)
        result["load_after_scifact"] = C.loadavg()
    if not args.skip_synthetic:
        result["synthetic"] = {"n": args.n, **synthetic_latency(args)}
    result["peak_rss_mib"] = C.peak_rss_mib()
    result["load_after"] = C.loadavg()
    C.write_result(args.name, result)
    return result


if __name__ == "__main__":
    main()
