"""``ragops search`` and ``ragops index status``: query and inspect the index snapshots."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ragops.cli.common import CliError, add_common, id_text_lines, load_settings, pairs

_FIELDS = ("chunk_id", "doc_id", "source_uri", "title", "section", "score", "text")


def cmd_search(args: argparse.Namespace) -> int:
    from ragops.index import Searcher

    settings = load_settings(args)
    if not args.query and not args.queries:
        raise CliError("give a QUERY or --queries FILE.jsonl")
    filters: dict[str, list[str]] = {}
    for key, value in pairs(args.filter, "--filter").items():
        filters.setdefault(key, []).append(value)
    mode = args.mode or settings.index.default_mode
    k = args.k or settings.index.default_k
    # --as-groups: search as a caller with these document access groups would (the gateway's filter);
    # "" = public documents only. Without it: the owner's view, every document.
    groups = None if args.as_groups is None else tuple(g.strip() for g in args.as_groups.split(",") if g.strip())
    items = _read_queries(Path(args.queries)) if args.queries else []  # bad input fails before loading
    searcher = Searcher.open(settings)

    if args.queries:
        batch = 64
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            results = searcher.search_batch([q["text"] for q in chunk], k=k, mode=mode, filters=filters or None,
                                            groups=groups)
            for q, res in zip(chunk, results, strict=True):
                print(json.dumps({"id": q["id"], "results": [{f: getattr(r, f) for f in _FIELDS} for r in res]}))
        return 0

    results = searcher.search(args.query, k=k, mode=mode, filters=filters or None, groups=groups)
    if args.json:
        print(json.dumps({
            "query": args.query, "mode": mode, "k": k, "snapshot_id": searcher.manifest.snapshot_id,
            "results": [{f: getattr(r, f) for f in _FIELDS} for r in results],
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
    lines = path.read_text(encoding="utf-8").splitlines()
    return [{"id": qid, "text": text} for qid, text in id_text_lines(lines, str(path), id_keys=("id", "_id"))]


def cmd_status(args: argparse.Namespace) -> int:
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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search the current index snapshot")
    p.add_argument("query", nargs="?")
    p.add_argument("--k", type=int, help="number of results (default: the search_k variable, 5)")
    p.add_argument("--mode", choices=["vector", "keyword", "hybrid"], help="default: the search_mode variable")
    p.add_argument("--filter", action="append", metavar="FIELD=GLOB",
                   help="restrict to doc_id/source_uri/title/section matching a glob (repeatable)")
    p.add_argument("--as-groups", metavar="G1,G2",
                   help="search as a caller in these access groups would ('' = public documents only; "
                        "docs/access-control.md)")
    p.add_argument("--queries", help="JSONL file of {\"id\", \"text\"}: one JSON line of results per query")
    p.add_argument("--json", action="store_true")
    add_common(p)
    p.set_defaults(fn=cmd_search, quiet=True)

    index = sub.add_parser("index", help="index snapshots")
    isub = index.add_subparsers(dest="index_command", required=True)
    p = isub.add_parser("status", help="list snapshots; * marks the one serving")
    p.add_argument("--json", action="store_true")
    add_common(p)
    p.set_defaults(fn=cmd_status)
