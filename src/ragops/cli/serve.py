"""``ragops ask`` and ``ragops serve``: answer from the registered chain, once or over HTTP."""

from __future__ import annotations

import argparse
import json
import sys

from ragops.cli.common import add_common, add_model_uri, load_settings, model_uri


def cmd_ask(args: argparse.Namespace) -> int:
    from ragops.serving.local import ask

    settings = load_settings(args)
    # ask resolves the default (@champion, else @challenger) itself, with one light registry query
    result = ask(settings, args.question, args.model_uri, trace=args.trace)
    if args.json:
        print(json.dumps(result))
        return 0
    print(result["answer"])
    if result["sources"]:
        print("\nsources:")
        for i, src in enumerate(result["sources"], start=1):
            print(f"  [{i}] {src['source_uri']}  ({src['chunk_id']})")
    t, u = result["timings"], result["usage"]
    trace = f", trace {result['trace_id']}" if result["trace_id"] else ""
    ttft = f"first token {t['ttft_s']:.2f} s, " if t.get("ttft_s") is not None else ""
    print(f"\n{result['model_uri']} (version {result['model_version']}){trace}\n"
          f"load {t.get('load_s', 0):.2f} s, {ttft}answer {t.get('total_s', 0):.2f} s; "
          f"{u.get('prompt_tokens', 0)} prompt + {u.get('completion_tokens', 0)} completion tokens", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from ragops.models.registry import resolve_model_uri
    from ragops.serving.local import serve

    settings = load_settings(args)
    uri = model_uri(args, settings)
    print(f"serving {uri} (version {resolve_model_uri(settings, uri)[1]}) at "
          f"http://{args.host}:{args.port}/invocations (health: /ping); Ctrl-C stops it", flush=True)
    return serve(settings, uri, args.host, args.port, args.workers, args.request_timeout, batching=args.batching)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ask", help="ask the registered RAG chain a question")
    p.add_argument("question")
    add_model_uri(p)
    p.add_argument("--json", action="store_true", help="answer, sources, usage, timings and lineage as one JSON object")
    p.add_argument("--trace", action="store_true",
                   help="record an MLflow trace of the answer and print its id (costs ~2-4 s: MLflow's import "
                        "and store)")
    add_common(p)
    p.set_defaults(fn=cmd_ask, quiet=True)

    p = sub.add_parser("serve", help="serve the registered chain over HTTP (MLflow scoring server)")
    add_model_uri(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5050)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--request-timeout", type=int, default=600, help="seconds per request (default 600)")
    p.add_argument("--no-batching", dest="batching", action="store_false",
                   help="answer one request at a time per worker: no continuous batching of concurrent requests "
                        "(llm_backend=openvino batches them by default; the other backends never do)")
    add_common(p)
    p.set_defaults(fn=cmd_serve)
