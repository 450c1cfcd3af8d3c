"""Evaluation benchmarks (issue 4).

    .venv/bin/python benchmarks/bench_eval.py sweep       # SciFact retrieval sweep vs published numbers
    .venv/bin/python benchmarks/bench_eval.py throughput  # retrieval-only eval of 300 SciFact queries
    .venv/bin/python benchmarks/bench_eval.py squad [--questions 500]  # SQuAD v1.1 dev, local LLM

``sweep`` and ``throughput`` reuse the SciFact lakehouses that ``bench_indexing.py`` built under
/tmp/ragops-bench/c<size>_title (recursive chunks + title), linked into the sweep's layout so the
sweep's incremental build re-embeds nothing. ``squad`` writes the 2,067 dev paragraphs as a JSONL
corpus outside the project, indexes them, and answers a fixed seeded sample of questions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import loadavg, machine_info, now_iso, write_result  # noqa: E402

os.environ.setdefault("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")
os.environ.setdefault("RAGOPS_PROGRESS", "0")

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
BENCH = Path("/tmp/ragops-bench")
PUBLISHED = {"bm25_ndcg@10": 0.665, "all-MiniLM-L6-v2_ndcg@10": 0.645}


def _settings(root: Path, source: Path, **extra):
    from ragops.config import Settings

    return Settings.from_variables({"root": str(root), "source_path": str(source), **extra})


def _scifact_settings(root: Path, size: int):
    """(main settings, index settings) for SciFact at ``size``: the sweep's index root for that
    configuration is linked to the lakehouse bench_indexing.py built, so nothing is re-embedded."""
    from ragops.evaluation.sweep import index_settings

    base = _settings(root, BENCH / f"c{size}_title-src" / "corpus.jsonl")
    idx = index_settings(base, "recursive", size, "all-MiniLM-L6-v2")
    idx.root.parent.mkdir(parents=True, exist_ok=True)
    if not idx.root.exists():
        idx.root.symlink_to(BENCH / f"c{size}_title")
    return base, idx


def _register_scifact(lh):
    from ragops.evaluation.eval_sets import load_beir, register_eval_set

    return register_eval_set(lh, "scifact_test", load_beir(DATASETS / "scifact", "test"))


def sweep(args) -> dict:
    from ragops.config import EvaluationConfig
    from ragops.evaluation.sweep import SweepGrid, run_sweep
    from ragops.lakehouse import open_lakehouse

    root = Path(args.root)
    result: dict = {"benchmark": "bench_eval_sweep", "date": now_iso(), "argv": sys.argv, "machine": machine_info(),
                    "load_before": loadavg(), "published": PUBLISHED, "runs": []}
    tables = []
    for size in args.sizes:
        base, _ = _scifact_settings(root, size)
        with open_lakehouse(base) as lh:
            _register_scifact(lh)
            t0 = time.perf_counter()
            out = run_sweep(base, lh, SweepGrid(chunk_sizes=(size,), ks=(4,)), eval_set="scifact_test",
                            options=EvaluationConfig(answers=False, harness="direct", ks=(5, 10, 100)))
            secs = time.perf_counter() - t0
        t = out.table.copy()
        tables.append(t)
        result["runs"].append({"chunk_size": size, "parent_run_id": out.parent_run_id, "seconds": round(secs, 1)})
    import pandas as pd

    table = pd.concat(tables).sort_values("ndcg@10", ascending=False).reset_index(drop=True)
    cols = ["chunk_strategy", "chunk_size", "search_mode", "ndcg@10", "ndcg@10_ci", "recall@100", "recall@5", "mrr",
            "chunks", "index_source_version", "run_id"]
    result["table"] = table[[c for c in cols if c in table]].to_dict(orient="records")
    result["best"] = result["table"][0]
    result["load_after"] = loadavg()
    return result


def throughput(args) -> dict:
    from ragops.chain.prompts import ResolvedPrompt
    from ragops.chain.rag import RagChain
    from ragops.config import ChainConfig, EvaluationConfig
    from ragops.evaluation.base import evaluate
    from ragops.evaluation.entities import EvalTarget
    from ragops.index.search import Searcher
    from ragops.lakehouse import open_lakehouse

    base, idx = _scifact_settings(Path(args.root), args.sizes[0])
    result: dict = {"benchmark": "bench_eval_throughput", "date": now_iso(), "argv": sys.argv,
                    "machine": machine_info(), "load_before": loadavg(), "queries": 300, "target_s": 30}
    t0 = time.perf_counter()
    searcher = Searcher.open(idx)
    searcher.search("warm up", k=1, mode="vector")
    result["open_index_and_model_s"] = round(time.perf_counter() - t0, 2)
    prompt = ResolvedPrompt("rag_answer", 0, "none", [{"role": "user", "content": "{{context}} {{question}}"}])
    runs = {}
    with open_lakehouse(base) as lh:
        _register_scifact(lh)
        for mode in ("hybrid",):
            chain = RagChain(searcher, None, prompt, replace(ChainConfig(), search_mode=mode))
            for harness in args.harnesses:
                t = time.perf_counter()
                r = evaluate(base, lh, EvalTarget(chain), "scifact_test",
                             options=EvaluationConfig(answers=False, harness=harness))
                wall = time.perf_counter() - t
                runs[f"{mode}/{harness}"] = {"wall_s": round(wall, 2), "phases_s": r.seconds,
                                             "queries_per_s": round(300 / wall, 1),
                                             "ndcg@10": round(r.summaries["ndcg@10"].mean, 4),
                                             "load1": loadavg()["1m"]}
                print(mode, harness, runs[f"{mode}/{harness}"], flush=True)
    result["runs"] = runs
    result["load_after"] = loadavg()
    return result


def squad(args) -> dict:
    from ragops.chain.prompts import ensure_prompts, resolve_prompt
    from ragops.chain.rag import RagChain
    from ragops.config import EvaluationConfig, LLMConfig
    from ragops.evaluation.base import evaluate
    from ragops.evaluation.entities import EvalTarget
    from ragops.evaluation.eval_sets import load_squad, register_eval_set, squad_corpus
    from ragops.index.build import build_index
    from ragops.index.search import Searcher
    from ragops.lakehouse import open_lakehouse
    from ragops.llm import get_chat_model, llm_identity
    from ragops.tracking import configure_mlflow

    path = DATASETS / "squad_v1.1" / "dev-v1.1.json"
    src = BENCH / "squad-src"
    src.mkdir(parents=True, exist_ok=True)
    corpus = squad_corpus(path)
    with open(src / "squad.jsonl", "w") as f:
        for r in corpus.itertuples():
            f.write(json.dumps({"_id": r.id, "title": r.title, "text": r.text}) + "\n")
    settings = _settings(Path(args.root), src, llm_max_new_tokens=str(args.max_new_tokens),
                         chain_k=str(args.k), prompt_name=args.prompt)
    result: dict = {"benchmark": "bench_eval_squad", "date": now_iso(), "argv": sys.argv, "machine": machine_info(),
                    "load_before": loadavg(), "paragraphs": len(corpus), "questions": args.questions,
                    "llm": "SmolLM2-135M-Instruct (local, CPU)", "max_new_tokens": args.max_new_tokens,
                    "chain_k": args.k, "prompt": args.prompt}
    t0 = time.perf_counter()
    build = build_index(settings)
    result["index_build_s"] = round(time.perf_counter() - t0, 1)
    result["chunks"] = build["embed"].to_dict() if hasattr(build["embed"], "to_dict") else str(build["embed"])
    configure_mlflow(settings)
    ensure_prompts(settings.chain.prompt_alias)
    searcher = Searcher.open(settings)
    llm_config = replace(LLMConfig(), max_new_tokens=args.max_new_tokens, backend=args.llm_backend or LLMConfig.backend,
                         dtype=args.llm_dtype or LLMConfig.dtype)
    result["llm"] = llm_identity(llm_config)
    llm = get_chat_model(llm_config)
    chain = RagChain(searcher, llm, resolve_prompt(args.prompt, settings.chain.prompt_alias), settings.chain)
    with open_lakehouse(settings) as lh:
        questions = load_squad(path, sample=args.questions, seed=0, doc_id_prefix="squad.jsonl#")
        register_eval_set(lh, f"squad_dev_{args.questions}", questions)
        t = time.perf_counter()
        r = evaluate(settings, lh, EvalTarget(chain), f"squad_dev_{args.questions}",
                     options=EvaluationConfig(answers=True, harness="mlflow"))
        result["evaluate_s"] = round(time.perf_counter() - t, 1)
    result["run_id"] = r.run_id
    result["seconds"] = r.seconds
    result["metrics"] = {n: {"mean": None if s.mean is None else round(s.mean, 4),
                             "ci": [s.ci_low, s.ci_high], "n": s.n, "failed": s.n_failed}
                         for n, s in r.summaries.items()}
    result["load_after"] = loadavg()
    return result


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["sweep", "throughput", "squad"])
    p.add_argument("--root", default=None)
    p.add_argument("--sizes", type=int, nargs="+", default=[200, 512, 1024])
    p.add_argument("--harnesses", nargs="+", default=["direct", "mlflow"])
    p.add_argument("--questions", type=int, default=500)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--prompt", default="rag_answer_concise")
    p.add_argument("--llm-backend", default="", help="squad: llm_backend (default: the setting's default)")
    p.add_argument("--llm-dtype", default="", help="squad: llm_dtype for llm_backend=openvino")
    p.add_argument("--out", default=None, help="result file (default benchmarks/results/bench_eval_<what>.json)")
    args = p.parse_args(argv)
    args.root = args.root or str(BENCH / f"eval-{args.what}")
    result = {"sweep": sweep, "throughput": throughput, "squad": squad}[args.what](args)
    write_result(f"bench_eval_{args.what}", result, args.out)
    return result


if __name__ == "__main__":
    main()
