"""Full indexing of the SciFact corpus (ingest → chunk → embed → index_sync) on a fresh root, and in the
same process a plain ``SentenceTransformer.encode`` of exactly the texts the pipeline embedded.

    .venv/bin/python benchmarks/bench_indexing.py                       # pipeline first, then plain
    .venv/bin/python benchmarks/bench_indexing.py --order plain-first --root /tmp/ragops-bench/scifact-pf \
        --name bench_indexing_plain_first

The corpus is copied to ``<root>-src/corpus.jsonl`` (outside the repo) and ingested from there, so
``bench_incremental.py`` can later point the same ``source`` path at a modified copy.
The root is kept for ``bench_retrieval.py`` / ``bench_latency.py``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", type=Path, default=C.DEFAULT_DATASET)
    p.add_argument("--root", type=Path, default=C.DEFAULT_ROOT, help="fresh build root (wiped first; must be under /tmp)")
    p.add_argument("--order", choices=["pipeline-first", "plain-first"], default="pipeline-first",
                   help="plain-first runs the plain encode between chunk and embed (warms torch for the pipeline)")
    p.add_argument("--chunk-strategy", default=None)
    p.add_argument("--chunk-size", type=int, default=None)
    p.add_argument("--chunk-overlap", type=int, default=None)
    p.add_argument("--include-title", choices=["true", "false"], default=None)
    p.add_argument("--vector-index", default=None)
    p.add_argument("--plain-batch-size", type=int, default=32)
    p.add_argument("--skip-plain", action="store_true", help="only the pipeline (e.g. for tuning builds)")
    p.add_argument("--limit", type=int, default=0, help="smoke test: only the first N documents")
    p.add_argument("--name", default="bench_indexing", help="result name → benchmarks/results/<name>.json")
    return p.parse_args(argv)


def chunk_stats(lh, settings) -> dict:
    import numpy as np

    from ragops.chunking import indexed_text
    from ragops.weights import load_tokenizer

    chunks = lh.read("chunks", ["chunk_id", "doc_id", "title", "section", "text", "n_tokens"])
    per_doc = chunks.groupby("doc_id").size()
    tok = load_tokenizer(settings.embedding.model)
    texts = [indexed_text(t, s, x, settings.chunking.include_title)
             for t, s, x in zip(chunks["title"], chunks["section"], chunks["text"], strict=True)]
    lens = np.array([len(ids) for ids in tok(texts, add_special_tokens=True, verbose=False)["input_ids"]])
    max_len = 256  # all-MiniLM-L6-v2 max_seq_length
    return {
        "chunks": int(len(chunks)),
        "documents": int(per_doc.size),
        "chunks_per_doc_mean": round(float(per_doc.mean()), 3),
        "docs_with_1_chunk": int((per_doc == 1).sum()),
        "chunk_n_tokens_p50_p90_max": [int(np.percentile(chunks["n_tokens"], 50)),
                                       int(np.percentile(chunks["n_tokens"], 90)), int(chunks["n_tokens"].max())],
        "indexed_text_wordpieces_p50_p90_max": [int(np.percentile(lens, 50)), int(np.percentile(lens, 90)),
                                                int(lens.max())],
        "indexed_texts_over_max_seq_length_256": int((lens > max_len).sum()),
        "indexed_texts_over_max_seq_length_frac": round(float((lens > max_len).mean()), 4),
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    result: dict = {"benchmark": "bench_indexing", "date": C.now_iso(), "argv": sys.argv, "load_before": C.loadavg()}
    timer = C.Timer()

    # Heavy imports outside the stage timings (reported separately): a job process pays them once.
    with timer("imports"):
        import numpy as np
        import sentence_transformers  # noqa: F401
        import torch  # noqa: F401

        import ragops.embedding.local as local_mod
        from ragops.chunking import indexed_text, run_chunking
        from ragops.embedding.embed import run_embedding
        from ragops.index import run_index_sync
        from ragops.ingest import run_ingest
        from ragops.lakehouse import open_lakehouse
        from ragops.weights import resolve_model_path

    root = args.root.resolve()
    src_dir = C.source_dir_for(root)
    C.safe_rmtree(root)
    C.safe_rmtree(src_dir)
    src_dir.mkdir(parents=True)
    if args.limit:  # smoke tests only: the first N documents
        with open(args.dataset / "corpus.jsonl") as f, open(src_dir / "corpus.jsonl", "w") as g:
            g.writelines(line for _, line in zip(range(args.limit), f, strict=False))
    else:
        shutil.copyfile(args.dataset / "corpus.jsonl", src_dir / "corpus.jsonl")
    settings = C.settings_for(
        root, src_dir / "corpus.jsonl", chunk_strategy=args.chunk_strategy, chunk_size=args.chunk_size,
        chunk_overlap=args.chunk_overlap, chunk_include_title=args.include_title, vector_index=args.vector_index,
    )
    result["root"], result["source_path"] = str(root), settings.source_path
    from dataclasses import asdict

    result["settings"] = {"chunking": asdict(settings.chunking), "embedding": asdict(settings.embedding),
                          "index": asdict(settings.index)}
    result["machine"] = C.machine_info()

    # Instrument the embedder (no library change): time spent inside LocalEmbedder.encode.
    encode_stats = {"calls": 0, "texts": 0, "seconds": 0.0}
    original_encode = local_mod.LocalEmbedder.encode

    def timed_encode(self, texts, **kw):
        t0 = time.perf_counter()
        out = original_encode(self, texts, **kw)
        encode_stats["calls"] += 1
        encode_stats["texts"] += len(texts)
        encode_stats["seconds"] += time.perf_counter() - t0
        return out

    local_mod.LocalEmbedder.encode = timed_encode
    rss: dict[str, float] = {}
    summaries: dict = {}
    plain: dict = {}

    def run_plain(lh) -> None:
        from sentence_transformers import SentenceTransformer

        chunks = lh.read("chunks", ["chunk_id", "title", "section", "text"])
        texts = [indexed_text(t, s, x, settings.chunking.include_title)
                 for t, s, x in zip(chunks["title"], chunks["section"], chunks["text"], strict=True)]
        with timer("plain_load_model"):
            model = SentenceTransformer(str(resolve_model_path(settings.embedding.model)), device="cpu")
        with timer("plain_encode"):
            vecs = model.encode(texts, batch_size=args.plain_batch_size)
        plain.update({"texts": len(texts), "chunk_ids": chunks["chunk_id"].tolist(), "vectors": vecs})
        rss["after_plain"] = C.peak_rss_mib()

    with open_lakehouse(settings) as lh:
        t_start = time.perf_counter()
        with timer("ingest"):
            summaries["ingest"] = run_ingest(lh, settings).to_dict()
        rss["after_ingest"] = C.peak_rss_mib()
        with timer("chunk"):
            summaries["chunk"] = run_chunking(lh, settings).to_dict()
        rss["after_chunk"] = C.peak_rss_mib()
        pipeline_paused = 0.0
        if args.order == "plain-first" and not args.skip_plain:
            t0 = time.perf_counter()
            run_plain(lh)
            pipeline_paused = time.perf_counter() - t0
        with timer("embed"):
            summaries["embed"] = run_embedding(lh, settings).to_dict()
        rss["after_embed"] = C.peak_rss_mib()
        with timer("index_sync"):
            summaries["index_sync"] = run_index_sync(lh, settings).to_dict()
        rss["after_index_sync"] = C.peak_rss_mib()
        pipeline_wall = time.perf_counter() - t_start - pipeline_paused
        if args.order == "pipeline-first" and not args.skip_plain:
            run_plain(lh)
        stats = chunk_stats(lh, settings)
        emb = lh.read("embeddings", ["chunk_id", "vector"]) if plain else None

    local_mod.LocalEmbedder.encode = original_encode
    stages = {k: timer.seconds[k] for k in ("ingest", "chunk", "embed", "index_sync")}
    total = sum(stages.values())
    n_docs = summaries["ingest"]["documents"]
    n_chunks = summaries["embed"]["embedded"]
    result["stages_s"] = stages
    result["stages_cpu_s"] = {k: timer.cpu_seconds[k] for k in stages}
    result["total_s"] = round(total, 3)
    result["pipeline_wall_s"] = round(pipeline_wall, 3)
    result["imports_s"] = timer.seconds["imports"]
    result["docs"] = n_docs
    result["chunks"] = n_chunks
    result["docs_per_s"] = round(n_docs / total, 3)
    result["chunks_per_s"] = round(n_chunks / total, 3)
    result["per_stage_rate"] = {
        "ingest_docs_per_s": round(n_docs / stages["ingest"], 1),
        "chunk_docs_per_s": round(n_docs / stages["chunk"], 1),
        "embed_chunks_per_s": round(n_chunks / stages["embed"], 3),
        "index_sync_chunks_per_s": round(n_chunks / stages["index_sync"], 1),
    }
    result["pipeline_encode_calls"] = {**encode_stats, "seconds": round(encode_stats["seconds"], 3),
                                       "embed_stage_overhead_s": round(stages["embed"] - encode_stats["seconds"], 3)}
    result["summaries"] = summaries
    result["chunk_stats"] = stats
    result["peak_rss_mib"] = C.peak_rss_mib()
    result["peak_rss_mib_by_step"] = rss

    if plain:
        pipe_tp = n_chunks / stages["embed"]
        plain_tp = plain["texts"] / timer.seconds["plain_encode"]
        plain_tp_with_load = plain["texts"] / (timer.seconds["plain_encode"] + timer.seconds["plain_load_model"])
        pipe_encode_tp = encode_stats["texts"] / encode_stats["seconds"] if encode_stats["seconds"] else None
        # Same texts → same vectors? (checks the plain run really encoded what the pipeline embedded)
        by_id = dict(zip(emb["chunk_id"], emb["vector"], strict=True))
        pv = np.stack([np.asarray(by_id[c], dtype=np.float32) for c in plain["chunk_ids"]])
        qv = plain["vectors"] / np.linalg.norm(plain["vectors"], axis=1, keepdims=True)
        cos = (pv * qv).sum(axis=1)
        result["plain_encode"] = {
            "texts": plain["texts"],
            "same_texts_as_pipeline": plain["texts"] == n_chunks,
            "batch_size": args.plain_batch_size,
            "load_model_s": timer.seconds["plain_load_model"],
            "encode_s": timer.seconds["plain_encode"],
            "texts_per_s": round(plain_tp, 3),
            "texts_per_s_incl_model_load": round(plain_tp_with_load, 3),
            "encode_cpu_s": timer.cpu_seconds["plain_encode"],
            "min_cosine_vs_pipeline_vectors": round(float(cos.min()), 6),
        }
        result["ratio_pipeline_embed_stage_vs_plain_encode"] = round(pipe_tp / plain_tp, 3)
        result["ratio_pipeline_embed_stage_vs_plain_incl_load"] = round(pipe_tp / plain_tp_with_load, 3)
        result["ratio_pipeline_encode_calls_vs_plain_encode"] = round(pipe_encode_tp / plain_tp, 3) if pipe_encode_tp else None
        result["ratio_cpu_time_plain_encode_vs_pipeline_embed_stage"] = round(
            timer.cpu_seconds["plain_encode"] / timer.cpu_seconds["embed"], 3)  # texts per CPU-second, pipeline/plain
        result["target_ratio"] = 0.9
    result["order"] = args.order
    result["load_after"] = C.loadavg()
    C.write_result(args.name, result)
    return result


if __name__ == "__main__":
    main()
