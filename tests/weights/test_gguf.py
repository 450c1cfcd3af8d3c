"""HF LlamaForCausalLM → GGUF (:func:`ragops.weights.gguf.to_gguf`), checked by running the written
file on llama.cpp against transformers on the same token ids: a tiny random model (exact logits,
F32) and the real SmolLM2 round trip (packaged GGUF → safetensors copy → F16 GGUF, greedy tokens)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("llama_cpp")

from llama_cpp import Llama  # noqa: E402

from ragops.llm.llamacpp import open_llama  # noqa: E402
from ragops.weights.gguf import GGUFConversionError, permute, requantize, to_gguf  # noqa: E402
from ragops.weights.llm import DEFAULT_LLM, resolve_gguf_path, resolve_llm_path  # noqa: E402

PROMPT_IDS = [1, 4093, 314, 253, 1345, 28, 2516, 314, 260, 3258, 30, 504, 5248, 314]


def tiny_llama(vocab_size: int = 49152, tied: bool = False):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=tied, initializer_range=0.1,
                         bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(config).eval()


def hf_greedy(model, ids: list[int], n: int) -> list[int]:
    out = list(ids)
    with torch.no_grad():
        for _ in range(n):
            out.append(int(model(torch.tensor([out])).logits[0, -1].argmax()))
    return out[len(ids):]


def llama_greedy(llama: Llama, ids: list[int], n: int) -> list[int]:
    out = []
    for token in llama.generate(ids, temp=0.0, top_k=0, min_p=0.0, reset=True):
        out.append(int(token))
        if len(out) == n:
            return out
    return out


def test_permute_is_what_transformers_gguf_loader_undoes():
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    w = np.arange(8 * 64 * 3, dtype=np.float32).reshape(8 * 64 // 8, 3 * 8)  # 64 rows, 4 kv heads
    undo = LlamaTensorProcessor(config={"num_attention_heads": 8, "num_key_value_heads": 4})
    back = undo._reverse_permute_weights(permute(w, 8, 4), 8, 4)
    assert np.array_equal(back, w) and not np.array_equal(permute(w, 8, 4), w)


def test_tiny_random_llama_converts_to_gguf_with_the_same_logits(tmp_path):
    model = tiny_llama()
    path = to_gguf(model, tmp_path / "tiny.f32.gguf", dtype="f32")
    llama = open_llama(str(path), n_ctx=128, n_threads=2, logits_all=True, verbose=False)
    assert llama.n_vocab() == 49152 and llama.metadata["tokenizer.ggml.pre"] == "smollm"
    assert "im_start" in llama.metadata["tokenizer.chat_template"]  # copied from the base GGUF
    llama.eval(PROMPT_IDS)
    ours = np.asarray(llama.scores[: len(PROMPT_IDS)])
    with torch.no_grad():
        theirs = model(torch.tensor([PROMPT_IDS])).logits[0].numpy()
    assert np.abs(ours - theirs).max() < 1e-2
    assert llama_greedy(llama, PROMPT_IDS, 6) == hf_greedy(model, PROMPT_IDS, 6)


def test_q8_0_and_tied_embeddings(tmp_path):
    model = tiny_llama(tied=True)
    path = to_gguf(model, tmp_path / "tiny.q8.gguf", dtype="q8_0")
    llama = open_llama(str(path), n_ctx=128, n_threads=2, logits_all=True, verbose=False)
    llama.eval(PROMPT_IDS)
    with torch.no_grad():
        theirs = model(torch.tensor([PROMPT_IDS])).logits[0].numpy()
    ours = np.asarray(llama.scores[: len(PROMPT_IDS)])
    assert np.abs(ours - theirs).max() < 0.05 * np.abs(theirs).max()  # 8-bit weights: close, not exact


def test_a_different_vocabulary_or_architecture_is_refused(tmp_path):
    with pytest.raises(GGUFConversionError, match="vocab_size is 1000"):
        to_gguf(tiny_llama(vocab_size=1000), tmp_path / "x.gguf")
    with pytest.raises(GGUFConversionError, match="dtype='q4'"):
        to_gguf(tiny_llama(), tmp_path / "x.gguf", dtype="q4")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_smollm2_round_trip_generates_the_same_greedy_tokens(tmp_path):
    """Packaged Q4_1 GGUF → the transformers backend's safetensors copy → F16 GGUF on llama.cpp."""
    from transformers import AutoModelForCausalLM

    folder = resolve_llm_path(DEFAULT_LLM)
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    path = to_gguf(folder, tmp_path / "smollm2.f16.gguf", dtype="f16")
    llama = open_llama(str(path), n_ctx=256, n_threads=2, verbose=False)
    ids = llama.tokenize(b"<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
                         add_bos=False, special=True)
    assert llama_greedy(llama, ids, 12) == hf_greedy(model, ids, 12)


def test_the_default_f16_weights_are_the_transformers_backends(tmp_path, monkeypatch):
    """llm_gguf_type=f16 (default): the packaged Q4_1 dequantized once to F16 answers greedily like the
    transformers backend, which runs the same Q4_1 dequantized to fp32."""
    from transformers import AutoModelForCausalLM

    from ragops.weights.llm import packaged_gguf

    monkeypatch.setenv("RAGOPS_MODEL_CACHE", str(tmp_path / "cache"))
    path = resolve_gguf_path(DEFAULT_LLM)
    assert path.parent == tmp_path / "cache" and path.name.endswith(".f16.gguf")
    assert resolve_gguf_path(DEFAULT_LLM).stat().st_mtime_ns == path.stat().st_mtime_ns  # converted once
    assert resolve_gguf_path(DEFAULT_LLM, "packaged") == packaged_gguf(DEFAULT_LLM)  # as shipped
    llama = open_llama(str(path), n_ctx=256, n_threads=2, verbose=False)
    shipped = open_llama(str(packaged_gguf(DEFAULT_LLM)), n_ctx=256, n_threads=2, verbose=False, vocab_only=True)
    assert llama.metadata["tokenizer.chat_template"] == shipped.metadata["tokenizer.chat_template"]
    assert llama.metadata["general.file_type"] == "1"  # MOSTLY_F16
    model = AutoModelForCausalLM.from_pretrained(str(resolve_llm_path(DEFAULT_LLM)), dtype=torch.float32).eval()
    ids = llama.tokenize(b"<|im_start|>user\nHow long are raw samples kept if the policy says 30 days?<|im_end|>\n"
                         b"<|im_start|>assistant\n", add_bos=False, special=True)
    assert llama_greedy(llama, ids, 12) == hf_greedy(model, ids, 12)


def test_requantize_refuses_what_is_not_a_gguf_model(tmp_path):
    from ragops.weights.llm import packaged_gguf

    with pytest.raises(GGUFConversionError, match="dtype='q4'"):
        requantize(packaged_gguf(DEFAULT_LLM), tmp_path / "x.gguf", dtype="q4")
    assert not list(tmp_path.iterdir())


def test_a_transformers_folder_resolves_to_a_cached_gguf(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGOPS_MODEL_CACHE", str(tmp_path / "cache"))
    tiny_llama().save_pretrained(tmp_path / "tuned")
    first = resolve_gguf_path(str(tmp_path / "tuned"))
    assert first.suffix == ".gguf" and first.parent == tmp_path / "cache"
    mtime = first.stat().st_mtime_ns
    assert resolve_gguf_path(str(tmp_path / "tuned")).stat().st_mtime_ns == mtime  # converted once
    assert resolve_gguf_path(str(first)) == first
