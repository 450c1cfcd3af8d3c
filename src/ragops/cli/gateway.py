"""``ragops gateway``: the OpenAI-compatible serving gateway (keys, limits, routing, inference log)."""

from __future__ import annotations

import argparse
import os

from ragops.cli.common import CliError, add_common, load_settings, pairs


def cmd_gateway(args: argparse.Namespace) -> int:
    from ragops.serving.gateway.app import serve_gateway
    from ragops.serving.gateway.config import load_gateway_config

    if args.workers < 1:
        raise CliError(f"--workers {args.workers}: must be at least 1")
    settings = load_settings(args)
    if args.log_level:  # the workers are fresh processes: they read the level from the environment
        os.environ["RAGOPS_LOG_LEVEL"] = args.log_level.upper()
    # Loaded here once so a bad file fails now, in one line, rather than in every worker.
    config = load_gateway_config(args.config, settings)
    if not config.keys:
        print("warning: no API keys configured (`keys:` in the config or RAGOPS_API_KEYS=name:key): "
              "every request will be refused with 401", flush=True)
    routes = ", ".join(f"{name} → {' / '.join(t.name for t in r.targets)}" for name, r in config.routes.items())
    print(f"gateway at http://{args.host}:{args.port}/v1 ({args.workers} worker(s)); routes: {routes}; "
          "SIGHUP reloads the config, Ctrl-C / SIGTERM stops it", flush=True)
    return serve_gateway(settings, args.config, target=args.target, variables=pairs(args.var, "--var"),
                         host=args.host, port=args.port, workers=args.workers)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gateway", help="serve the chain behind an OpenAI-compatible gateway (keys, limits, "
                                       "routing, inference log, feedback)")
    p.add_argument("--config", help="gateway YAML (routes, keys, limits); default: one route rag_chain → "
                                    "models:/rag_chain@champion, keys from RAGOPS_API_KEYS")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="worker processes (limits hold across them)")
    add_common(p)
    p.set_defaults(fn=cmd_gateway)
