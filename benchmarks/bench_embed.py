"""Embedding runtimes: torch fp32 (plain ``SentenceTransformer.encode``) vs OpenVINO fp32 / bf16 vs ONNX
Runtime fp32 / int8.

    .venv/bin/python benchmarks/bench_embed.py throughput [--texts 2000 --rounds 4 --batch-size 32 --tag _xeon]
    .venv/bin/python benchmarks/bench_embed.py quality --runtime openvino-bf16 [--root /tmp/ragops-bench/scifact-ov]

A runtime name here is ``embedding_runtime``, or ``openvino-bf16`` for ``embedding_runtime=openvino`` with
``embedding_dtype=bfloat16``.

``throughput``: SciFact chunks exactly as the pipeline embeds them (the default chunker, title
prefix; the first documents of the corpus until ``--texts`` chunks), encoded by each runtime in
``--rounds`` slices, the order of the runtimes rotating every round so that each sees the same
share of whatever else the machine is doing; chunks/s and CPU seconds per runtime, ratios ÷ torch,
and vector agreement (cosine per text between each runtime and torch: mean, p1, min).

``quality``: the whole SciFact index built with ``embedding_runtime=<runtime>`` through
``ragops.index.build.build_index`` into a fresh root (project defaults otherwise: chunk 200 +
title, RRF k 10, weights 1.5/1.0), then nDCG@10 / recall@100 on the 300 test queries exactly as
``bench_retrieval.py`` scores them (document level, k = 100). Torch fp32's numbers with the same
defaults are in ``bench_retrieval.json`` / ``bench_eval_sweep.json`` (0.722 hybrid, 0.669 vector).

Both write into ``benchmarks/results/bench_embed.json`` (one key per part and runtime, plus ``--tag``: the
same "2-core machine" is not always the same CPU, and bf16 or int8 speed depends on which it is).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

RUNTIMES = ("torch", "openvino", "openvino-bf16", "onnx", "onnx-int8")
#: torch fp32 with the project defaults (BENCHMARKS.md §3, bench_retrieval.json, bench_eval_sweep.json).
TORCH_NDCG10 = {"vector": 0.669, "keyword": 0.682, "hybrid": 0.722}
RESULT = C.RESULTS_DIR / "bench_embed.json"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="part", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--texts", type=int, default=2000)
    t.add_argument("--rounds", type=int, default=4)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES)
    q = sub.add_parser("quality")
    q.add_argument("--runtime", required=True, choices=RUNTIMES)
    q.add_argument("--root", type=Path, default=None, help="fresh build root under /tmp (wiped first)")
    for sp in (t, q):
        sp.add_argument("--dataset", type=Path, default=C.DEFAULT_DATASET)
        sp.add_argument("--tag", default="", help="suffix of the result key, e.g. _xeon_amx")
    return p.parse_args(argv)


def settings_vars(runtime: str) -> dict[str, str]:
    """This benchmark's runtime name → the bundle variables that select it."""
    if runtime == "openvino-bf16":
        return {"embedding_runtime": "openvino", "embedding_dtype": "bfloat16"}
    return {"embedding_runtime": runtime}


def save(key: str, value: dict) -> None:
    """Merge one part's result into bench_embed.json (the other parts' results stay)."""
    result = json.loads(RESULT.read_text()) if RESULT.exists() else {"benchmark": "bench_embed"}
    result[key] = value
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(value, indent=2, default=str))


def pipeline_texts(dataset: Path, n: int) -> list[str]:
    """The first ``n`` chunks of SciFact as the embed stage sees them (ingest + chunk with defaults)."""
    from ragops.chunking import indexed_text, run_chunking
    from ragops.ingest import run_ingest
    from ragops.lakehouse import open_lakehouse

    root = Path("/tmp/ragops-bench/embed-texts")
    C.safe_rmtree(root)
    src = root / "src"
    src.mkdir(parents=True)
    with open(dataset / "corpus.jsonl") as f, open(src / "corpus.jsonl", "w") as g:
        g.writelines(line for _, line in zip(range(max(n, 1)), f, strict=False))  # ≥ 1 chunk per document
    settings = C.settings_for(root / "state", src / "corpus.jsonl")
    with open_lakehouse(settings) as lh:
        run_ingest(lh, settings)
        run_chunking(lh, settings)
        chunks = lh.read("chunks", ["chunk_id", "title", "section", "text"]).sort_values("chunk_id")
    texts = [indexed_text(t, s, x, settings.chunking.include_title)
             for t, s, x in zip(chunks["title"], chunks["section"], chunks["text"], strict=True)]
    return texts[:n]


def throughput(args) -> dict:
    import numpy as np

    from ragops.config import Settings
    from ragops.embedding import get_embedder
    from ragops.embedding.local import LocalEmbedder

    result: dict = {"date": C.now_iso(), "argv": sys.argv, "load_before": C.loadavg(), "machine": C.machine_info()}
    import onnxruntime

    from ragops.openvino_cpu import import_openvino

    openvino = import_openvino()

    result["machine"]["onnxruntime_version"] = onnxruntime.__version__
    result["machine"]["openvino_version"] = openvino.__version__
    texts = pipeline_texts(args.dataset, args.texts)
    result["texts"] = len(texts)
    encoders = {}
    load_s = {}
    for runtime in args.runtimes:
        t0 = time.perf_counter()
        if runtime == "torch":  # the plain library call, not ragops' wrapper
            st = LocalEmbedder().st
            encoders[runtime] = lambda xs, st=st: st.encode(xs, batch_size=args.batch_size, normalize_embeddings=True,
                                                            convert_to_numpy=True, show_progress_bar=False)
        else:
            emb = get_embedder(Settings.from_variables(settings_vars(runtime)).embedding)
            encoders[runtime] = lambda xs, emb=emb: emb.encode(xs, batch_size=args.batch_size)
        load_s[runtime] = round(time.perf_counter() - t0, 2)  # includes a first-time export
        encoders[runtime](texts[:64])  # warm-up
    result["load_seconds_incl_first_export"] = load_s

    slices = np.array_split(np.arange(len(texts)), args.rounds)
    vectors = {r: np.zeros((len(texts), 384), np.float32) for r in args.runtimes}
    wall = {r: 0.0 for r in args.runtimes}
    cpu = {r: 0.0 for r in args.runtimes}
    rounds = []
    for i, idx in enumerate(slices):
        order = args.runtimes[i % len(args.runtimes):] + args.runtimes[:i % len(args.runtimes)]
        part = [texts[j] for j in idx]
        row = {"round": i, "order": order, "texts": len(part), "load_1m": C.loadavg()["1m"]}
        for runtime in order:
            t0, c0 = time.perf_counter(), C.cpu_seconds()
            vectors[runtime][idx] = encoders[runtime](part)
            dt = time.perf_counter() - t0
            wall[runtime] += dt
            cpu[runtime] += C.cpu_seconds() - c0
            row[f"{runtime}_chunks_per_s"] = round(len(part) / dt, 2)
        rounds.append(row)
        print(row, flush=True)
    result["rounds"] = rounds
    table = {}
    for runtime in args.runtimes:
        cos = (vectors[runtime] * vectors["torch"]).sum(axis=1) if "torch" in vectors else None
        per_round = [r[f"{runtime}_chunks_per_s"] / r["torch_chunks_per_s"] for r in rounds] if "torch" in wall else []
        table[runtime] = {
            "chunks_per_s": round(len(texts) / wall[runtime], 2),
            "wall_s": round(wall[runtime], 2),
            "cpu_s": round(cpu[runtime], 2),
            "ratio_vs_torch": round(wall["torch"] / wall[runtime], 3) if "torch" in wall else None,
            "ratio_vs_torch_per_round_median": round(float(np.median(per_round)), 3) if per_round else None,
            "cpu_ratio_vs_torch": round(cpu["torch"] / cpu[runtime], 3) if "torch" in cpu else None,
            "cosine_vs_torch_mean": round(float(cos.mean()), 6) if cos is not None else None,
            "cosine_vs_torch_p1": round(float(np.percentile(cos, 1)), 6) if cos is not None else None,
            "cosine_vs_torch_min": round(float(cos.min()), 6) if cos is not None else None,
        }
    result["table"] = table
    result["load_after"] = C.loadavg()
    save(f"throughput{args.tag}", result)
    return result


def quality(args) -> dict:
    from dataclasses import asdict

    import bench_retrieval as R

    from ragops.index import Searcher
    from ragops.index.build import build_index

    root = (args.root or Path(f"/tmp/ragops-bench/scifact-{args.runtime}")).resolve()
    src = C.source_dir_for(root)
    C.safe_rmtree(root)
    C.safe_rmtree(src)
    src.mkdir(parents=True)
    shutil.copyfile(args.dataset / "corpus.jsonl", src / "corpus.jsonl")
    settings = C.settings_for(root, src / "corpus.jsonl", **settings_vars(args.runtime))
    result: dict = {"date": C.now_iso(), "argv": sys.argv, "root": str(root), "load_before": C.loadavg(),
                    "machine": C.machine_info(), "embedding": asdict(settings.embedding)}
    t0 = time.perf_counter()
    summaries = build_index(settings)
    build_s = time.perf_counter() - t0
    embed = summaries["embed"]
    result["build"] = {"seconds": round(build_s, 1), "embedded": embed.embedded, "model": embed.model,
                       "chunks_per_s_whole_build": round(embed.embedded / build_s, 2),
                       "index_sync_mode": summaries["index_sync"].mode}
    result["load_after_build"] = C.loadavg()

    qids, texts, qrels = C.split_queries(args.dataset, "test")
    searcher = Searcher.open(settings)  # project defaults: RRF k 10, weights 1.5/1.0
    result["snapshot"] = {"id": searcher.manifest.snapshot_id, "model": searcher.manifest.model,
                          "counts": searcher.manifest.counts, "rrf_k": searcher.rrf_k,
                          "hybrid_weights": list(searcher.hybrid_weights)}
    runs, secs = R.chunk_runs(searcher, qids, texts, 100)
    scores = {}
    for mode in R.MODES:
        m = C.evaluate(R.to_docs(runs[mode]), qrels)
        m["torch_fp32_ndcg@10"] = TORCH_NDCG10[mode]
        m["delta_vs_torch"] = round(m["ndcg@10"] - TORCH_NDCG10[mode], 4)
        m["search_batch_s"] = secs[mode]
        scores[mode] = m
    result["test"] = scores
    result["load_after"] = C.loadavg()
    save(f"quality_{args.runtime}{args.tag}", result)
    return result


def main(argv=None) -> dict:
    args = parse_args(argv)
    return throughput(args) if args.part == "throughput" else quality(args)


if __name__ == "__main__":
    main()
