"""PII detection quality and latency (issue 12) → benchmarks/results/bench_guardrails_pii.json.

Data: presidio-research ``synth_dataset_v2.json`` (MIT), read from ``--dataset``.

* Pattern types (EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD, IBAN_CODE, US_SSN, IP_ADDRESS): the whole
  set (1,500 sentences) — they are rules, nothing was fitted on it.
* PERSON: only the TEST templates listed in ``person_model.json`` (split by template, never seen by
  ``benchmarks/train_person_detector.py``); the TRAIN split's numbers are printed too, for contrast.

Matching rule: a gold span is *found* when a predicted span of the same type overlaps it; a
predicted span is *correct* when it overlaps a gold span of the same type. Strict (exact offsets)
recall is reported beside it.

Latency: ``detect_pii`` + ``redact`` (every entity type) on prompts of 128 words made of dataset
sentences (PII-dense, so a worst case; 128 words ≈ 160 BPE tokens), one process, one thread.

    .venv/bin/python benchmarks/bench_guardrails_pii.py
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from _common import loadavg, machine_info, now_iso, percentiles, write_result  # noqa: E402

from ragops.guardrails.pii import PERSON_MODEL_PATH, PII_ENTITIES, detect_pii, redact  # noqa: E402

DEFAULT_DATASET = Path("/work/shared/datasets/guardrails/pii_synth_dataset_v2.json")
PATTERN_TYPES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS")
TARGETS = {t: 0.98 for t in PATTERN_TYPES} | {"PERSON": 0.80}


def score(records: list[dict], types: tuple[str, ...], examples: int = 0) -> dict:
    out = {}
    preds = [detect_pii(r["full_text"]) for r in records]
    for t in types:
        n_gold = found = exact = n_pred = correct = 0
        misses, false_pos = [], []
        for rec, pred in zip(records, preds, strict=True):
            gold = [(s["start_position"], s["end_position"]) for s in rec["spans"] if s["entity_type"] == t]
            mine = [p for p in pred if p.entity_type == t]
            n_gold += len(gold)
            n_pred += len(mine)
            for s, e in gold:
                if any(p.start < e and s < p.end for p in mine):
                    found += 1
                else:
                    misses.append(rec["full_text"][s:e])
                exact += any(p.start == s and p.end == e for p in mine)
            for p in mine:
                if any(p.start < e and s < p.end for s, e in gold):
                    correct += 1
                else:
                    labels = [x["entity_type"] for x in rec["spans"]
                              if x["start_position"] < p.end and p.start < x["end_position"]]
                    false_pos.append(f"{p.text!r} (gold: {','.join(labels) or 'none'})")
        out[t] = {
            "gold": n_gold,
            "predicted": n_pred,
            "recall": round(found / n_gold, 4) if n_gold else None,
            "precision": round(correct / n_pred, 4) if n_pred else None,
            "recall_exact": round(exact / n_gold, 4) if n_gold else None,
            "target_recall": TARGETS[t],
            "met": (found / n_gold >= TARGETS[t]) if n_gold else None,
            "missed_examples": misses[:examples],
            "false_positive_examples": false_pos[:examples],
        }
    return out


def benign_flags(paths: dict[str, Path]) -> dict:
    """How often prompts with (almost) no personal data get a PII span: SciFact claims and the benign
    rows of injection_dev.jsonl (BIPIA tasks, SQuAD and SciFact questions). Not a precision (nobody
    labelled them; a few do name real people) but the rate a user would see redactions."""
    out = {}
    for name, path in paths.items():
        if not path.exists():
            continue
        rows = [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
        texts = [r["text"] for r in rows if r.get("label", "benign") == "benign"]
        flagged: dict[str, int] = {}
        examples = []
        any_flag = 0
        for t in texts:
            spans = detect_pii(t)
            any_flag += bool(spans)
            for e in {s.entity_type for s in spans}:
                flagged[e] = flagged.get(e, 0) + 1
            if spans and len(examples) < 12:
                examples.append([f"{s.entity_type}:{s.text}" for s in spans])
        out[name] = {
            "prompts": len(texts),
            "with_any_pii": any_flag,
            "rate": round(any_flag / len(texts), 4) if texts else None,
            "prompts_by_entity": flagged,
            "examples": examples,
        }
    return out


def latency(records: list[dict], n_prompts: int, repeats: int, words: int = 128) -> dict:
    rng = random.Random(0)
    texts = [r["full_text"] for r in records]
    prompts = []
    for _ in range(n_prompts):
        ws: list[str] = []
        while len(ws) < words:
            ws.extend(rng.choice(texts).split())
        prompts.append(" ".join(ws[:words]))
    detect_pii(prompts[0])  # load the person model once, as a server would at start
    times = []
    for _ in range(repeats):
        for p in prompts:
            t0 = time.perf_counter()
            redact(p, detect_pii(p))
            times.append(time.perf_counter() - t0)
    only_patterns = []
    pattern_only = [e for e in PII_ENTITIES if e != "PERSON"]
    for p in prompts:
        t0 = time.perf_counter()
        detect_pii(p, pattern_only)
        only_patterns.append(time.perf_counter() - t0)
    return {
        "words_per_prompt": words,
        "prompts": n_prompts,
        "repeats": repeats,
        "all_checks": percentiles(times),
        "patterns_only": percentiles(only_patterns),
        "target_p95_ms": 15.0,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    ap.add_argument("--prompts", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    data = json.loads(args.dataset.read_text(encoding="utf-8"))
    model = json.loads(PERSON_MODEL_PATH.read_text(encoding="utf-8"))
    test_ids = set(model["split"]["test_template_ids"])
    test = [r for r in data if r["template_id"] in test_ids]
    train = [r for r in data if r["template_id"] not in test_ids]
    load_before = loadavg()
    t0 = time.perf_counter()
    quality = {
        "pattern_types_whole_set": score(data, PATTERN_TYPES, examples=10),
        "person_test_split": score(test, ("PERSON",), examples=15)["PERSON"],
        "person_train_split": score(train, ("PERSON",))["PERSON"],
    }
    quality_s = time.perf_counter() - t0
    benign = benign_flags({
        "scifact_queries": Path("/work/shared/datasets/scifact/queries.jsonl"),
        "injection_dev_benign": args.dataset.parent / "injection_dev.jsonl",
    })
    lat = latency(data, args.prompts, args.repeats)
    result = {
        "benchmark": "bench_guardrails_pii",
        "when": now_iso(),
        "command": "python benchmarks/bench_guardrails_pii.py " + " ".join(argv or sys.argv[1:]),
        "dataset": str(args.dataset),
        "split": {
            "rule": model["split"]["rule"],
            "test_templates": len(test_ids),
            "test_sentences": len(test),
            "train_sentences": len(train),
        },
        "matching": "overlap with a gold span of the same type (recall_exact: identical offsets)",
        "quality": quality,
        "quality_seconds": round(quality_s, 2),
        "benign_prompts_flagged": benign,
        "latency": lat,
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        "machine": machine_info(),
    }
    write_result("bench_guardrails_pii", result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
