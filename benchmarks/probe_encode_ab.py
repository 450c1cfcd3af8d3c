"""A/B probe: the pipeline's LocalEmbedder.encode vs a plain SentenceTransformer.encode on the same
chunk texts, alternated in one process (A B A B …) so that machine load affects both alike.
Also: one call over all texts vs calls over windows of EMBED_BATCH_ROWS (the pipeline's batching).

    .venv/bin/python benchmarks/probe_encode_ab.py --root /tmp/ragops-bench/scifact --n 1024 --rounds 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=C.DEFAULT_ROOT)
    p.add_argument("--n", type=int, default=1024, help="chunk texts per encode (a random sample, seeded)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--window", type=int, default=0, help="also time windows of this many rows (0: skip)")
    p.add_argument("--name", default="probe_encode_ab")
    args = p.parse_args(argv)

    from sentence_transformers import SentenceTransformer

    from ragops.chunking import indexed_text
    from ragops.embedding import get_embedder
    from ragops.lakehouse import open_lakehouse
    from ragops.weights import resolve_model_path

    settings = C.settings_for(args.root, "/unused")
    with open_lakehouse(settings) as lh:
        chunks = lh.read("chunks", ["title", "section", "text"]).sample(frac=1.0, random_state=0).head(args.n)
    texts = [indexed_text(t, s, x, True) for t, s, x in zip(chunks["title"], chunks["section"], chunks["text"], strict=True)]
    result: dict = {"benchmark": "probe_encode_ab", "date": C.now_iso(), "argv": sys.argv, "load_before": C.loadavg(),
                    "texts": len(texts)}
    pipeline = get_embedder(settings.embedding)
    plain = SentenceTransformer(str(resolve_model_path("all-MiniLM-L6-v2")), device="cpu")
    plain.encode(texts[:64], batch_size=32), pipeline.encode(texts[:64])  # warm-up both
    rows = []
    for r in range(args.rounds):
        for label, fn in (("pipeline_LocalEmbedder.encode", lambda: pipeline.encode(texts)),
                          ("plain_SentenceTransformer.encode", lambda: plain.encode(texts, batch_size=32))):
            la = C.loadavg()["1m"]
            t0, c0 = time.perf_counter(), C.cpu_seconds()
            fn()
            s, cpu = time.perf_counter() - t0, C.cpu_seconds() - c0
            rows.append({"round": r, "what": label, "s": round(s, 2), "texts_per_s": round(len(texts) / s, 2),
                         "cpu_s": round(cpu, 2), "texts_per_cpu_s": round(len(texts) / cpu, 2),
                         "load1_before": la, "load1_after": C.loadavg()["1m"]})
            print(rows[-1], flush=True)
        if args.window:
            t0 = time.perf_counter()
            for i in range(0, len(texts), args.window):
                plain.encode(texts[i : i + args.window], batch_size=32)
            s = time.perf_counter() - t0
            rows.append({"round": r, "what": f"plain in windows of {args.window}", "s": round(s, 2),
                         "texts_per_s": round(len(texts) / s, 2)})
            print(rows[-1], flush=True)
    result["rows"] = rows
    result["load_after"] = C.loadavg()
    C.write_result(args.name, result)
    return result


if __name__ == "__main__":
    main()
