"""Probe (issue 10): can OpenVINO's bf16 / AMX kernels bring the LLM's time to first token to 0.15x?

    .venv/bin/python benchmarks/probe_openvino_llm.py [--prompts /tmp/ragops-bench/llm/prompts.json] \
        [--new-tokens 32] [--out benchmarks/results/probe_openvino_llm.json]

Not a backend: a measurement of what one would buy. The embedder got 2.7-2.9x from OpenVINO bf16 on an
AMX CPU (BENCHMARKS.md section 7), and llama.cpp's prefill does not use AMX (section 8), so this asks the
same of the chat model. SmolLM2-135M-Instruct (the safetensors copy of the packaged GGUF) is written
as a plain Llama forward with an explicit per-layer KV cache (:class:`PlainLlama`, checked against
transformers' logits), converted with ``openvino.convert_model`` and made stateful (the KV cache lives
in OpenVINO state variables, as optimum-intel's exports do). Variants, in one process, same prompts:

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


def plain_llama(folder: Path, int8: bool = False):
    import torch
    from safetensors.torch import load_file

    class PlainLlama(torch.nn.Module):
        """``(input_ids [1, T], past k, v per layer [1, KV, P, D]) -> (last logits, present k, v ...)``."""

        def __init__(self) -> None:
            super().__init__()
            cfg = json.loads((folder / "config.json").read_text())
            sd = load_file(str(folder / "model.safetensors"))
            self.n_layers, self.heads, self.kv_heads = (cfg["num_hidden_layers"], cfg["num_attention_heads"],
                                                        cfg["num_key_value_heads"])
            self.head_dim = cfg.get("head_dim") or cfg["hidden_size"] // self.heads
            self.eps = cfg["rms_norm_eps"]
            theta = (cfg.get("rope_parameters") or {}).get("rope_theta", cfg.get("rope_theta", 10000.0))
            inv_freq = 1.0 / theta ** (torch.arange(0, self.head_dim, 2).float() / self.head_dim)
            # cos / sin tables gathered by position: an angle computed in the graph (position x frequency)
            # is rounded to bf16 under INFERENCE_PRECISION_HINT=bf16, and at position 800 bf16 steps by 4
            # radians, which scrambled the rotary embedding (token agreement 0.02 in a first probe)
            freqs = torch.outer(torch.arange(cfg.get("max_position_embeddings", 8192), dtype=torch.float64),
                                inv_freq.double())
            emb = torch.cat([freqs, freqs], -1)
            self.register_buffer("cos_table", emb.cos().float())
            self.register_buffer("sin_table", emb.sin().float())
            self.embed = torch.nn.Parameter(sd["model.embed_tokens.weight"], requires_grad=False)
            self.norm = torch.nn.Parameter(sd["model.norm.weight"], requires_grad=False)
            # tied embeddings: the head is the embedding (tracing rejects one Parameter in two places)
            self.head = torch.nn.Parameter(sd["lm_head.weight"], requires_grad=False) if "lm_head.weight" in sd else None
            names = {"ln1": "input_layernorm", "ln2": "post_attention_layernorm", "q": "self_attn.q_proj",
                     "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
                     "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}
            self.layers = torch.nn.ModuleList()
            for i in range(self.n_layers):
                layer = torch.nn.Module()
                for short, name in names.items():
                    w = sd[f"model.layers.{i}.{name}.weight"]
                    if int8 and w.dim() == 2:
                        scale = w.abs().amax(1, keepdim=True) / 127.0
                        layer.register_buffer(short + "_q", torch.round(w / scale).to(torch.int8))
                        layer.register_buffer(short + "_s", scale)
                    else:
                        setattr(layer, short, torch.nn.Parameter(w, requires_grad=False))
                self.layers.append(layer)

        def weight(self, layer, short: str):
            if hasattr(layer, short + "_q"):
                return getattr(layer, short + "_q").to(torch.float32) * getattr(layer, short + "_s")
            return getattr(layer, short)

        def rms(self, x, w):
            return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

        def forward(self, input_ids, *past):
            b, t = input_ids.shape
            p = past[0].shape[2]
            positions = torch.arange(t) + p
            cos, sin = self.cos_table[positions][None, None], self.sin_table[positions][None, None]
            half = self.head_dim // 2

            def rope(x):
                return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin

            mask = torch.where(torch.arange(p + t)[None, :] <= torch.arange(t)[:, None] + p, 0.0,
                               float("-inf"))[None, None]
            h = torch.nn.functional.embedding(input_ids, self.embed)
            present = []
            for i, layer in enumerate(self.layers):
                x = self.rms(h, layer.ln1)
                q = (x @ self.weight(layer, "q").T).view(b, t, self.heads, self.head_dim).transpose(1, 2)
                k = (x @ self.weight(layer, "k").T).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
                v = (x @ self.weight(layer, "v").T).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
                k = torch.cat([past[2 * i], rope(k)], 2)
                v = torch.cat([past[2 * i + 1], v], 2)
                present += [k, v]
                # enable_gqa keeps K/V at 3 heads: an expand + reshape to 9 heads cost OpenVINO a copy
                # of the whole cache per step (decode 15 vs 25 tokens/s in a first probe)
                a = torch.nn.functional.scaled_dot_product_attention(rope(q), k, v, attn_mask=mask, enable_gqa=True)
                h = h + a.transpose(1, 2).reshape(b, t, self.heads * self.head_dim) @ self.weight(layer, "o").T
                x = self.rms(h, layer.ln2)
                h = h + (torch.nn.functional.silu(x @ self.weight(layer, "gate").T) * (x @ self.weight(layer, "up").T)
                         ) @ self.weight(layer, "down").T
            head = self.embed if self.head is None else self.head
            return (self.rms(h[:, -1:], self.norm) @ head.T, *present)

    return PlainLlama().eval()


def stateful_export(model, ov):
    import torch
    from openvino._offline_transformations import apply_make_stateful_transformation

    n = model.n_layers
    empty = [torch.zeros(1, model.kv_heads, 0, model.head_dim)] * (2 * n)
    kv_shape = ov.PartialShape([1, model.kv_heads, -1, model.head_dim])
    converted = ov.convert_model(model, example_input=(torch.randint(100, 400, (1, 16)), *empty),
                                 input=[ov.PartialShape([1, -1])] + [kv_shape] * (2 * n))
    ins = ["input_ids"] + [f"past.{i}.{kv}" for i in range(n) for kv in "kv"]
    outs = ["logits"] + [f"present.{i}.{kv}" for i in range(n) for kv in "kv"]
    for port, name in zip(converted.inputs, ins):
        port.get_tensor().set_names({name})
    for port, name in zip(converted.outputs, outs):
        port.get_tensor().set_names({name})
    apply_make_stateful_transformation(converted, dict(zip(ins[1:], outs[1:])))
    return converted


def openvino_runner(model, precision: str):
    import numpy as np

    from ragops.openvino_cpu import import_openvino

    ov = import_openvino()
    t = time.perf_counter()
    compiled = ov.Core().compile_model(stateful_export(model, ov), "CPU", {
        "INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": 2, "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    prepare_s = time.perf_counter() - t

    def run(ids: list[int], new: int) -> tuple[list[int], float, float]:
        request.reset_state()
        t0 = time.perf_counter()
        out = request.infer({"input_ids": np.array([ids], dtype=np.int64)})
        ttft = time.perf_counter() - t0
        tokens = [int(out["logits"].argmax())]
        t1 = time.perf_counter()
        for _ in range(new - 1):
            out = request.infer({"input_ids": np.array([[tokens[-1]]], dtype=np.int64)})
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
        n = plain.n_layers
        empty = [torch.zeros(1, plain.kv_heads, 0, plain.head_dim)] * (2 * n)
        result["plain_llama_max_logit_diff"] = float((plain(ids, *empty)[0][0, -1] - ref(ids).logits[0, -1]).abs().max())
        del ref

    variants = {
        "transformers": lambda: torch_runner(folder, torch.float32),
        "torch-bf16": lambda: torch_runner(folder, torch.bfloat16),
        "openvino-f32": lambda: openvino_runner(plain, "f32"),
        "openvino-bf16": lambda: openvino_runner(plain, "bf16"),
        "openvino-int8w": lambda: openvino_runner(plain_llama(folder, int8=True), "bf16"),
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
            "identical_answers": f"{sum(a == b for a, b in zip(tokens, baseline))}/{len(tokens)}",
            "token_agreement": round(sum(common_prefix(a, b) for a, b in zip(tokens, baseline))
                                     / sum(len(b) for b in baseline), 3),
            "first_token_agreement": f"{sum(a[0] == b[0] for a, b in zip(tokens, baseline))}/{len(tokens)}",
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
