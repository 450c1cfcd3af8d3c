"""Rebuild src/ragops/guardrails/injection_model.json from the public development set and, with
``--external DIR``, the outside corpora cloned under DIR (``injection_train.EXTERNAL``: Tensor Trust,
GPTFuzz, Self-Instruct; clone each at the commit named there).

    .venv/bin/python scripts/train_injection_model.py [--data ../shared/datasets/guardrails/injection_dev.jsonl] [--external DIR] [--encoder]

``--encoder`` also rebuilds the semantic check's head (``injection_encoder_head.json``: 384 weights on
the project's sentence embeddings, computed here by the embedder the check runs).

Only the weights are written into the package; the data stays where it is (see its SOURCE.md).
The project's hard negatives (``data/guardrails/hard_negatives.jsonl``) are always added. The
shipped model was built with ``--external`` (its ``meta.sources`` lists what it saw).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ragops.guardrails.injection_train import DEFAULT_DATASET, train, train_encoder_head, training_rows

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ragops" / "guardrails"
OUT = PACKAGE / "injection_model.json"
HEAD_OUT = PACKAGE / "injection_encoder_head.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATASET))
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--external", help="folder with clones of the repositories in injection_train.EXTERNAL")
    p.add_argument("--encoder", action="store_true", help="also rebuild the encoder head")
    p.add_argument("--no-ngram", action="store_true", help="leave injection_model.json as it is")
    args = p.parse_args()
    rows = training_rows(args.data, args.external)
    if not args.no_ngram:
        model = train(rows)
        Path(args.out).write_text(json.dumps(model.to_json(), separators=(",", ":")), encoding="utf-8")
        print(f"{args.out}: {len(model.weights)} weights, {Path(args.out).stat().st_size / 1e6:.2f} MB, {model.meta}")
    if args.encoder:
        from ragops.guardrails.injection_encoder import MAX_CHARS, encoder_embedder

        embedder = encoder_embedder()
        vectors = embedder.encode([r["text"][:MAX_CHARS] for r in rows], batch_size=32, show_progress=True)
        head = train_encoder_head(rows, vectors, embedder=embedder.model_name)
        HEAD_OUT.write_text(json.dumps(head.to_json(), separators=(",", ":")), encoding="utf-8")
        print(f"{HEAD_OUT}: {len(head.weights)} weights, {head.meta}")


if __name__ == "__main__":
    main()
