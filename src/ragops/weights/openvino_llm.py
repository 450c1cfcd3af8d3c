"""A transformers Llama folder as a stateful OpenVINO model (``llm_backend=openvino``), exported once.

Why: on a CPU with AMX / AVX512-BF16, OpenVINO evaluates the chain's ~800-token prompt in bf16 about
2.5x faster than torch fp32 and 4x faster than llama.cpp F16, whose prefill does not use AMX
(BENCHMARKS.md §8). The export is this project's own, not optimum-intel's (not installed, and pinned to
other transformers versions): :class:`PlainLlama` is the Llama forward written out with an explicit
per-layer KV cache, checked against transformers' logits (``tests/llm/test_openvino_llm.py``),
traced by ``openvino.convert_model`` and made stateful, so the KV cache lives in OpenVINO state
variables between calls, as optimum-intel's exports do. Two details matter for bf16:

- The rotary cos / sin come from fp32 tables gathered by position. An angle computed in the graph
  (position x frequency) is rounded to bf16, which at position 800 steps by 4 radians: the first probe
  agreed with fp32 on 2% of greedy tokens, the table version on 86%.
- Attention keeps the 3 KV heads (``enable_gqa``) instead of repeating them to 9, which cost a copy of
  the whole cache per decoded token (15 vs 25 tokens/s).

:func:`resolve_openvino_llm` takes what ``llm_model`` takes (the packaged model, a transformers folder,
a registered fine-tune ``models:/rag_llm/<v>``), finds its transformers folder (:func:`resolve_llm_path`)
and writes ``<model cache>/<name>-<fingerprint>-v<EXPORT_VERSION>.openvino/`` once: ``model.xml`` / ``model.bin`` (fp32
weights, so ``llm_dtype=float32`` answers as transformers does) and the tokenizer files. Exporting needs
torch; running it does not.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
from pathlib import Path

from ragops.weights.llm import LLMNotFoundError, model_cache_dir, resolve_llm_path

log = logging.getLogger(__name__)

#: bumped when the exported graph changes, so an old export in the cache is not reused
EXPORT_VERSION = 1
#: what the exported folder keeps from the transformers folder (tokenizer, template, generation defaults)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json",
                   "special_tokens_map.json", "config.json")


def plain_llama(folder: Path, int8: bool = False):
    """The model in ``folder`` as a :class:`PlainLlama` (torch; ``int8``: per-output-channel int8 weights,
    decompressed in the graph, a probe in ``benchmarks/probe_openvino_llm.py``)."""
    import torch
    from safetensors.torch import load_file

    cfg = json.loads((folder / "config.json").read_text())
    if cfg.get("model_type") != "llama":
        raise LLMNotFoundError(f"{folder}: llm_backend=openvino exports Llama models (SmolLM2); this one is "
                               f"{cfg.get('model_type')!r}. Use llm_backend=local or transformers.")
    weights = folder / "model.safetensors"
    if not weights.exists():
        raise LLMNotFoundError(f"{folder} has no model.safetensors (sharded or .bin weights are not exported)")
    sd = load_file(str(weights))

    class PlainLlama(torch.nn.Module):
        """``(input_ids [1, T], past k, v per layer [1, KV, P, D]) -> (last logits, present k, v ...)``."""

        def __init__(self) -> None:
            super().__init__()
            self.n_layers, self.heads, self.kv_heads = (cfg["num_hidden_layers"], cfg["num_attention_heads"],
                                                        cfg["num_key_value_heads"])
            self.head_dim = cfg.get("head_dim") or cfg["hidden_size"] // self.heads
            self.eps = cfg["rms_norm_eps"]
            rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
            if rope.get("rope_type", "default") != "default":
                raise LLMNotFoundError(f"{folder}: rope_type {rope.get('rope_type')!r} is not exported (default only)")
            theta = rope.get("rope_theta", cfg.get("rope_theta", 10000.0))
            inv_freq = 1.0 / theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float64) / self.head_dim)
            freqs = torch.outer(torch.arange(cfg.get("max_position_embeddings", 8192), dtype=torch.float64), inv_freq)
            emb = torch.cat([freqs, freqs], -1)
            self.register_buffer("cos_table", emb.cos().float())  # see the module docstring
            self.register_buffer("sin_table", emb.sin().float())
            self.embed = torch.nn.Parameter(sd["model.embed_tokens.weight"].float(), requires_grad=False)
            self.norm = torch.nn.Parameter(sd["model.norm.weight"].float(), requires_grad=False)
            # tied embeddings: the head is the embedding (tracing rejects one Parameter in two places)
            self.head = (torch.nn.Parameter(sd["lm_head.weight"].float(), requires_grad=False)
                         if "lm_head.weight" in sd and not cfg.get("tie_word_embeddings") else None)
            names = {"ln1": "input_layernorm", "ln2": "post_attention_layernorm", "q": "self_attn.q_proj",
                     "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
                     "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}
            self.layers = torch.nn.ModuleList()
            for i in range(self.n_layers):
                layer = torch.nn.Module()
                for short, name in names.items():
                    w = sd[f"model.layers.{i}.{name}.weight"].float()
                    if int8 and w.dim() == 2:
                        scale = w.abs().amax(1, keepdim=True).clamp_min(1e-12) / 127.0
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

            mask = torch.where(torch.arange(p + t)[None, :] <= positions[:, None], 0.0, float("-inf"))[None, None]
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
                a = torch.nn.functional.scaled_dot_product_attention(rope(q), k, v, attn_mask=mask, enable_gqa=True)
                h = h + a.transpose(1, 2).reshape(b, t, self.heads * self.head_dim) @ self.weight(layer, "o").T
                x = self.rms(h, layer.ln2)
                h = h + (torch.nn.functional.silu(x @ self.weight(layer, "gate").T)
                         * (x @ self.weight(layer, "up").T)) @ self.weight(layer, "down").T
            head = self.embed if self.head is None else self.head
            return (self.rms(h[:, -1:], self.norm) @ head.T, *present)

        def empty_cache(self):
            return [torch.zeros(1, self.kv_heads, 0, self.head_dim)] * (2 * self.n_layers)

    return PlainLlama().eval()


def stateful_model(model):
    """``model`` (a :func:`plain_llama`) traced into an ``openvino.Model`` whose only input is
    ``input_ids`` and only output ``logits``; the KV cache is state (reset per prompt)."""
    import torch
    from openvino._offline_transformations import apply_make_stateful_transformation

    from ragops.openvino_cpu import import_openvino

    ov = import_openvino()
    n = model.n_layers
    kv_shape = ov.PartialShape([1, model.kv_heads, -1, model.head_dim])
    with torch.no_grad():
        converted = ov.convert_model(model, example_input=(torch.randint(3, 50, (1, 8)), *model.empty_cache()),
                                     input=[ov.PartialShape([1, -1])] + [kv_shape] * (2 * n))
    ins = ["input_ids"] + [f"past.{i}.{kv}" for i in range(n) for kv in "kv"]
    outs = ["logits"] + [f"present.{i}.{kv}" for i in range(n) for kv in "kv"]
    for port, name in zip(converted.inputs, ins, strict=True):
        port.get_tensor().set_names({name})
    for port, name in zip(converted.outputs, outs, strict=True):
        port.get_tensor().set_names({name})
    apply_make_stateful_transformation(converted, dict(zip(ins[1:], outs[1:], strict=True)))
    return converted


def export_openvino_llm(folder: Path, target: Path) -> Path:
    """Write the stateful OpenVINO model of ``folder`` and its tokenizer files into ``target`` (atomically:
    a half-written export is never picked up)."""
    from ragops.openvino_cpu import import_openvino

    started = time.perf_counter()
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        model = stateful_model(plain_llama(folder))
        import_openvino().save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
        for name in TOKENIZER_FILES:
            if (folder / name).exists():
                shutil.copy(folder / name, tmp / name)
        (tmp / "ragops_export.json").write_text(json.dumps(
            {"source": str(folder), "export_version": EXPORT_VERSION, "seconds": round(time.perf_counter() - started, 1)}))
        if (target / "model.xml").exists():  # another process finished the same export first: keep its copy
            return target
        if target.exists():
            shutil.rmtree(target)  # a stale, incomplete folder
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported %s to OpenVINO in %s (%.1fs, once)", folder, target, time.perf_counter() - started)
    return target


def resolve_openvino_llm(name: str) -> Path:
    """The exported OpenVINO folder for ``llm_model`` ``name``, exported on first use."""
    from ragops.weights.gguf import folder_fingerprint

    folder = resolve_llm_path(name)
    target = model_cache_dir() / f"{folder.resolve().name}-{folder_fingerprint(folder)}-v{EXPORT_VERSION}.openvino"
    if (target / "model.xml").exists():
        return target
    log.info("exporting %s to OpenVINO (once, ~10 s)", folder)
    return export_openvino_llm(folder, target)


__all__ = ["EXPORT_VERSION", "export_openvino_llm", "plain_llama", "resolve_openvino_llm", "stateful_model"]
