"""The embedders that run the exported graph (``embedding_runtime=openvino``, the default, and ONNX
Runtime's ``onnx`` / ``onnx-int8``), used for real: their vectors against torch's, the one-time export
into the model cache, OpenVINO's bf16 (or its clear refusal on a CPU without bf16), and what a runtime
switch does to an existing index (a clear error until the next ingest run re-embeds everything)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from ragops.config import EmbeddingConfig, Settings, SettingsError
from ragops.embedding import embedder_identity, get_embedder
from ragops.index.search import Searcher, SearchError
from ragops.weights import embedder as weights

TEXTS = [
    "The collector listens on port 4817 and forwards metrics over TLS.",
    "Retention defaults to 30 days; compaction runs nightly.",
    "Mutations in BRCA1 raise the lifetime risk of breast cancer. " * 20,  # longer than 256 wordpieces
    "   leading and trailing whitespace   ",
    "ok",
]


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory):
    """A fresh model cache for this module, so the export is really exercised (once, ~15-20 s)."""
    cache = tmp_path_factory.mktemp("model-cache")
    before = os.environ.get("RAGOPS_MODEL_CACHE")
    os.environ["RAGOPS_MODEL_CACHE"] = str(cache)
    started = time.perf_counter()
    weights.onnx_model_file("all-MiniLM-L6-v2", quantized=True)  # exports fp32, then quantizes it
    export_seconds = time.perf_counter() - started
    yield cache, export_seconds
    get_embedder.cache_clear()
    if before is None:
        os.environ.pop("RAGOPS_MODEL_CACHE", None)
    else:
        os.environ["RAGOPS_MODEL_CACHE"] = before


@pytest.fixture(scope="module")
def torch_vectors():
    return get_embedder(EmbeddingConfig(runtime="torch")).encode(TEXTS)


@pytest.mark.parametrize(("runtime", "min_cosine"), [("openvino", 0.9999), ("onnx", 0.9999), ("onnx-int8", 0.97)])
def test_exported_graph_vectors_agree_with_torch(model_cache, torch_vectors, runtime, min_cosine):
    embedder = get_embedder(EmbeddingConfig(runtime=runtime))
    vectors = embedder.encode(TEXTS, batch_size=2)  # several batches, lengths sorted across them
    assert vectors.shape == torch_vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    assert embedder.dimension == 384
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = (vectors * torch_vectors).sum(axis=1)
    assert cosines.min() >= min_cosine, cosines
    fp32 = runtime != "onnx-int8"
    assert embedder.model_name == ("all-MiniLM-L6-v2" if fp32 else "all-MiniLM-L6-v2@onnx-int8")
    assert embedder.encode([]).shape == (0, 384)
    # fp32 is batch-independent; int8's dynamic quantization scales activations per batch, so a text's
    # vector moves a little with its batch-mates
    assert float(embedder.encode_query(TEXTS[0]) @ vectors[0]) >= (0.99999 if fp32 else 0.99)


def _cpu_has_bf16() -> bool:
    from ragops.openvino_cpu import import_openvino

    ov = import_openvino()
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def test_openvino_bf16_is_its_own_identity_or_a_clear_refusal(model_cache, torch_vectors):
    """bf16 is close to torch's vectors but not equal, so it is stored under its own name; on a CPU
    without bf16 arithmetic it is refused with the fix named, never run at fp32 under the bf16 name."""
    from ragops.embedding.base import EmbeddingError

    config = EmbeddingConfig(runtime="openvino", dtype="bfloat16")
    assert embedder_identity(config) == "all-MiniLM-L6-v2@openvino-bf16"
    if not _cpu_has_bf16():
        with pytest.raises(EmbeddingError, match="embedding_dtype=float32"):
            get_embedder(config)
        return
    embedder = get_embedder(config)
    vectors = embedder.encode(TEXTS, batch_size=2)
    cosines = (vectors * torch_vectors).sum(axis=1)
    assert cosines.min() >= 0.999, cosines
    assert cosines.min() < 0.9999999  # it really computed in bf16: fp32 agrees to float rounding
    assert embedder.model_name == "all-MiniLM-L6-v2@openvino-bf16"


def test_openvino_sends_no_telemetry(model_cache, tmp_path):
    """``import openvino`` alone would send a usage event to Google Analytics (and fork a child that
    waits on the network); through ragops it loads its no-op stub and writes nothing to ~/intel."""
    import subprocess
    import sys

    code = ("import sys, threading; from ragops.config import EmbeddingConfig; from ragops.embedding import get_embedder; "
            "get_embedder(EmbeddingConfig(runtime='openvino')).encode_query('port'); "
            "import openvino.tools.ovc.telemetry_utils as t; "
            "print(t.tm.__name__, sys.modules.get('openvino_telemetry'), "
            "sum(th.name.startswith('ThreadPoolExecutor') for th in threading.enumerate()))")
    env = {**os.environ, "HOME": str(tmp_path), "CI": ""}  # CI=true would hide the difference
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
                         timeout=120).stdout.split()
    assert out == ["openvino.tools.ovc.telemetry_stub", "None", "0"], out
    assert not (tmp_path / "intel").exists()  # no client id, no stats file


def test_openvino_embedder_is_safe_to_share_between_threads(model_cache):
    """The gateway embeds queries from several threads through one cached embedder."""
    from concurrent.futures import ThreadPoolExecutor

    embedder = get_embedder(EmbeddingConfig(runtime="openvino"))
    alone = [embedder.encode_query(t) for t in TEXTS]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(embedder.encode_query, TEXTS * 4))
    for i, vector in enumerate(together):
        assert np.allclose(vector, alone[i % len(TEXTS)], atol=1e-6)


def test_export_is_cached_and_written_atomically(model_cache, monkeypatch):
    cache, export_seconds = model_cache
    fp32 = weights.onnx_model_file("all-MiniLM-L6-v2")
    int8 = weights.onnx_model_file("all-MiniLM-L6-v2", quantized=True)
    assert fp32.parent.parent == int8.parent.parent == cache
    assert int8.stat().st_size < fp32.stat().st_size / 2  # int8 weights
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temp folders left behind
    mtimes = fp32.stat().st_mtime_ns, int8.stat().st_mtime_ns

    def no_export(*_args):
        raise AssertionError("exported again although the cache holds the model")

    monkeypatch.setattr(weights, "_export_onnx", no_export)
    monkeypatch.setattr(weights, "_quantize_onnx", no_export)
    started = time.perf_counter()
    assert weights.onnx_model_file("all-MiniLM-L6-v2", quantized=True) == int8
    assert weights.onnx_model_file("all-MiniLM-L6-v2") == fp32
    assert time.perf_counter() - started < min(1.0, export_seconds / 5)
    assert (fp32.stat().st_mtime_ns, int8.stat().st_mtime_ns) == mtimes
    assert weights.onnx_model_info(int8)["max_seq_length"] == 256


def test_a_failed_export_leaves_no_model_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGOPS_MODEL_CACHE", str(tmp_path))

    def crash(_source, out):
        (out / "model.onnx").write_bytes(b"half a model")
        raise RuntimeError("killed mid-export")

    monkeypatch.setattr(weights, "_export_onnx", crash)
    with pytest.raises(RuntimeError, match="mid-export"):
        weights.onnx_model_file("all-MiniLM-L6-v2")
    assert list(tmp_path.iterdir()) == []  # the next run exports from scratch


def test_identity_names_the_numerics():
    identities = {
        (runtime, dtype): embedder_identity(EmbeddingConfig(runtime=runtime, dtype=dtype))
        for runtime, dtype in [("torch", "float32"), ("torch", "bfloat16"), ("onnx", "float32"),
                               ("onnx-int8", "float32"), ("openvino", "float32"), ("openvino", "bfloat16")]
    }
    assert identities == {
        ("torch", "float32"): "all-MiniLM-L6-v2",  # unchanged: existing indexes stay valid
        ("torch", "bfloat16"): "all-MiniLM-L6-v2@bf16",
        ("onnx", "float32"): "all-MiniLM-L6-v2",  # the same vectors as torch fp32 (float rounding)
        ("onnx-int8", "float32"): "all-MiniLM-L6-v2@onnx-int8",
        ("openvino", "float32"): "all-MiniLM-L6-v2",
        ("openvino", "bfloat16"): "all-MiniLM-L6-v2@openvino-bf16",  # not torch's bf16: other kernels
    }
    # the alias spelling of the packaged model is the same model
    assert embedder_identity(EmbeddingConfig(model="sentence-transformers/all-MiniLM-L6-v2", runtime="onnx-int8")) \
        == "all-MiniLM-L6-v2@onnx-int8"
    assert EmbeddingConfig().runtime == "openvino"  # the default: no torch at query time
    # remote backends have no local runtime
    assert embedder_identity(EmbeddingConfig(backend="openai", model="m", runtime="onnx")) == "m"


@pytest.mark.parametrize(("variables", "named"), [
    ({"embedding_runtime": "tensorrt"}, "embedding_runtime"),
    ({"embedding_dtype": "float16"}, "embedding_dtype"),
    ({"embedding_runtime": "onnx", "embedding_dtype": "bfloat16"}, "embedding_dtype"),
    ({"embedding_runtime": "onnx-int8", "embedding_dtype": "bfloat16"}, "embedding_dtype"),
])
def test_bad_runtime_settings_name_the_variable(variables, named):
    with pytest.raises(SettingsError, match=named):
        Settings.from_variables(variables)


def test_switching_runtime_on_an_existing_index(model_cache, small_corpus, make_settings):
    """An fp32 index answers queries from every fp32 runtime (OpenVINO, the default, or torch: the same vectors).
    Searching it with the int8 runtime fails clearly; the next ingest run re-embeds every chunk and
    rebuilds the index, after which search works again."""
    from ragops.index.build import build_index

    fp32_settings = make_settings(source_path=str(small_corpus))
    first = build_index(fp32_settings)
    chunks = first["embed"].chunks
    assert first["embed"].model == "all-MiniLM-L6-v2"
    torch_settings = make_settings(source_path=str(small_corpus), embedding_runtime="torch")
    by_default = Searcher.open(fp32_settings).search("How long is data retained?", k=3, mode="vector")
    by_torch = Searcher.open(torch_settings).search("How long is data retained?", k=3, mode="vector")
    assert [h.chunk_id for h in by_default] == [h.chunk_id for h in by_torch]
    assert by_default[0].score == pytest.approx(by_torch[0].score, abs=1e-6)

    int8_settings = make_settings(source_path=str(small_corpus), embedding_runtime="onnx-int8")
    with pytest.raises(SearchError, match=r"'all-MiniLM-L6-v2'.*'all-MiniLM-L6-v2@onnx-int8'"):
        Searcher.open(int8_settings)

    second = build_index(int8_settings)
    assert second["embed"].embedded == chunks  # every vector re-made, none mixed in
    assert second["index_sync"].mode == "full"
    hits = Searcher.open(int8_settings).search("How long is data retained?", k=3, mode="vector")
    assert hits and hits[0].doc_id == "guides/retention.md"
    with pytest.raises(SearchError, match="@onnx-int8"):
        Searcher.open(fp32_settings)  # and back: the fp32 query embedder no longer fits


def test_the_onnx_tokenizer_needs_no_transformers_and_gives_its_ids(model_cache):
    """The ONNX runtime tokenizes with ``tokenizers`` alone; ids, masks and truncation are those of
    the transformers tokenizer the torch runtime uses."""
    import subprocess
    import sys

    torch_tokenizer = get_embedder(EmbeddingConfig(runtime="torch")).tokenizer
    fast = weights.load_fast_tokenizer("all-MiniLM-L6-v2", 256)
    theirs = torch_tokenizer(TEXTS, padding=True, truncation=True, max_length=256)
    ours = fast.encode_batch(TEXTS)
    assert [e.ids for e in ours] == theirs["input_ids"] and [e.attention_mask for e in ours] == theirs["attention_mask"]
    assert max(len(e.ids) for e in ours) == 256  # the long text is cut at the model's limit
    code = ("import sys; from ragops.config import EmbeddingConfig; from ragops.embedding import get_embedder; "
            "v = get_embedder(EmbeddingConfig()).encode_query('port of the collector'); "
            "print(v.shape[0], 'torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ}).stdout.split()
    assert out == ["384", "False", "False"]
