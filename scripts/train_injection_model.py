"""Rebuild src/ragops/guardrails/injection_model.json from the public development set.

    .venv/bin/python scripts/train_injection_model.py [--data ../shared/datasets/guardrails/injection_dev.jsonl]

Only the weights are written into the package; the data stays where it is (see its SOURCE.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ragops.guardrails.injection_train import DEFAULT_DATASET, load_rows, train

OUT = Path(__file__).resolve().parents[1] / "src" / "ragops" / "guardrails" / "injection_model.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATASET))
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    model = train(load_rows(args.data))
    Path(args.out).write_text(json.dumps(model.to_json(), separators=(",", ":")), encoding="utf-8")
    print(f"{args.out}: {len(model.weights)} weights, {Path(args.out).stat().st_size / 1e6:.2f} MB, {model.meta}")


if __name__ == "__main__":
    main()
