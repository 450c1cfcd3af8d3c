"""A transformers Llama folder as a stateful OpenVINO model (``llm_backend=openvino``), exported once.

Why: on a CPU with AMX / AVX512-BF16, OpenVINO evaluates the chain's ~800-token prompt in bf16 about
2.5x faster than torch fp32 and 4x faster than llama.cpp F16, whose prefill does not use AMX
(BENCHMARKS.md §8). The export is this project's own, not optimum-intel's (not installed, and pinned to
other transformers versions): :class:`PlainLlama` is the Llama forward written out with an explicit
per-layer KV cache, checked against transformers' logits (``tests/llm/test_openvino_llm.py``),
traced by ``openvino.convert_model`` and made stateful, so the KV cache lives in OpenVINO state
variables between calls, as optimum-intel's exports do, in their layout: inputs ``input_ids``,
``attention_mask``, ``position_ids``, ``beam_idx``, output ``logits``, and the KV heads repeated as
transformers' ``repeat_kv`` does. That layout is what OpenVINO GenAI's continuous batching
(:mod:`ragops.llm.openvino_batching`) rewrites to paged attention; an export with ``enable_gqa``
attention is refused by that rewrite ("undeclared parameters"). Details that matter:

- The rotary cos / sin come from fp32 tables gathered by position. An angle computed in the graph
  (position x frequency) is rounded to bf16, which at position 800 steps by 4 radians: the first probe
  agreed with fp32 on 2% of greedy tokens, the table version on 86%.
- Our own one-request loop (:mod:`ragops.llm.openvino_llm`) adapts the graph when it loads it: the head
  only for the last position (:func:`last_token_logits`), and in bf16 no ``beam_idx`` gather
  (:func:`without_beam_reorder`, a CPU-plugin bug). The CPU plugin keeps a fused KV cache in u8 unless told
  otherwise; :func:`ragops.openvino_cpu.compile_cpu` keeps it in the model's precision.

:func:`resolve_openvino_llm` takes what ``llm_model`` takes (the packaged model, a transformers folder,
a registered fine-tune ``models:/rag_llm/<v>``), finds its transformers folder (:func:`resolve_llm_path`)
and writes ``<model cache>/<name>-<fingerprint>-v<EXPORT_VERSION>.openvino/`` once: ``openvino_model.xml`` / ``.bin`` (fp32
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
EXPORT_VERSION = 2  # 2: optimum-intel's four inputs, logits for every position
#: the model's file name in the exported folder: optimum-intel's, which OpenVINO GenAI's pipelines look for
MODEL_XML = "openvino_model.xml"
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
        """``(input_ids, attention_mask, position_ids, beam_idx, past k, v per layer [B, KV, P, D])
        -> (logits [B, T, V], present k, v ...)``."""

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

        def forward(self, input_ids, attention_mask, position_ids, beam_idx, *past):
            """optimum-intel's layout, which OpenVINO GenAI's continuous batching rewrites to paged attention:
            ``attention_mask [B, P+T]`` (1 = a real token), ``position_ids [B, T]``, ``beam_idx [B]`` (which
            cached row each row continues), logits for every position (a slice keeps the last one where only
            it is needed, :func:`last_token_logits`)."""
            b, t = input_ids.shape
            total = attention_mask.shape[1]
            cos = self.cos_table[position_ids].unsqueeze(1)  # [B, 1, T, D]
            sin = self.sin_table[position_ids].unsqueeze(1)
            half = self.head_dim // 2

            def rope(x):
                return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin

            keys = torch.arange(total)
            causal = keys[None, :] <= (keys[-t:])[:, None]  # query i sits at key index P + i
            allowed = causal[None, None] & attention_mask[:, None, None, :].bool()
            # the float minimum, not -inf: a padded query row (all keys masked) stays finite
            mask = torch.where(allowed, 0.0, torch.finfo(torch.float32).min)
            h = torch.nn.functional.embedding(input_ids, self.embed)
            rep = self.heads // self.kv_heads
            present = []

            def repeat(x):  # transformers' repeat_kv: the GQA pattern OpenVINO's passes recognise
                return x[:, :, None].expand(b, self.kv_heads, rep, x.shape[2], self.head_dim).reshape(
                    b, self.heads, x.shape[2], self.head_dim)

            for i, layer in enumerate(self.layers):
                x = self.rms(h, layer.ln1)
                q = (x @ self.weight(layer, "q").T).view(b, t, self.heads, self.head_dim).transpose(1, 2)
                k = (x @ self.weight(layer, "k").T).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
                v = (x @ self.weight(layer, "v").T).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
                k = torch.cat([past[2 * i].index_select(0, beam_idx), rope(k)], 2)
                v = torch.cat([past[2 * i + 1].index_select(0, beam_idx), v], 2)
                present += [k, v]
                a = torch.nn.functional.scaled_dot_product_attention(rope(q), repeat(k), repeat(v), attn_mask=mask)
                h = h + a.transpose(1, 2).reshape(b, t, self.heads * self.head_dim) @ self.weight(layer, "o").T
                x = self.rms(h, layer.ln2)
                h = h + (torch.nn.functional.silu(x @ self.weight(layer, "gate").T)
                         * (x @ self.weight(layer, "up").T)) @ self.weight(layer, "down").T
            head = self.embed if self.head is None else self.head
            return (self.rms(h, self.norm) @ head.T, *present)

        def empty_cache(self, batch: int = 1):
            return [torch.zeros(batch, self.kv_heads, 0, self.head_dim)] * (2 * self.n_layers)

        @staticmethod
        def feed(input_ids, past: int = 0):
            """The four inputs for ``input_ids [B, T]`` after ``past`` cached tokens, no padding."""
            b, t = input_ids.shape
            return (input_ids, torch.ones(b, past + t, dtype=torch.int64),
                    (torch.arange(t) + past).expand(b, t), torch.arange(b, dtype=torch.int32))

    return PlainLlama().eval()


def stateful_model(model):
    """``model`` (a :func:`plain_llama`) traced into an ``openvino.Model`` with optimum-intel's inputs
    (``input_ids``, ``attention_mask``, ``position_ids``, ``beam_idx``) and output (``logits``), the KV
    cache as state (reset per prompt): the layout OpenVINO GenAI's pipelines take."""
    import numpy as np
    import torch
    from openvino._offline_transformations import apply_make_stateful_transformation

    from ragops.openvino_cpu import import_openvino

    ov = import_openvino()
    n = model.n_layers
    kv_shape = ov.PartialShape([-1, model.kv_heads, -1, model.head_dim])
    example = model.feed(torch.randint(3, 50, (2, 8)))
    with torch.no_grad():
        converted = ov.convert_model(model, example_input=(*example, *model.empty_cache(2)),
                                     input=[ov.PartialShape([-1, -1])] * 3 + [ov.PartialShape([-1])]
                                     + [kv_shape] * (2 * n))
    ins = ["input_ids", "attention_mask", "position_ids", "beam_idx"] + [
        f"past_key_values.{i}.{kv}" for i in range(n) for kv in ("key", "value")]
    outs = ["logits"] + [f"present.{i}.{kv}" for i in range(n) for kv in ("key", "value")]
    for port, name in zip(converted.inputs, ins, strict=True):
        port.get_tensor().set_names({name})
    for port, name in zip(converted.outputs, outs, strict=True):
        port.get_tensor().set_names({name})
    apply_make_stateful_transformation(converted, dict(zip(ins[4:], outs[1:], strict=True)))
    # each state starts as zeros [batch of input_ids, KV, 0, D], as optimum-intel initialises it: with a
    # dynamic batch the CPU plugin's KV-cache fusion needs the initialiser to exist
    ops = ov.opset13
    batch = ops.gather(ops.shape_of(converted.input("input_ids"), output_type="i64"), ops.constant([0]),
                       ops.constant(0))
    for op in converted.get_ops():
        if op.get_type_name() == "ReadValue":
            dims = [batch if d == 0 else ops.constant([dim.get_min_length()], dtype=np.int64)
                    for d, dim in enumerate(op.get_output_partial_shape(0))]
            op.set_arguments([ops.broadcast(ops.constant(0.0, dtype=op.get_output_element_type(0)),
                                            ops.concat(dims, axis=0))])
    converted.validate_nodes_and_infer_types()
    return converted


def without_beam_reorder(model):
    """``model`` (an exported ``openvino.Model``) reading its cache without the ``beam_idx`` gather, for a
    loop that runs one sequence and never reorders its cache (``beam_idx`` stays an input, unused). Why:
    OpenVINO 2026.4's CPU plugin fuses the cache read, the gather and the repeated KV heads into one node,
    and in bf16 that node answers garbage ("Ünïcödé çevirim çevirim ...") where the same graph without the
    gather, or in fp32, answers as transformers does. GenAI's continuous batching rewrites that part to
    paged attention, so its copy keeps the gather."""
    param = model.input("beam_idx").get_node()
    gathers = [t.get_node() for t in param.output(0).get_target_inputs() if t.get_node().get_type_name() == "Gather"]
    if not gathers:
        raise ValueError("the export has no beam_idx gather: not a ragops.weights.openvino_llm export")
    for gather in gathers:
        for consumer in list(gather.output(0).get_target_inputs()):
            consumer.replace_source_output(gather.input_value(0))
    model.validate_nodes_and_infer_types()
    return model


def last_token_logits(model):
    """``model`` (an exported ``openvino.Model``) computing the head for the last position only: prefill
    of an 800-token prompt otherwise spends ~13% of its work on logits nobody reads. GenAI's pipelines do
    the same to their copy; this one is for :mod:`ragops.llm.openvino_llm`'s own loop."""
    from ragops.openvino_cpu import import_openvino

    ops = import_openvino().opset13
    head = model.output("logits").get_node()
    while head.get_type_name() != "MatMul":  # the head's MatMul, under any Convert the export left
        head = head.input_value(0).get_node()
    hidden = head.input_value(0)
    last = ops.slice(hidden, ops.constant([-1]), ops.constant([2**62]), ops.constant([1]), ops.constant([1]))
    head.input(0).replace_source_output(last.output(0))
    model.validate_nodes_and_infer_types()
    return model


def write_genai_tokenizer(folder: Path, target: Path) -> None:
    """The tokenizer of ``folder`` as OpenVINO models (``openvino_tokenizer.xml`` / ``openvino_detokenizer.xml``)
    in ``target``: GenAI's pipelines (:mod:`ragops.llm.openvino_batching`) will not open a folder without
    them, even when they are given token ids. Our own loop tokenizes with ``tokenizer.json``."""
    from openvino_tokenizers import convert_tokenizer
    from transformers import AutoTokenizer

    from ragops.openvino_cpu import import_openvino

    ov = import_openvino()
    tokenizer, detokenizer = convert_tokenizer(AutoTokenizer.from_pretrained(str(folder)), with_detokenizer=True)
    ov.save_model(tokenizer, str(target / "openvino_tokenizer.xml"))
    ov.save_model(detokenizer, str(target / "openvino_detokenizer.xml"))


def export_openvino_llm(folder: Path, target: Path) -> Path:
    """Write the stateful OpenVINO model of ``folder`` and its tokenizer files into ``target`` (atomically:
    a half-written export is never picked up)."""
    from ragops.openvino_cpu import import_openvino

    started = time.perf_counter()
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        model = stateful_model(plain_llama(folder))
        import_openvino().save_model(model, str(tmp / MODEL_XML), compress_to_fp16=False)
        for name in TOKENIZER_FILES:
            if (folder / name).exists():
                shutil.copy(folder / name, tmp / name)
        write_genai_tokenizer(folder, tmp)
        (tmp / "ragops_export.json").write_text(json.dumps(
            {"source": str(folder), "export_version": EXPORT_VERSION, "seconds": round(time.perf_counter() - started, 1)}))
        if (target / MODEL_XML).exists():  # another process finished the same export first: keep its copy
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
    if (target / MODEL_XML).exists():
        return target
    log.info("exporting %s to OpenVINO (once, ~10 s)", folder)
    return export_openvino_llm(folder, target)


__all__ = ["EXPORT_VERSION", "MODEL_XML", "export_openvino_llm", "last_token_logits", "plain_llama", "resolve_openvino_llm",
           "stateful_model",
           "without_beam_reorder", "write_genai_tokenizer"]
