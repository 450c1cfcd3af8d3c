"""``ragops eval``: score a registered chain on an eval set (metrics with 95% bootstrap intervals)."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from typing import Any

from ragops.cli.common import add_common, add_model_uri, load_settings, model_uri


def cmd_eval(args: argparse.Namespace) -> int:
    from ragops.evaluation.base import evaluate_model, rerun
    from ragops.evaluation.eval_sets import ensure_eval_set
    from ragops.evaluation.report import format_table
    from ragops.lakehouse import open_lakehouse

    settings = load_settings(args)
    overrides: dict[str, Any] = {}
    if args.retrieval_only:
        overrides["answers"] = False
    if args.limit:
        overrides["limit"] = args.limit
    if args.harness:
        overrides["harness"] = args.harness
    options = replace(settings.evaluation, **overrides)
    with open_lakehouse(settings) as lh:
        if args.rerun:
            result = rerun(settings, lh, args.rerun, harness=args.harness)
        else:
            es = ensure_eval_set(lh, settings.evaluation, args.eval_set)
            result = evaluate_model(settings, lh, model_uri(args, settings), es, options=options)
    if args.json:
        print(json.dumps(result.to_dict(), default=str))
        return 0
    frame = result.summary_frame()[["metric", "mean", "ci_low", "ci_high", "n", "n_failed", "n_not_applicable"]]
    print(f"{result.model_uri} on {result.eval_set}@v{result.eval_set_version} "
          f"({len(result.per_question)} questions, {result.seconds.get('total', 0):.1f}s)")
    print(format_table(frame))
    print(f"MLflow run: {result.run_id}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    # argparse %-formats help strings: a literal percent sign is written %%.
    p = sub.add_parser("eval", help="evaluate a registered chain on an eval set (metrics with 95%% intervals)")
    add_model_uri(p)
    p.add_argument("--eval-set", help="eval set name in the eval_sets table (default: the eval_set variable)")
    p.add_argument("--retrieval-only", action="store_true", help="retrieval metrics only: no LLM calls")
    p.add_argument("--limit", type=int, help="first N questions only")
    p.add_argument("--harness", choices=["mlflow", "direct"], help="default: the eval_harness variable (mlflow)")
    p.add_argument("--rerun", metavar="RUN_ID", help="re-run a past evaluation against the same versions")
    p.add_argument("--json", action="store_true", help="one JSON object: metric names as keys, run_id, lineage")
    add_common(p)
    p.set_defaults(fn=cmd_eval)
