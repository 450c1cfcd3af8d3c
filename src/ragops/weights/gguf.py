"""HF LlamaForCausalLM → GGUF, so fine-tuned weights run on the fast llama.cpp backend too.

Fine-tuning (SFT / DPO, LoRA merged into the base) produces a transformers safetensors folder;
llama.cpp reads only GGUF. :func:`to_gguf` writes one with the ``gguf`` package, the way
llama.cpp's ``convert_hf_to_gguf.py`` (``LlamaModel``) does:

- tensor names from ``gguf.TensorNameMap(MODEL_ARCH.LLAMA, n_blocks)``
  (``model.layers.0.self_attn.q_proj.weight`` → ``blk.0.attn_q.weight``);
- the Q and K projections **permuted** (:func:`permute`): llama.cpp's RoPE rotates interleaved
  pairs of a head's dimensions, HF's rotates its two halves. transformers' GGUF loader undoes
  exactly this (``LlamaTensorProcessor._reverse_permute_weights``), so packaged GGUF → safetensors
  (:mod:`ragops.weights.llm`) → GGUF is a round trip;
- hyper-parameters from the model config under the ``llama.*`` keys transformers maps back
  (``integrations/ggml.py``), and every ``tokenizer.*`` key (vocab, merges, special ids, chat
  template) copied from the base GGUF: fine-tuning keeps the base vocabulary, and copying it keeps
  the tokenizer byte-identical instead of re-deriving it from ``tokenizer.json``.

Tied embeddings (SmolLM2) write no ``output.weight``: llama.cpp then uses ``token_embd`` as the
head. Only the default RoPE is supported (Llama-3-style ``rope_scaling`` would need its frequency
factors tensor); anything else raises rather than writing a model that answers subtly wrong.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from ragops.errors import RagopsError

log = logging.getLogger(__name__)

#: dtype argument → (GGUF file type, description)
DTYPES = ("f32", "f16", "q8_0")


class GGUFConversionError(RagopsError, ValueError):
    pass


def permute(weights: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """llama.cpp's ``LlamaModel.permute``: HF's half-split RoPE layout → interleaved pairs."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


def _load(model_or_dir: Any):
    """A merged causal LM: a model object as is, or loaded from a folder (a PEFT adapter folder is
    loaded on its base and merged)."""
    if not isinstance(model_or_dir, str | os.PathLike):
        if hasattr(model_or_dir, "merge_and_unload"):
            raise GGUFConversionError("to_gguf needs merged weights: call model.merge_and_unload() first")
        return model_or_dir
    import torch

    path = Path(model_or_dir).expanduser()
    if (path / "adapter_config.json").exists():
        from peft import AutoPeftModelForCausalLM

        return AutoPeftModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).merge_and_unload()
    if not (path / "config.json").exists():
        raise GGUFConversionError(f"{path} is not a transformers model folder (no config.json)")
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)


def _hparams(config) -> dict[str, Any]:
    if getattr(config, "model_type", "") != "llama":
        raise GGUFConversionError(f"only LlamaForCausalLM converts to GGUF here, not {config.model_type!r}")
    rope = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ("default", None):
        raise GGUFConversionError(f"rope_type={rope_type!r} is not supported by this converter (default RoPE only)")
    theta = rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))
    n_head = config.num_attention_heads
    return {
        "context_length": config.max_position_embeddings,
        "embedding_length": config.hidden_size,
        "block_count": config.num_hidden_layers,
        "feed_forward_length": config.intermediate_size,
        "head_count": n_head,
        "head_count_kv": getattr(config, "num_key_value_heads", None) or n_head,
        "rms_eps": float(config.rms_norm_eps),
        "rope_freq_base": float(theta),
        "rope_dimension_count": getattr(config, "head_dim", None) or config.hidden_size // n_head,
        "vocab_size": config.vocab_size,
        "tied": bool(getattr(config, "tie_word_embeddings", False)),
    }


def _copy_tokenizer(writer, base: Path, vocab_size: int) -> None:
    import gguf

    reader = gguf.GGUFReader(str(base))
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    if tokens is None:
        raise GGUFConversionError(f"{base} has no tokenizer (tokenizer.ggml.tokens)")
    if len(tokens.data) != vocab_size:
        raise GGUFConversionError(
            f"the model's vocab_size is {vocab_size} but {base.name} has {len(tokens.data)} tokens: "
            "to_gguf copies the base model's tokenizer, so the vocabulary must be the base's")
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        main = field.types[0]
        sub = field.types[-1] if main == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), main, sub_type=sub)


def to_gguf(model_dir_or_model: Any, out_path: str | os.PathLike, *, base_gguf: str | os.PathLike | None = None,
            dtype: str = "f16") -> Path:
    """Write a (merged) HF LlamaForCausalLM as a GGUF file llama.cpp can run; returns ``out_path``.

    ``model_dir_or_model``: a ``LlamaForCausalLM`` object or a transformers / PEFT-adapter folder.
    ``base_gguf``: the GGUF whose tokenizer and chat template are copied (default: the packaged
    SmolLM2). ``dtype``: ``f32`` (exact), ``f16`` (llama.cpp's default for conversions; 1-D norm
    weights stay F32) or ``q8_0``. The file appears atomically (written next to it, then renamed).
    """
    import gguf
    import torch

    if dtype not in DTYPES:
        raise GGUFConversionError(f"dtype={dtype!r}: use one of {', '.join(DTYPES)}")
    if base_gguf is None:
        from ragops.weights.llm import DEFAULT_LLM, packaged_gguf

        base_gguf = packaged_gguf(DEFAULT_LLM)
    model = _load(model_dir_or_model)
    hp = _hparams(model.config)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:6]}")
    arch = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA]
    writer = gguf.GGUFWriter(str(tmp), arch)
    writer.add_name(str(getattr(model.config, "_name_or_path", "") or "ragops-llama"))
    writer.add_context_length(hp["context_length"])
    writer.add_embedding_length(hp["embedding_length"])
    writer.add_block_count(hp["block_count"])
    writer.add_feed_forward_length(hp["feed_forward_length"])
    writer.add_head_count(hp["head_count"])
    writer.add_head_count_kv(hp["head_count_kv"])
    writer.add_layer_norm_rms_eps(hp["rms_eps"])
    writer.add_rope_freq_base(hp["rope_freq_base"])
    writer.add_rope_dimension_count(hp["rope_dimension_count"])
    writer.add_vocab_size(hp["vocab_size"])
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[dtype]
    writer.add_file_type(int(file_type))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _copy_tokenizer(writer, Path(base_gguf), hp["vocab_size"])

    names = gguf.TensorNameMap(gguf.MODEL_ARCH.LLAMA, hp["block_count"])
    written = 0
    with torch.no_grad():
        for hf_name, tensor in model.state_dict().items():
            if hf_name.endswith("rotary_emb.inv_freq") or (hp["tied"] and hf_name == "lm_head.weight"):
                continue
            name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
            if name is None:
                raise GGUFConversionError(f"no GGUF name for tensor {hf_name!r}")
            data = tensor.detach().to(torch.float32).cpu().numpy()
            if ".attn_q." in name:
                data = permute(data, hp["head_count"], hp["head_count"])
            elif ".attn_k." in name:
                data = permute(data, hp["head_count"], hp["head_count_kv"])
            _add_tensor(writer, name, np.ascontiguousarray(data), dtype)
            written += 1
    _finish(writer, tmp, out)
    log.info("wrote %s (%s, %d tensors)", out, dtype, written)
    return out


def _finish(writer, tmp: Path, out: Path) -> None:
    """Write the file next to ``out`` and rename it into place: a reader never sees half a model."""
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _add_tensor(writer, name: str, data: np.ndarray, dtype: str) -> None:
    import gguf

    if data.ndim == 1 or dtype == "f32":
        writer.add_tensor(name, data.astype(np.float32))  # norms stay F32, as in llama.cpp's converter
    elif dtype == "f16":
        writer.add_tensor(name, data.astype(np.float16))
    elif data.shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0] == 0:
        q = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
        writer.add_tensor(name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    else:
        writer.add_tensor(name, data.astype(np.float16))


def folder_fingerprint(path: Path) -> str:
    """Names, sizes and mtimes of a model folder's config and weights: a changed fine-tune, a new id."""
    parts = []
    for f in sorted(path.iterdir()):
        if f.name == "config.json" or f.suffix in (".safetensors", ".bin") or f.name == "adapter_config.json":
            st = f.stat()
            parts.append(f"{f.name}:{st.st_size}:{int(st.st_mtime)}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def requantize(src: str | os.PathLike, out_path: str | os.PathLike, dtype: str = "f16") -> Path:
    """Rewrite the GGUF at ``src`` with its weight matrices in ``dtype`` (``f32``, ``f16``, ``q8_0``);
    returns ``out_path``. Metadata (hyper-parameters, tokenizer, chat template) is copied as is.

    Why: llama.cpp's prefill (the chain's ~800 prompt tokens) runs about 2x faster on F16 or Q8_0
    weights than on the packaged Q4_1, whose matmuls have no tiled kernel (BENCHMARKS.md, section 8).
    Dequantizing Q4_1 with ``gguf.quants.dequantize`` is exactly what transformers' GGUF loader
    does, so the F16 file holds the transformers backend's weights rounded to F16: the two backends
    then answer alike (7 of 8 greedy answers identical, against 2 of 8 on Q4_1). No torch needed;
    ~2 s for the 135M model. The file appears atomically.
    """
    import gguf

    if dtype not in DTYPES:
        raise GGUFConversionError(f"dtype={dtype!r}: use one of {', '.join(DTYPES)}")
    src = Path(src)
    reader = gguf.GGUFReader(str(src))
    arch_field = reader.fields.get("general.architecture")
    if arch_field is None:
        raise GGUFConversionError(f"{src} has no general.architecture; is it a GGUF model file?")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:6]}")
    writer = gguf.GGUFWriter(str(tmp), str(arch_field.contents()))
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[dtype]
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key in ("general.architecture", "general.file_type"):
            continue  # the writer sets these itself
        main = field.types[0]
        sub = field.types[-1] if main == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), main, sub_type=sub)
    writer.add_file_type(int(file_type))
    for tensor in reader.tensors:
        data = np.asarray(tensor.data)
        if tensor.tensor_type not in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            data = gguf.quants.dequantize(data, tensor.tensor_type)
        _add_tensor(writer, tensor.name, np.ascontiguousarray(data.astype(np.float32)), dtype)
    _finish(writer, tmp, out)
    log.info("wrote %s (%s, %d tensors, from %s)", out, dtype, len(reader.tensors), src.name)
    return out
