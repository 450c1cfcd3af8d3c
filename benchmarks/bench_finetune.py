"""Fine-tuning benchmark (issue 13): SQuAD v1.1 dev split by article, base vs fine-tuned chain.

    .venv/bin/python benchmarks/bench_finetune.py [--pool 800] [--max-steps 40] [--method sft]

1. The 2,067 SQuAD dev paragraphs indexed as in ``bench_eval.py squad`` (the lakehouse of that run is
   copied, so nothing is re-embedded when it exists).
2. Articles are split by a seeded hash: half train, half test. ``squad_heldout_500`` is 500 questions
   drawn (seed 0, as §6) from the *test* articles; ``squad_train_pool`` ``--pool`` questions from the
   train articles. ``squad_unanswerable`` is 100 SciFact claims: the SQuAD index cannot answer them.
3. The base chain (SmolLM2-135M-Instruct, llama.cpp F16, top-3 chunks, ``rag_answer_concise``, 32
   new tokens, greedy: §6's procedure) answers the held-out questions and the unanswerable ones.
4. ``run_finetune`` (finetune_job's task) builds the datasets from the pool with the held-out set as
   ``finetune_holdout_eval_set`` and ``finetune_split_by=tag`` (articles), trains on this CPU for
   ``--max-steps``, merges and registers ``rag_llm``.
5. The same chain with ``llm_model=models:/rag_llm/<version>`` answers the same questions.

Both evaluations use the ``direct`` harness (the same scorers as ``mlflow``, no trace per row).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import loadavg, machine_info, now_iso, write_result  # noqa: E402

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
BENCH = Path("/tmp/ragops-bench")
METRICS = ("answer_f1", "exact_match", "answer_contains", "groundedness", "abstention", "answer_relevance",
           "recall@5")


def _article_split(title: str, seed: int = 0) -> str:
    return "train" if int(hashlib.sha256(f"{seed}:{title}".encode()).hexdigest()[:8], 16) % 2 == 0 else "test"


def _summaries(result) -> dict:
    return {n: {"mean": None if s.mean is None else round(s.mean, 4), "ci": [s.ci_low, s.ci_high], "n": s.n}
            for n, s in result.summaries.items() if n in METRICS}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=str(BENCH / "finetune-squad"))
    p.add_argument("--pool", type=int, default=800, help="training-pool questions from the train articles")
    p.add_argument("--questions", type=int, default=500)
    p.add_argument("--unanswerable", type=int, default=100)
    p.add_argument("--max-steps", type=int, default=40)
    p.add_argument("--method", default="sft")
    p.add_argument("--extra", nargs="*", default=[], help="more settings, name=value")
    p.add_argument("--base-only", action="store_true", help="score the base chain only (kept in <root>/base.json)")
    p.add_argument("--skip-base", action="store_true", help="reuse <root>/base.json instead of re-scoring the base")
    args = p.parse_args(argv)

    from ragops.chain import RagChain
    from ragops.config import EvaluationConfig, Settings
    from ragops.evaluation.base import evaluate
    from ragops.evaluation.entities import EvalTarget
    from ragops.evaluation.eval_sets import load_beir, load_squad, register_eval_set
    from ragops.index.build import build_index
    from ragops.lakehouse import open_lakehouse
    from ragops.llm import get_chat_model

    root = Path(args.root)
    source = BENCH / "eval-squad"
    if not root.exists() and source.exists():
        shutil.copytree(source, root, symlinks=True)
    squad = DATASETS / "squad_v1.1" / "dev-v1.1.json"
    variables = {"root": str(root), "source_path": str(BENCH / "squad-src"), "llm_max_new_tokens": "32",
                 "chain_k": "3", "prompt_name": "rag_answer_concise", "finetune_eval_sets": "squad_train_pool",
                 "finetune_holdout_eval_set": f"squad_heldout_{args.questions}", "finetune_split_by": "tag",
                 "max_steps": str(args.max_steps), "finetune_method": args.method, "finetune_feedback": "false",
                 **dict(kv.split("=", 1) for kv in args.extra)}
    settings = Settings.from_variables(variables)
    result: dict = {"benchmark": "bench_finetune", "date": now_iso(), "argv": sys.argv, "machine": machine_info(),
                    "load_before": loadavg(), "settings": variables}
    t = time.perf_counter()
    build_index(settings)
    result["index_s"] = round(time.perf_counter() - t, 1)
    options = EvaluationConfig(answers=True, harness="direct")
    with open_lakehouse(settings) as lh:
        questions = load_squad(squad, doc_id_prefix="squad.jsonl#")
        side = questions["tags"].map(lambda tags: _article_split(tags[0]))
        test, train = questions[side == "test"], questions[side == "train"]
        heldout = test.sample(n=args.questions, random_state=0).sort_index()
        pool = train.sample(n=min(args.pool, len(train)), random_state=0).sort_index()
        claims = load_beir(DATASETS / "scifact", "test").head(args.unanswerable)
        claims = claims.assign(expected_doc_ids=[[] for _ in range(len(claims))],
                               tags=[["unanswerable"] for _ in range(len(claims))], origin="imported")
        register_eval_set(lh, f"squad_heldout_{args.questions}", heldout)
        register_eval_set(lh, "squad_train_pool", pool)
        register_eval_set(lh, "squad_unanswerable", claims)
        result["split"] = {"articles_train": int(train["tags"].map(lambda x: x[0]).nunique()),
                           "articles_test": int(test["tags"].map(lambda x: x[0]).nunique()),
                           "heldout_questions": len(heldout), "pool_questions": len(pool)}

        def score(llm_model: str, label: str) -> dict:
            s = replace(settings, chain=replace(settings.chain, llm=replace(settings.llm, model=llm_model)))
            chain = RagChain.from_settings(s, get_chat_model(s.llm))
            out = {}
            for name in (f"squad_heldout_{args.questions}", "squad_unanswerable"):
                t0 = time.perf_counter()
                r = evaluate(s, lh, EvalTarget(chain), name, options=options, run_name=f"{label} on {name}")
                out[name] = {"run_id": r.run_id, "seconds": round(time.perf_counter() - t0, 1),
                             "metrics": _summaries(r)}
                print(label, name, json.dumps(out[name]["metrics"]), flush=True)
            return out

        base_file = root / "base.json"
        if args.skip_base and base_file.exists():
            result["base"] = json.loads(base_file.read_text())
        else:
            result["base"] = score(settings.llm.model, "base")
            base_file.write_text(json.dumps(result["base"], indent=1))
        if args.base_only:
            write_result("bench_finetune_base", result)
            return result
        from ragops.finetune.job import run_finetune

        t = time.perf_counter()
        run = run_finetune(lh, settings)
        result["finetune"] = {"seconds": round(time.perf_counter() - t, 1), **run.to_dict()}
        print("finetune", json.dumps(result["finetune"]["trainers"]), flush=True)
        result["tuned"] = score(run.model["uri"], "tuned")
    result["load_after"] = loadavg()
    write_result("bench_finetune", result)
    return result


if __name__ == "__main__":
    main()
