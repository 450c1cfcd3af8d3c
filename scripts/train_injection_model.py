"""Rebuild src/ragops/guardrails/injection_model.json from the public development set and, with
``--external DIR``, the outside corpora cloned under DIR (``injection_train.EXTERNAL``: Tensor Trust,
GPTFuzz, Self-Instruct; clone each at the commit named there).

    .venv/bin/python scripts/train_injection_model.py [--data ../shared/datasets/guardrails/injection_dev.jsonl] [--external DIR]

Only the weights are written into the package; the data stays where it is (see its SOURCE.md).
The project's hard negatives (``data/guardrails/hard_negatives.jsonl``) are always added. The
shipped model was built with ``--external`` (its ``meta.sources`` lists what it saw).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ragops.guardrails.injection_train import DEFAULT_DATASET, train, training_rows

OUT = Path(__file__).resolve().parents[1] / "src" / "ragops" / "guardrails" / "injection_model.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATASET))
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--external", help="folder with clones of the repositories in injection_train.EXTERNAL")
    args = p.parse_args()
    model = train(training_rows(args.data, args.external))
    Path(args.out).write_text(json.dumps(model.to_json(), separators=(",", ":")), encoding="utf-8")
    print(f"{args.out}: {len(model.weights)} weights, {Path(args.out).stat().st_size / 1e6:.2f} MB, {model.meta}")


if __name__ == "__main__":
    main()
