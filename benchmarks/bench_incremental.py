"""Incremental re-index after changing 1% of SciFact (52 of 5,183 documents), vs the full build.

    .venv/bin/python benchmarks/bench_indexing.py          # builds /tmp/ragops-bench/scifact first
    .venv/bin/python benchmarks/bench_incremental.py

The built root is copied to ``--work-root`` (the original stays untouched for the other benchmarks).
The source file the root was built from (``<root>-src/corpus.jsonl``, recorded in ``raw_documents.source``)
is replaced by a copy in which 52 deterministically chosen documents get one sentence appended, so the
``source`` path and every doc id are identical to the full build; the original file is restored
afterwards. All four stages run in-process and are timed like the full build; the ratio is
incremental total / full-build total (from ``benchmarks/results/bench_indexing.json``).
A second, no-change run is timed too (everything should be a no-op).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

APPENDED = " This abstract was revised for the incremental indexing benchmark."


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", type=Path, default=C.DEFAULT_DATASET)
    p.add_argument("--root", type=Path, default=C.DEFAULT_ROOT, help="root built by bench_indexing.py")
    p.add_argument("--work-root", type=Path, default=Path("/tmp/ragops-bench/scifact-incremental"),
                   help="scratch copy of --root that the incremental run writes (wiped first)")
    p.add_argument("--baseline", type=Path, default=C.RESULTS_DIR / "bench_indexing.json",
                   help="bench_indexing result with the full-build time and the chunking settings")
    p.add_argument("--fraction", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--name", default="bench_incremental")
    return p.parse_args(argv)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def modified_corpus(original: Path, fraction: float, seed: int) -> tuple[str, list[str]]:
    lines = original.read_text(encoding="utf-8").splitlines(keepends=True)
    n = round(len(lines) * fraction)
    chosen = sorted(random.Random(seed).sample(range(len(lines)), n))
    ids = []
    for i in chosen:
        rec = json.loads(lines[i])
        rec["text"] = rec["text"] + APPENDED
        ids.append(str(rec["_id"]))
        lines[i] = json.dumps(rec, ensure_ascii=False) + "\n"
    return "".join(lines), ids


def run_stages(settings, timer_prefix: str, timer: C.Timer) -> dict:
    from ragops.chunking import run_chunking
    from ragops.embedding.embed import run_embedding
    from ragops.index import run_index_sync
    from ragops.ingest import run_ingest
    from ragops.lakehouse import open_lakehouse

    out = {}
    with open_lakehouse(settings) as lh:
        for stage, fn in (("ingest", run_ingest), ("chunk", run_chunking), ("embed", run_embedding),
                          ("index_sync", run_index_sync)):
            with timer(f"{timer_prefix}{stage}"):
                out[stage] = fn(lh, settings).to_dict()
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    result: dict = {"benchmark": "bench_incremental", "date": C.now_iso(), "argv": sys.argv,
                    "load_before": C.loadavg(), "machine": C.machine_info()}
    timer = C.Timer()
    with timer("imports"):
        import sentence_transformers  # noqa: F401
        import torch  # noqa: F401

        from ragops.lakehouse import open_lakehouse

    baseline = json.loads(args.baseline.read_text())
    chunking = baseline["settings"]["chunking"]
    root = args.root.resolve()
    work = args.work_root.resolve()
    if not (root / "lakehouse").exists():
        raise SystemExit(f"{root} has no lakehouse; run benchmarks/bench_indexing.py first")
    if Path(baseline["root"]).resolve() != root:
        print(f"warning: baseline {args.baseline} was built at {baseline['root']}, not {root}", file=sys.stderr)
    C.safe_rmtree(work)
    shutil.copytree(root, work)

    # The source the baseline root was ingested from: identical path → identical `source` and doc ids.
    probe = C.settings_for(work, "/nonexistent")
    with open_lakehouse(probe) as lh:
        sources = lh.read("raw_documents", ["source"])["source"].unique().tolist()
        n_docs_before = len(lh.read("raw_documents", ["doc_id"]))
    if len(sources) != 1:
        raise SystemExit(f"expected one source in {root}, found {sources}")
    source = Path(sources[0])
    settings = C.settings_for(
        work, source, chunk_strategy=chunking["strategy"], chunk_size=chunking["chunk_size"],
        chunk_overlap=chunking["chunk_overlap"], chunk_include_title=str(chunking["include_title"]).lower(),
        vector_index=baseline["settings"]["index"]["vector_index"],
    )
    original_hash = sha256(source)
    backup = source.with_name(source.name + ".orig")
    shutil.copyfile(source, backup)
    text, changed_ids = modified_corpus(backup, args.fraction, args.seed)
    result.update({"root": str(root), "work_root": str(work), "source_path": str(source),
                   "documents": n_docs_before, "modified_documents": len(changed_ids),
                   "modified_ids_first10": changed_ids[:10], "modification": f"append {APPENDED!r}"})
    try:
        tmp = source.with_name(source.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(source)
        t0 = time.perf_counter()
        incremental = run_stages(settings, "", timer)
        wall = time.perf_counter() - t0
        noop = run_stages(settings, "noop_", timer)
    finally:
        backup.replace(source)
        assert sha256(source) == original_hash, "could not restore the original source file"

    with open_lakehouse(settings) as lh:
        chunks = lh.read("chunks", ["chunk_id", "doc_id", "text"])
    from ragops.index.snapshot import SnapshotStore

    snap = SnapshotStore(settings.index_root).load(None, settings.index)
    changed_docs = {f"corpus.jsonl#{i}" for i in changed_ids}
    snap_changed = snap.rows[snap.rows["doc_id"].isin(changed_docs)]
    has_sentence = snap_changed.groupby("doc_id")["text"].apply(lambda s: any(APPENDED.strip() in t for t in s))
    checks = {
        "snapshot_chunks": len(snap.rows),
        "chunks_table_rows": len(chunks),
        "snapshot_matches_chunks_table": set(snap.rows["chunk_id"]) == set(chunks["chunk_id"]),
        "modified_docs_with_new_text_in_snapshot": int(has_sentence.sum()),
        "snapshot_sync_mode": snap.manifest.sync_mode,
    }

    stages = {k: timer.seconds[k] for k in ("ingest", "chunk", "embed", "index_sync")}
    total = sum(stages.values())
    full_total = baseline["total_s"]
    result["stages_s"] = stages
    result["total_s"] = round(total, 3)
    result["wall_s"] = round(wall, 3)
    result["full_build_total_s"] = full_total
    result["full_build_stages_s"] = baseline["stages_s"]
    result["ratio_incremental_vs_full"] = round(total / full_total, 4)
    result["target_ratio"] = 0.05
    result["rows"] = {
        "documents_updated": incremental["ingest"]["updated"],
        "documents_new": incremental["ingest"]["new"],
        "documents_deleted": incremental["ingest"]["deleted"],
        "documents_rechunked": incremental["chunk"]["rechunked_documents"],
        "chunks_written": incremental["chunk"]["chunks_written"],
        "chunks_deleted": incremental["chunk"]["chunks_deleted"],
        "chunks_reembedded": incremental["embed"]["embedded"],
        "embeddings_deleted": incremental["embed"]["deleted"],
        "index_sync_mode": incremental["index_sync"]["mode"],
        "index_added": incremental["index_sync"]["added"],
        "index_updated": incremental["index_sync"]["updated"],
        "index_deleted": incremental["index_sync"]["deleted"],
        "index_total": incremental["index_sync"]["total"],
    }
    result["noop_rerun"] = {
        "stages_s": {k: timer.seconds[f"noop_{k}"] for k in ("ingest", "chunk", "embed", "index_sync")},
        "total_s": round(sum(timer.seconds[f"noop_{k}"] for k in ("ingest", "chunk", "embed", "index_sync")), 3),
        "index_sync_mode": noop["index_sync"]["mode"],
        "rechunked": noop["chunk"]["rechunked_documents"],
        "embedded": noop["embed"]["embedded"],
    }
    result["summaries"] = incremental
    result["checks"] = checks
    result["peak_rss_mib"] = C.peak_rss_mib()
    result["load_after"] = C.loadavg()
    C.write_result(args.name, result)
    return result


if __name__ == "__main__":
    main()
