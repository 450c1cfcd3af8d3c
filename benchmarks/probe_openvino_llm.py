"""Probe (issue 10): can OpenVINO's bf16 / AMX kernels bring the LLM's time to first token to 0.15x?

    .venv/bin/python benchmarks/probe_openvino_llm.py [--prompts /tmp/ragops-bench/llm/prompts.json] \
        [--new-tokens 32] [--out benchmarks/results/probe_openvino_llm.json]

The measurement that led to ``llm_backend=openvino`` (its export, :mod:`ragops.weights.openvino_llm`,
is what this script runs). The embedder got 2.7-2.9x from OpenVINO bf16 on an
AMX CPU (BENCHMARKS.md section 7), and llama.cpp's prefill does not use AMX (section 8), so this asks the
same of the chat model: SmolLM2-135M-Instruct as a stateful OpenVINO export (checked against
transformers' logits first). Variants, in one process, same prompts (the backend itself is measured
through the chat-model interface by ``bench_llm.py``):

- ``transformers``: the baseline of the issue's ratio, torch fp32 (``model(ids, use_cache=True)`` for
  the prompt, then one token at a time);
- ``torch-bf16``: the same model loaded in bf16 (torch runs bf16 matmuls on AMX through oneDNN);
- ``openvino-f32`` / ``openvino-bf16``: the stateful export, ``INFERENCE_PRECISION_HINT`` f32 / bf16;
- ``openvino-int8w``: per-output-channel int8 weights (decompressed in the graph, which OpenVINO fuses
  into its weight-compressed matmuls), bf16 activations.

For the chain's prompts (``bench_llm.py`` writes them: 8 prompts of 667-857 tokens) each variant reports
the prompt-evaluation time (TTFT = the first token's logits), decode tokens/s over ``--new-tokens``
greedy tokens, and agreement with the transformers baseline's greedy tokens (identical answers, and
common-prefix tokens / tokens). Two threads everywhere; the first prompt is a warm-up per variant.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, loadavg, machine_info, now_iso, write_result  # noqa: E402


def openvino_runner(model, precision: str):
    import numpy as np

    from ragops.openvino_cpu import compile_cpu
    from ragops.weights.openvino_llm import last_token_logits, stateful_model

    def feed(ids: list[int], past: int) -> dict:
        return {"input_ids": np.array([ids], dtype=np.int64), "attention_mask": np.ones((1, past + len(ids)), np.int64),
                "position_ids": np.arange(past, past + len(ids))[None], "beam_idx": np.zeros(1, np.int32)}

    t = time.perf_counter()
    compiled = compile_cpu(last_token_logits(stateful_model(model)), precision, 2)
    request = compiled.create_infer_request()
    prepare_s = time.perf_counter() - t

    def run(ids: list[int], new: int) -> tuple[list[int], float, float]:
        request.reset_state()
        t0 = time.perf_counter()
        out = request.infer(feed(ids, 0))
        ttft = time.perf_counter() - t0
        tokens = [int(out["logits"].argmax())]
        t1 = time.perf_counter()
        for _ in range(new - 1):
            out = request.infer(feed([tokens[-1]], len(ids) + len(tokens) - 1))
            tokens.append(int(out["logits"].argmax()))
        return tokens, ttft, (new - 1) / (time.perf_counter() - t1)

    return run, prepare_s


def torch_runner(folder: Path, dtype):
    import torch
    from transformers import AutoModelForCausalLM

    t = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
    prepare_s = time.perf_counter() - t

    def run(ids: list[int], new: int) -> tuple[list[int], float, float]:
        with torch.inference_mode():
            t0 = time.perf_counter()
            out = model(torch.tensor([ids]), use_cache=True, logits_to_keep=1)
            ttft = time.perf_counter() - t0
            tokens = [int(out.logits[0, -1].argmax())]
            cache = out.past_key_values
            t1 = time.perf_counter()
            for _ in range(new - 1):
                out = model(torch.tensor([[tokens[-1]]]), past_key_values=cache, use_cache=True)
                cache = out.past_key_values
                tokens.append(int(out.logits[0, -1].argmax()))
        return tokens, ttft, (new - 1) / (time.perf_counter() - t1)

    return run, prepare_s


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=Path, default=Path("/tmp/ragops-bench/llm/prompts.json"),
                    help="the chain's messages, as bench_llm.py writes them")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "probe_openvino_llm.json")
    args = ap.parse_args()

    import torch
    from transformers import AutoTokenizer

    from ragops.weights.llm import DEFAULT_LLM, resolve_llm_path
    from ragops.weights.openvino_llm import plain_llama

    torch.set_num_threads(2)
    folder = resolve_llm_path(DEFAULT_LLM)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prompts = [tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
               for m in json.loads(args.prompts.read_text())]
    result = {"benchmark": "probe_openvino_llm", "date": now_iso(), "argv": sys.argv, "machine": machine_info(),
              "load_before": loadavg(), "prompt_tokens": [len(p) for p in prompts], "new_tokens": args.new_tokens}

    # the export is checked against transformers before anything is timed
    with torch.inference_mode():
        from transformers import AutoModelForCausalLM

        ref = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        ids = torch.tensor([prompts[0]])
        plain = plain_llama(folder)
        result["plain_llama_max_logit_diff"] = float((plain(*plain.feed(ids), *plain.empty_cache())[0][0, -1]
                                                      - ref(ids).logits[0, -1]).abs().max())
        del ref

    variants = {
        "transformers": lambda: torch_runner(folder, torch.float32),
        "torch-bf16": lambda: torch_runner(folder, torch.bfloat16),
        "openvino-f32": lambda: openvino_runner(plain, "float32"),
        "openvino-bf16": lambda: openvino_runner(plain, "bfloat16"),
        "openvino-int8w": lambda: openvino_runner(plain_llama(folder, int8=True), "bfloat16"),
    }
    rows: dict[str, dict] = {}
    baseline: list[list[int]] = []
    for name, make in variants.items():
        run, prepare_s = make()
        run(prompts[0], 4)  # warm-up
        outs = [run(p, args.new_tokens) for p in prompts]
        tokens = [o[0] for o in outs]
        if name == "transformers":
            baseline = tokens
        rows[name] = {
            "prepare_s": round(prepare_s, 2),
            "ttft_s": [round(o[1], 3) for o in outs],
            "ttft_s_median": round(statistics.median(o[1] for o in outs), 3),
            "decode_tokens_per_s_median": round(statistics.median(o[2] for o in outs), 1),
            "identical_answers": f"{sum(a == b for a, b in zip(tokens, baseline, strict=True))}/{len(tokens)}",
            "token_agreement": round(sum(common_prefix(a, b) for a, b in zip(tokens, baseline, strict=True))
                                     / sum(len(b) for b in baseline), 3),
            "first_token_agreement": f"{sum(a[0] == b[0] for a, b in zip(tokens, baseline, strict=True))}/{len(tokens)}",
        }
        print(name, json.dumps(rows[name]), flush=True)
    base = rows["transformers"]
    for row in rows.values():
        row["ttft_vs_transformers"] = round(row["ttft_s_median"] / base["ttft_s_median"], 3)
        row["decode_vs_transformers"] = round(row["decode_tokens_per_s_median"] / base["decode_tokens_per_s_median"], 2)
    result["variants"] = rows
    result["load_after"] = loadavg()
    write_result("probe_openvino_llm", result, args.out)
    print(json.dumps({k: {m: v[m] for m in ("ttft_s_median", "ttft_vs_transformers", "decode_tokens_per_s_median",
                                             "identical_answers", "token_agreement")} for k, v in rows.items()}, indent=1))


if __name__ == "__main__":
    main()
