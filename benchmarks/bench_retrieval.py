"""Retrieval quality on SciFact (BEIR): nDCG@10 and recall@100 for vector, keyword and hybrid search.

    .venv/bin/python benchmarks/bench_retrieval.py                      # test split, the bench_indexing root
    .venv/bin/python benchmarks/bench_retrieval.py --tune \
        --tune-root c256_title=/tmp/ragops-bench/scifact --tune-root c512_title=/tmp/ragops-bench/c512_title ...

Search results are chunk-level (``Searcher.search_batch(queries, k=100, mode)``); a document's rank
is its best chunk's rank, later chunks of the same document are dropped.

``--tune`` runs a small study on the **train** split only (queries with ``qrels/train.tsv``):
chunk configurations (one pre-built root each, see ``--tune-root``) × RRF k × hybrid weights.
The configuration with the best train hybrid nDCG@10 is then evaluated once on test.
Roots for other chunk configurations are built with
``bench_indexing.py --skip-plain --root /tmp/ragops-bench/<label> --name build_<label> --chunk-size N ...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

#: Published BEIR numbers (Thakur et al. 2021; SBERT's MiniLM table) and the plain baselines measured
#: on this copy of the corpus (bm25s; exact cosine over all-MiniLM-L6-v2 of title+text; their RRF).
REFERENCE = {
    "published_bm25_ndcg@10": 0.665,
    "published_all-MiniLM-L6-v2_ndcg@10": 0.645,
    "plain_bm25s_ndcg@10": 0.662,
    "plain_minilm_exact_cosine_ndcg@10": 0.645,
    "plain_rrf_bm25s_minilm_ndcg@10": 0.690,
    "plain_rrf_bm25s_minilm_recall@100": 0.954,
}
TARGETS = {"vector": 0.645, "keyword": 0.66, "hybrid": 0.70}
MODES = ("vector", "keyword", "hybrid")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", type=Path, default=C.DEFAULT_DATASET)
    p.add_argument("--root", type=Path, default=C.DEFAULT_ROOT, help="index root built by bench_indexing.py")
    p.add_argument("--split", default="test")
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--tune", action="store_true", help="run the train-split study and evaluate its choice on test")
    p.add_argument("--tune-root", action="append", default=[], metavar="LABEL=PATH",
                   help="a pre-built root for one chunk configuration (repeatable); the main --root is always included")
    p.add_argument("--rrf-k", type=int, nargs="+", default=[10, 20, 40, 60, 100])
    p.add_argument("--weights", nargs="+", default=["1:1", "1:1.5", "1.5:1", "1:2", "2:1", "1:3"],
                   help="hybrid weights vector:keyword")
    p.add_argument("--deep-k", type=int, default=0,
                   help="diagnostic: also search this many chunks and score the first 100 distinct docs (recall@100)")
    p.add_argument("--skip-default", action="store_true", help="with --deep-k: only the diagnostic")
    p.add_argument("--name", default="bench_retrieval")
    return p.parse_args(argv)


def open_searcher(root: Path, rrf_k: int = 60, weights: tuple[float, float] = (1.0, 1.0)):
    from ragops.index import Searcher

    settings = C.settings_for(root, "/unused")
    settings = dataclasses.replace(settings, index=dataclasses.replace(settings.index, rrf_k=rrf_k))
    searcher = Searcher.open(settings)
    searcher.hybrid_weights = tuple(weights)  # constructor argument; Searcher.open does not take it
    return searcher


def chunk_runs(searcher, qids, texts, k, modes=MODES) -> tuple[dict, dict]:
    """{mode: {qid: [(chunk_id, doc_id), ...]}} and seconds per mode."""
    runs, secs = {}, {}
    for mode in modes:
        t0 = time.perf_counter()
        res = searcher.search_batch(texts, k=k, mode=mode)
        secs[mode] = round(time.perf_counter() - t0, 2)
        runs[mode] = {q: [(r.chunk_id, r.doc_id) for r in rs] for q, rs in zip(qids, res, strict=True)}
    return runs, secs


def to_docs(run: dict) -> dict:
    return {q: C.doc_ranking(d for _, d in hits) for q, hits in run.items()}


def fuse(vec: dict, kw: dict, k: int, rrf_k: int, weights, doc_level: bool = False) -> dict:
    """What ``Searcher.search_batch(mode='hybrid')`` does (RRF over chunk ranks), replayed on cached
    rankings; ``doc_level`` fuses document rankings instead (not a library option: an experiment)."""
    from ragops.index.fusion import reciprocal_rank_fusion

    out = {}
    for q in vec:
        if doc_level:
            a, b = C.doc_ranking(d for _, d in vec[q]), C.doc_ranking(d for _, d in kw[q])
            out[q] = [d for d, _ in reciprocal_rank_fusion([a, b], k=rrf_k, weights=weights)][:k]
        else:
            doc_of = dict(vec[q] + kw[q])
            fused = reciprocal_rank_fusion([[c for c, _ in vec[q]], [c for c, _ in kw[q]]], k=rrf_k, weights=weights)
            out[q] = C.doc_ranking(doc_of[c] for c, _ in fused[:k])
    return out


def plain_bm25s(dataset: Path, qids, texts, qrels) -> dict:
    """Metric sanity check: plain bm25s over title + ' ' + text (k1=1.2, b=0.75, English stop words),
    without stemming (the 0.662 baseline) and with the English Snowball stemmer (the library's setting)."""
    import bm25s
    import Stemmer

    corpus = C.load_corpus(dataset)
    ids = list(corpus)
    docs_text = [f"{corpus[i].get('title', '')} {corpus[i]['text']}" for i in ids]
    out = {}
    for label, stem in (("no_stemmer", None), ("english_stemmer", Stemmer.Stemmer("english"))):
        retriever = bm25s.BM25(k1=1.2, b=0.75)
        retriever.index(bm25s.tokenize(docs_text, stopwords="en", stemmer=stem, show_progress=False), show_progress=False)
        docs, _ = retriever.retrieve(bm25s.tokenize(texts, stopwords="en", stemmer=stem, show_progress=False),
                                     k=100, show_progress=False)
        out[label] = C.evaluate({q: [ids[j] for j in row] for q, row in zip(qids, docs, strict=True)}, qrels)
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    result: dict = {"benchmark": "bench_retrieval", "date": C.now_iso(), "argv": sys.argv,
                    "load_before": C.loadavg(), "machine": C.machine_info(), "reference": REFERENCE,
                    "targets_ndcg@10": TARGETS, "k": args.k, "root": str(args.root)}
    qids, texts, qrels = C.split_queries(args.dataset, args.split)

    if args.deep_k:
        s = open_searcher(args.root)
        dr, dsecs = chunk_runs(s, qids, texts, args.deep_k)
        result[f"{args.split}_default_deep_k{args.deep_k}"] = {
            mode: {**C.evaluate({q: v[:100] for q, v in to_docs(dr[mode]).items()}, qrels),
                   "mean_unique_docs": round(sum(min(100, len(v)) for v in to_docs(dr[mode]).values()) / len(qids), 1)}
            for mode in MODES
        }
        del s
        if args.skip_default:
            result["load_after"] = C.loadavg()
            C.write_result(args.name, result)
            return result

    # --- default configuration on the evaluation split ------------------------------------
    searcher = open_searcher(args.root)
    result["snapshot"] = {"id": searcher.manifest.snapshot_id, "counts": searcher.manifest.counts,
                          "rrf_k": searcher.rrf_k, "hybrid_weights": list(searcher.hybrid_weights)}
    runs, secs = chunk_runs(searcher, qids, texts, args.k)
    default = {}
    for mode in MODES:
        docs = to_docs(runs[mode])
        m = C.evaluate(docs, qrels)
        m["mean_unique_docs_in_top_k_chunks"] = round(sum(len(v) for v in docs.values()) / len(docs), 1)
        m["search_batch_s"] = secs[mode]
        m["target_ndcg@10"] = TARGETS[mode]
        m["meets_target"] = m["ndcg@10"] >= TARGETS[mode]
        default[mode] = m
    replay = C.evaluate(fuse(runs["vector"], runs["keyword"], args.k, searcher.rrf_k, searcher.hybrid_weights), qrels)
    default["hybrid_replay_check"] = {"matches_search_batch": replay["ndcg@10"] == default["hybrid"]["ndcg@10"]
                                      and replay["recall@100"] == default["hybrid"]["recall@100"], **replay}
    result[f"{args.split}_default"] = default
    result["plain_bm25s_sanity_check"] = plain_bm25s(args.dataset, qids, texts, qrels)
    del searcher

    # --- train-only study -----------------------------------------------------------------
    if args.tune:
        tqids, ttexts, tqrels = C.split_queries(args.dataset, "train")
        roots = {"default(" + args.root.name + ")": args.root}
        for item in args.tune_root:
            label, _, path = item.partition("=")
            roots[label] = Path(path)
        weights = [tuple(float(x) for x in w.split(":")) for w in args.weights]
        table = []
        for label, root in roots.items():
            s = open_searcher(root)
            tr, tsecs = chunk_runs(s, tqids, ttexts, args.k, modes=("vector", "keyword"))
            base = {"config": label, "root": str(root), "chunks": s.manifest.counts.get("chunks")}
            table.append({**base, "mode": "vector", **C.evaluate(to_docs(tr["vector"]), tqrels)})
            table.append({**base, "mode": "keyword", **C.evaluate(to_docs(tr["keyword"]), tqrels)})
            for rrf_k, w in itertools.product(args.rrf_k, weights):
                m = C.evaluate(fuse(tr["vector"], tr["keyword"], args.k, rrf_k, w), tqrels)
                table.append({**base, "mode": "hybrid", "rrf_k": rrf_k, "weights": list(w), **m})
            # experiment, not a library option: fuse document rankings instead of chunk rankings
            for rrf_k in args.rrf_k:
                m = C.evaluate(fuse(tr["vector"], tr["keyword"], args.k, rrf_k, (1.0, 1.0), doc_level=True), tqrels)
                table.append({**base, "mode": "hybrid_doc_level_rrf(not in library)", "rrf_k": rrf_k,
                              "weights": [1.0, 1.0], **m})
            del s
        hybrid_rows = [r for r in table if r["mode"] == "hybrid"]
        best = max(hybrid_rows, key=lambda r: (r["ndcg@10"], r["recall@100"]))
        result["train_study"] = {"queries": len(tqids), "rows": table,
                                 "chosen_on_train": {k: best[k] for k in ("config", "root", "rrf_k", "weights",
                                                                          "ndcg@10", "recall@100")}}
        # --- the chosen configuration, evaluated once on the evaluation split ---------------
        s = open_searcher(Path(best["root"]), rrf_k=best["rrf_k"], weights=tuple(best["weights"]))
        cr, csecs = chunk_runs(s, qids, texts, args.k)
        chosen = {}
        for mode in MODES:
            m = C.evaluate(to_docs(cr[mode]), qrels)
            m["target_ndcg@10"] = TARGETS[mode]
            m["meets_target"] = m["ndcg@10"] >= TARGETS[mode]
            chosen[mode] = m
        result[f"{args.split}_chosen_on_train"] = {"config": best["config"], "rrf_k": best["rrf_k"],
                                                   "weights": best["weights"], **chosen}
    result["peak_rss_mib"] = C.peak_rss_mib()
    result["load_after"] = C.loadavg()
    C.write_result(args.name, result)
    return result


if __name__ == "__main__":
    main()
