"""``ragops`` — run bundle jobs locally and query what they built.

Every command takes ``--target T`` and ``--var NAME=VALUE`` (repeatable), resolved exactly as
``ragops bundle run`` resolves them, so ``--var root=DIR`` points any command at another local
lakehouse.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from ragops.logs import setup_logging

log = logging.getLogger("ragops.cli")


class CliError(Exception):
    """An error to print as one line, with exit code 2."""


def _pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or []:
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise CliError(f"{flag} {item!r}: expected NAME=VALUE")
        out[name.strip()] = value
    return out


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", "-t", help="bundle target (default: the target marked default)")
    p.add_argument("--var", action="append", metavar="NAME=VALUE", help="override a bundle variable (repeatable)")
    p.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING")


def load_settings(args: argparse.Namespace):
    """Settings for the chosen target: bundle variables + overrides (defaults if no bundle here)."""
    from ragops.bundle import BundleError, settings_for

    try:
        return settings_for(args.target, _pairs(args.var, "--var"))
    except BundleError as exc:
        raise CliError(str(exc)) from exc


# --- bundle -------------------------------------------------------------------------------

def cmd_bundle_validate(args: argparse.Namespace) -> int:
    from ragops.bundle import validate

    bundle, issues = validate(None, args.target, _pairs(args.var, "--var"))
    if issues:
        print(f"bundle is NOT valid ({len(issues)} problem{'s' * (len(issues) != 1)}):", file=sys.stderr)
        for issue in issues:
            print(f"  {issue}", file=sys.stderr)
        return 1
    assert bundle is not None
    jobs = ", ".join(f"{name} ({len(job['tasks'])} tasks)" for name, job in bundle.jobs.items())
    print(f"bundle {bundle.name!r} is valid for target {bundle.target!r}: {jobs}")
    return 0


def cmd_bundle_summary(args: argparse.Namespace) -> int:
    from ragops.bundle import load_bundle

    bundle = load_bundle(None, args.target, _pairs(args.var, "--var"))
    if args.json:
        print(json.dumps({"name": bundle.name, "target": bundle.target, "targets": bundle.targets,
                          "variables": bundle.variables, "jobs": {k: [t["task_key"] for t in v["tasks"]]
                                                                  for k, v in bundle.jobs.items()}}, indent=2))
        return 0
    print(f"bundle {bundle.name} — target {bundle.target} (targets: {', '.join(bundle.targets)})")
    for name, job in bundle.jobs.items():
        chain = " → ".join(t["task_key"] for t in job["tasks"])
        print(f"  job {name}: {chain}")
    for k, v in sorted(bundle.variables.items()):
        print(f"  var {k} = {v}")
    return 0


def cmd_bundle_run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ragops.bundle import BundleError, load_bundle, run_job

    console = Console(stderr=True)
    try:
        bundle = load_bundle(None, args.target, _pairs(args.var, "--var"))
        settings_root = Path(str(bundle.variables.get("root", ".ragops")))
        runs_dir = (settings_root if settings_root.is_absolute() else bundle.root / settings_root) / "runs"

        def on_task(tr) -> None:
            mark = {"succeeded": "[green]✓[/]", "failed": "[red]✗[/]", "skipped": "[yellow]-[/]",
                    "excluded": "[dim]○[/]"}[tr.status]
            console.print(f"{mark} {args.job}.{tr.task_key} {tr.status} in {tr.seconds:.1f}s")

        console.print(f"[bold]running {args.job}[/] on target [bold]{bundle.target}[/] "
                      f"(engine {bundle.variables.get('engine')})")
        run = run_job(bundle, args.job, _pairs(args.param, "--param"), runs_dir=runs_dir, on_task=on_task)
    except BundleError as exc:
        raise CliError(str(exc)) from exc

    table = Table(title=f"{run.job} run {run.run_id} — {'succeeded' if run.ok else 'FAILED'} in {run.seconds:.1f}s")
    for col in ("task", "status", "seconds", "summary"):
        table.add_column(col)
    for t in run.tasks:
        summary = t.error if t.status != "succeeded" else _short_summary(t.summary)
        table.add_row(t.task_key, t.status, f"{t.seconds:.1f}", summary)
    console.print(table)
    if args.json:
        print(json.dumps(run.to_dict(), default=str))
    if not run.ok:
        failed = ", ".join(t.task_key for t in run.failed) or "?"
        console.print(f"[red]job {run.job} failed at task(s): {failed}[/]")
        return 1
    console.print(f"state in {runs_dir.parent}; next: [bold]ragops search \"your question\"[/]")
    return 0


def _short_summary(summary: Any) -> str:
    if not isinstance(summary, dict):
        return ""
    keys = ("documents", "new", "updated", "deleted", "rejected", "chunks_written", "embedded", "mode",
            "added", "total", "snapshot_id", "version", "outcome", "job", "run_id")
    return ", ".join(f"{k}={summary[k]}" for k in keys if k in summary and summary[k] not in (None, ""))


# --- search -------------------------------------------------------------------------------

def cmd_search(args: argparse.Namespace) -> int:
    from ragops.index import Searcher, SnapshotNotFoundError

    settings = load_settings(args)
    if not args.query and not args.queries:
        raise CliError("give a QUERY or --queries FILE.jsonl")
    filters: dict[str, list[str]] = {}
    for key, value in _pairs(args.filter, "--filter").items():
        filters.setdefault(key, []).append(value)
    mode = args.mode or settings.index.default_mode
    items = _read_queries(Path(args.queries)) if args.queries else []  # bad input fails before loading
    try:
        searcher = Searcher.open(settings)
    except SnapshotNotFoundError as exc:
        raise CliError(str(exc)) from exc
    fields = ("chunk_id", "doc_id", "source_uri", "title", "section", "score", "text")

    if args.queries:
        batch = 64
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            results = searcher.search_batch([q["text"] for q in chunk], k=args.k, mode=mode, filters=filters or None)
            for q, res in zip(chunk, results, strict=True):
                print(json.dumps({"id": q["id"], "results": [{f: getattr(r, f) for f in fields} for r in res]}))
        return 0

    results = searcher.search(args.query, k=args.k, mode=mode, filters=filters or None)
    if args.json:
        print(json.dumps({
            "query": args.query, "mode": mode, "k": args.k, "snapshot_id": searcher.manifest.snapshot_id,
            "results": [{f: getattr(r, f) for f in fields} for r in results],
        }))
        return 0
    if not results:
        print("no results")
        return 0
    for r in results:
        where = f"{r.source_uri}" + (f" § {r.section}" if r.section else "")
        snippet = " ".join(r.text.split())[:200]
        print(f"{r.rank:>2}. [{r.score:.4f}] {r.title} — {where}\n    {snippet}")
    return 0


def _read_queries(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise CliError(f"--queries {path}: no such file")
    items = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CliError(f"{path}:{n}: invalid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict) or "text" not in obj or not isinstance(obj["text"], str):
            raise CliError(f'{path}:{n}: each line needs {{"id": ..., "text": "..."}}')
        items.append({"id": obj.get("id", obj.get("_id", n)), "text": obj["text"]})
    return items


# --- index / tables -----------------------------------------------------------------------

def cmd_index_status(args: argparse.Namespace) -> int:
    from ragops.index import SnapshotStore

    settings = load_settings(args)
    store = SnapshotStore(settings.index_root)
    current = store.current_id()
    manifests = store.list()
    if args.json:
        print(json.dumps({"current": current, "snapshots": [m.to_dict() for m in manifests]}, default=str))
        return 0
    if not manifests:
        print(f"no index snapshots under {settings.index_root}")
        return 0
    for m in manifests:
        mark = "*" if m.snapshot_id == current else " "
        print(f"{mark} {m.snapshot_id}  embeddings v{m.source_version}  {m.counts.get('chunks', 0)} chunks / "
              f"{m.counts.get('documents', 0)} docs  {m.sync_mode}  (+{m.counts.get('added', 0)} "
              f"~{m.counts.get('updated', 0)} -{m.counts.get('deleted', 0)})  {m.model}")
    return 0


def cmd_tables(args: argparse.Namespace) -> int:
    from ragops.lakehouse import describe_tables, open_lakehouse

    settings = load_settings(args)
    with open_lakehouse(settings) as lh:
        frame = describe_tables(lh)
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    if args.json:
        print(json.dumps(rows))
        return 0
    for r in rows:
        v = "-" if r["version"] is None else f"v{r['version']}"
        print(f"{r['table']:<20} {v:>6} {r['rows']:>8} rows  {r['location']}")
    return 0


# --- model: ask / serve / promote --------------------------------------------------------

def _model_uri(args: argparse.Namespace, settings) -> str:
    from ragops.models.registry import ModelNotRegisteredError, default_model_uri

    if args.model_uri:
        return args.model_uri
    try:
        return default_model_uri(settings)
    except ModelNotRegisteredError as exc:
        raise CliError(str(exc)) from exc


def _version_of(uri: str, settings) -> str | None:
    """models:/name@alias or models:/name/N → the version number it points at."""
    from ragops.models.registry import resolve_model_uri

    return resolve_model_uri(settings, uri)[1]


def cmd_ask(args: argparse.Namespace) -> int:
    import mlflow

    from ragops.tracking import configure_mlflow

    settings = load_settings(args)
    configure_mlflow(settings)
    uri = _model_uri(args, settings)
    model = mlflow.pyfunc.load_model(uri)
    out = model.predict({"messages": [{"role": "user", "content": args.question}]})
    result = {
        "answer": out["answer"],
        "sources": [{k: s[k] for k in ("doc_id", "source_uri", "chunk_id", "score")} for s in out["sources"]],
        "model_uri": uri,
        "model_version": _version_of(uri, settings),
        "trace_id": out.get("trace_id"),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(result["answer"])
    if result["sources"]:
        print("\nsources:")
        for i, src in enumerate(result["sources"], start=1):
            print(f"  [{i}] {src['source_uri']}  ({src['chunk_id']})")
    print(f"\n{uri} (version {result['model_version']}), trace {result['trace_id']}", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import os
    import subprocess

    from ragops.tracking import configure_mlflow

    settings = load_settings(args)
    configure_mlflow(settings, experiment=False)
    uri = _model_uri(args, settings)
    bin_dir = str(Path(sys.executable).parent)  # mlflow execs `uvicorn` from PATH: use this venv's
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
           "MLFLOW_TRACKING_URI": settings.tracking_uri,
           # CPU generation can take a while; MLflow's default request timeout is 60 s.
           "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT": str(args.request_timeout)}
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", uri, "--env-manager", "local",
           "-h", args.host, "-p", str(args.port), "-w", str(args.workers)]
    print(f"serving {uri} (version {_version_of(uri, settings)}) at http://{args.host}:{args.port}/invocations "
          f"(health: /ping); Ctrl-C stops it", flush=True)
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 0


def _move_alias(args: argparse.Namespace, move, how: str = "") -> int:
    """Run an alias move (promote, rollback) and print the change: JSON or one line."""
    from ragops.models.registry import ModelNotRegisteredError

    settings = load_settings(args)
    try:
        change = move(settings)
    except ModelNotRegisteredError as exc:
        raise CliError(str(exc)) from exc
    print(json.dumps(change.to_dict()) if args.json else
          f"{change.model_name}@{change.alias} {how}→ version {change.version} (was {change.previous_version})")
    return 0


def cmd_model_promote(args: argparse.Namespace) -> int:
    from ragops.models.registry import promote

    return _move_alias(args, lambda settings: promote(settings, args.version, args.from_alias, args.alias))


def cmd_model_list(args: argparse.Namespace) -> int:
    from ragops.models.registry import versions_frame

    settings = load_settings(args)
    try:
        frame = versions_frame(settings)
    except Exception as exc:
        raise CliError(f"cannot list versions of {settings.registered_model_name!r}: {exc}") from exc
    rows = frame.to_dict("records")
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    if not rows:
        print(f"no versions of {settings.registered_model_name!r} in {settings.tracking_uri}")
    for r in rows:
        aliases = ",".join("@" + a for a in r["aliases"])
        print(f"{settings.registered_model_name} v{r['version']:<4} {aliases:<24} snapshot {r['index_snapshot']}  "
              f"prompt v{r['prompt_version']}")
    return 0


def cmd_model_rollback(args: argparse.Namespace) -> int:
    from ragops.models.registry import rollback

    return _move_alias(args, lambda settings: rollback(settings, args.alias), "rolled back ")


def cmd_eval(args: argparse.Namespace) -> int:
    from ragops.evaluation.eval_sets import EvalSetError, load_source, read_eval_set, register_eval_set
    from ragops.evaluation.evaluate import EvaluationError, evaluate_model, options_from, rerun
    from ragops.evaluation.report import format_table
    from ragops.lakehouse import open_lakehouse

    settings = load_settings(args)
    cfg = settings.evaluation
    overrides = {}
    if args.retrieval_only:
        overrides["answers"] = False
    if args.limit:
        overrides["limit"] = args.limit
    if args.harness:
        overrides["harness"] = args.harness
    options = options_from(cfg, **overrides)
    with open_lakehouse(settings) as lh:
        try:
            if args.rerun:
                result = rerun(settings, lh, args.rerun, harness=args.harness)
            else:
                name = args.eval_set or cfg.eval_set
                try:
                    es = read_eval_set(lh, name)
                except EvalSetError:
                    if name != cfg.eval_set or not cfg.source:
                        raise
                    register_eval_set(lh, name, load_source(cfg.source))  # first use: register the default
                    es = read_eval_set(lh, name)
                result = evaluate_model(settings, lh, _model_uri(args, settings), es, options=options)
        except (EvaluationError, EvalSetError) as exc:
            raise CliError(str(exc)) from exc
    if args.json:
        print(json.dumps(result.to_dict(), default=str))
        return 0
    frame = result.summary_frame()[["metric", "mean", "ci_low", "ci_high", "n", "n_failed", "n_not_applicable"]]
    print(f"{result.model_uri} on {result.eval_set}@v{result.eval_set_version} "
          f"({len(result.per_question)} questions, {result.seconds.get('total', 0):.1f}s)")
    print(format_table(frame))
    print(f"MLflow run: {result.run_id}")
    return 0


# --- parser -------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ragops", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    bundle = sub.add_parser("bundle", help="validate and run Databricks Asset Bundle jobs locally")
    bsub = bundle.add_subparsers(dest="bundle_command", required=True)
    p = bsub.add_parser("validate", help="check databricks.yml, resources/ and bundles/")
    _common(p)
    p.set_defaults(fn=cmd_bundle_validate)
    p = bsub.add_parser("summary", help="targets, jobs and resolved variables")
    _common(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_bundle_summary)
    p = bsub.add_parser("run", help="run a job's tasks locally in dependency order")
    p.add_argument("job")
    _common(p)
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="override a job parameter")
    p.add_argument("--json", action="store_true", help="also print the run record as JSON on stdout")
    p.set_defaults(fn=cmd_bundle_run)

    p = sub.add_parser("search", help="search the current index snapshot")
    p.add_argument("query", nargs="?")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--mode", choices=["vector", "keyword", "hybrid"])
    p.add_argument("--filter", action="append", metavar="FIELD=GLOB",
                   help="restrict to doc_id/source_uri/title/section matching a glob (repeatable)")
    p.add_argument("--queries", help="JSONL file of {\"id\", \"text\"}: one JSON line of results per query")
    p.add_argument("--json", action="store_true")
    _common(p)
    p.set_defaults(fn=cmd_search)

    index = sub.add_parser("index", help="index snapshots")
    isub = index.add_subparsers(dest="index_command", required=True)
    p = isub.add_parser("status", help="list snapshots; * marks the one serving")
    p.add_argument("--json", action="store_true")
    _common(p)
    p.set_defaults(fn=cmd_index_status)

    p = sub.add_parser("ask", help="ask the registered RAG chain a question")
    p.add_argument("question")
    p.add_argument("--model-uri", help="default: models:/rag_chain@champion (else @challenger)")
    p.add_argument("--json", action="store_true")
    _common(p)
    p.set_defaults(fn=cmd_ask)

    p = sub.add_parser("serve", help="serve the registered chain over HTTP (MLflow scoring server)")
    p.add_argument("--model-uri", help="default: models:/rag_chain@champion (else @challenger)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5050)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--request-timeout", type=int, default=600)
    _common(p)
    p.set_defaults(fn=cmd_serve)

    model = sub.add_parser("model", help="registered chain versions and aliases")
    msub = model.add_subparsers(dest="model_command", required=True)
    p = msub.add_parser("promote", help="point @champion at a version (default: the @challenger)")
    p.add_argument("--version")
    p.add_argument("--from-alias", default="challenger")
    p.add_argument("--alias", default="champion")
    p.add_argument("--json", action="store_true")
    _common(p)
    p.set_defaults(fn=cmd_model_promote)
    p = msub.add_parser("list", help="versions with aliases and lineage")
    p.add_argument("--json", action="store_true")
    _common(p)
    p.set_defaults(fn=cmd_model_list)
    p = msub.add_parser("rollback", help="point @champion back at the version it had before the last promotion")
    p.add_argument("--alias", default="champion")
    p.add_argument("--json", action="store_true")
    _common(p)
    p.set_defaults(fn=cmd_model_rollback)

    p = sub.add_parser("eval", help="evaluate a registered chain on an eval set (metrics with 95% intervals)")
    p.add_argument("--model-uri", help="default: models:/rag_chain@champion (else @challenger)")
    p.add_argument("--eval-set", help="eval set name in the eval_sets table (default: the eval_set variable)")
    p.add_argument("--retrieval-only", action="store_true", help="retrieval metrics only: no LLM calls")
    p.add_argument("--limit", type=int, help="first N questions only")
    p.add_argument("--harness", choices=["mlflow", "direct"], help="default: the eval_harness variable (mlflow)")
    p.add_argument("--rerun", metavar="RUN_ID", help="re-run a past evaluation against the same versions")
    p.add_argument("--json", action="store_true", help="one JSON object: metric names as keys, run_id, lineage")
    _common(p)
    p.set_defaults(fn=cmd_eval)

    p = sub.add_parser("tables", help="lakehouse tables with versions and row counts")
    p.add_argument("--json", action="store_true")
    _common(p)
    p.set_defaults(fn=cmd_tables)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet = getattr(args, "json", False) or args.command in ("search", "ask")
    setup_logging(args.log_level or ("WARNING" if quiet else None))
    try:
        return int(args.fn(args) or 0)
    except CliError as exc:
        print(f"ragops: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, LookupError) as exc:
        print(f"ragops: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
