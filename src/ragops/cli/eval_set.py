"""``ragops eval-set list | register | synthesize``: the versioned eval sets in the ``eval_sets`` table."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace

from ragops.cli.common import add_common, load_settings
from ragops.config import LLMConfig


def _print_version(args: argparse.Namespace, registered, extra: dict | None = None) -> None:
    if args.json:
        print(json.dumps({**asdict(registered), **(extra or {})}, default=str))
        return
    state = "new version" if registered.created else "unchanged"
    print(f"eval set {registered.name}@v{registered.version}: {registered.rows} questions ({state})")


def cmd_list(args: argparse.Namespace) -> int:
    from ragops.evaluation.eval_sets import list_eval_sets
    from ragops.evaluation.report import format_table
    from ragops.lakehouse import open_lakehouse

    with open_lakehouse(load_settings(args)) as lh:
        frame = list_eval_sets(lh)
    if args.json:
        print(json.dumps(frame.to_dict("records"), default=str))
    elif frame.empty:
        print("no eval sets registered yet: `ragops eval-set register NAME SOURCE` or `ragops bundle run evaluate_job`")
    else:
        print(format_table(frame))
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from ragops.evaluation.eval_sets import load_source, register_eval_set
    from ragops.lakehouse import open_lakehouse

    with open_lakehouse(load_settings(args)) as lh:
        _print_version(args, register_eval_set(lh, args.name, load_source(args.source)))
    return 0


def cmd_synthesize(args: argparse.Namespace) -> int:
    from ragops.evaluation.synthetic import synthesize_eval_set
    from ragops.lakehouse import open_lakehouse

    settings = load_settings(args)
    changes = {k: v for k, v in {"backend": args.llm_backend, "model": args.llm_model,
                                 "endpoint": args.llm_endpoint}.items() if v}
    llm = replace(settings.llm, **changes)
    with open_lakehouse(settings) as lh:
        registered, stats = synthesize_eval_set(settings, lh, args.name, llm, per_chunk=args.per_chunk,
                                                max_chunks=args.max_chunks, seed=args.seed)
    if args.json:
        _print_version(args, registered, {"generation": stats})
        return 0
    dropped = ", ".join(f"{reason} {n}" for reason, n in stats["dropped"].items() if n) or "none"
    print(f"generated from {stats['chunks']} chunks: {stats['requested']} asked, {stats['kept']} kept; "
          f"dropped: {dropped}")
    _print_version(args, registered)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("eval-set", help="versioned eval sets: list, register from a source, synthesize")
    esub = group.add_subparsers(dest="eval_set_command", required=True)
    p = esub.add_parser("list", help="every version of every eval set: questions, origins, created_at")
    p.add_argument("--json", action="store_true")
    add_common(p)
    p.set_defaults(fn=cmd_list)
    p = esub.add_parser("register", help="register a source as the next version of NAME (only if it changed)")
    p.add_argument("name")
    p.add_argument("source", help="a .jsonl path, beir:<folder>[:split] or squad:<file>[:sample]")
    p.add_argument("--json", action="store_true")
    add_common(p)
    p.set_defaults(fn=cmd_register)
    p = esub.add_parser("synthesize", help="an LLM writes questions about the indexed chunks; registered as NAME")
    p.add_argument("name")
    p.add_argument("--llm-backend", choices=list(LLMConfig.BACKENDS),
                   help="default: the llm_backend variable")
    p.add_argument("--llm-model", help="default: the llm_model variable")
    p.add_argument("--llm-endpoint", help="base URL (openai) or serving endpoint (databricks)")
    p.add_argument("--per-chunk", type=int, default=1, help="questions per sampled chunk (default 1)")
    p.add_argument("--max-chunks", type=int, help="sample at most N chunks (default: all)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (same seed, same chunks)")
    p.add_argument("--json", action="store_true")
    add_common(p)
    p.set_defaults(fn=cmd_synthesize)
