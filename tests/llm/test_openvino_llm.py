"""The OpenVINO backend (``llm_backend=openvino``): the export against transformers' logits, float32
answers identical to the transformers backend's (a tiny random Llama and the real SmolLM2), prompt
tokens, streaming, stop sequences, token counts, bf16 where the CPU has it, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from langchain_core.messages import HumanMessage, SystemMessage

from ragops.config import LLMConfig, SettingsError
from ragops.llm import get_chat_model, llm_identity
from ragops.llm.local import LocalChatModel
from ragops.llm.openvino_llm import OpenVinoChatModel
from ragops.llm.remote import LLMError
from ragops.weights.llm import DEFAULT_LLM, LLMNotFoundError, resolve_llm_path
from ragops.weights.openvino_llm import MODEL_XML, plain_llama, resolve_openvino_llm
from tests.finetune.test_register import save_tiny_merged
from tests.weights.test_gguf import tiny_llama

CHAT = [SystemMessage("You are a documentation assistant. Answer from the context only."),
        HumanMessage("Context:\n[1] Retention — raw samples are kept for 30 days, rollups 2 years.\n\n"
                     "Question: How long are raw samples kept? Ünïcödé ✓")]


def _bf16_cpu() -> bool:
    from ragops.openvino_cpu import import_openvino

    return "BF16" in import_openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A tiny random Llama saved like a merged fine-tune (SmolLM2's tokenizer), and its own model cache."""
    root = tmp_path_factory.mktemp("ov")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAGOPS_MODEL_CACHE", str(root / "cache"))
        yield save_tiny_merged(root / "merged")


@pytest.mark.parametrize("tied", [False, True])
def test_the_plain_llama_is_transformers_logits_with_and_without_a_kv_cache(tmp_path, tied):
    model = tiny_llama(tied=tied)
    model.save_pretrained(tmp_path)
    plain = plain_llama(tmp_path)
    ids = torch.randint(3, 49000, (1, 40))
    with torch.no_grad():
        ref = model(ids).logits[0]
        full, *cache = plain(*plain.feed(ids), *plain.empty_cache())
        # the last token on a 39-token cache
        step, *_ = plain(*plain.feed(ids[:, -1:], past=39), *[c[:, :, :-1] for c in cache])
    assert torch.allclose(full[0], ref, atol=1e-4)
    assert torch.allclose(step[0, -1], ref[-1], atol=1e-4)


def test_float32_answers_are_the_transformers_backends_with_real_token_counts(tiny):
    ov = OpenVinoChatModel(model_name=str(tiny), dtype="float32", max_new_tokens=12)
    hf = LocalChatModel(model_name=str(tiny), max_new_tokens=12)
    ours, theirs = ov.invoke(CHAT), hf.invoke(CHAT)
    assert ours.content == theirs.content and ours.content
    assert ours.usage_metadata["input_tokens"] == theirs.usage_metadata["input_tokens"]
    assert ours.usage_metadata["output_tokens"] == 12  # a random model never ends its turn
    meta = ours.response_metadata
    assert meta["engine"] == "openvino" and meta["finish_reason"] == "length" and meta["dtype"] == "float32"
    assert 0 < meta["timings"]["ttft_s"] <= meta["timings"]["total_s"]


def test_stream_deltas_concatenate_to_the_answer_and_stop_sequences_cut_it(tiny):
    ov = OpenVinoChatModel(model_name=str(tiny), dtype="float32", max_new_tokens=12)
    answer = ov.invoke(CHAT).content
    chunks = list(ov.stream(CHAT))
    deltas = [str(c.content) for c in chunks if c.content]
    assert len(deltas) >= 2 and "".join(deltas).strip() == answer
    usage = [c.usage_metadata for c in chunks if c.usage_metadata]
    assert usage[-1]["output_tokens"] == 12 and usage[-1]["input_tokens"] == len(ov.prompt_tokens(CHAT))
    stop = answer.split()[2]
    cut = ov.invoke(CHAT, stop=[stop]).content
    assert stop not in cut and answer.startswith(cut)
    assert "".join(c.content for c in ov.stream(CHAT, stop=[stop])).strip() == cut


def test_sampling_is_seeded_and_greedy_is_deterministic(tiny):
    ov = OpenVinoChatModel(model_name=str(tiny), dtype="float32", max_new_tokens=10)
    assert ov.invoke(CHAT).content == ov.invoke(CHAT).content
    warm = OpenVinoChatModel(model_name=str(tiny), dtype="float32", max_new_tokens=10, temperature=1.5)
    first, again = warm.invoke(CHAT, seed=3).content, warm.invoke(CHAT, seed=3).content
    assert first == again
    assert {warm.invoke(CHAT, seed=s).content for s in range(4)} != {first}


def test_the_export_is_made_once_per_folder_and_reused(tiny):
    first = resolve_openvino_llm(str(tiny))
    assert (first / MODEL_XML).exists() and (first / "tokenizer.json").exists()
    mtime = (first / MODEL_XML).stat().st_mtime_ns
    assert resolve_openvino_llm(str(tiny)) == first
    assert (first / MODEL_XML).stat().st_mtime_ns == mtime


def test_a_prompt_longer_than_the_models_positions_is_refused_with_the_numbers(tiny):
    ov = OpenVinoChatModel(model_name=str(tiny), dtype="float32", max_new_tokens=8)  # 256 positions
    with pytest.raises(LLMError, match=r"the prompt has \d+ tokens and llm_max_new_tokens is 8"):
        ov.invoke([HumanMessage("word " * 400)])


def test_what_cannot_be_exported_is_refused_by_name(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(LLMNotFoundError, match="exports Llama models"):
        plain_llama(tmp_path)
    with pytest.raises(SettingsError, match="llm_dtype='float16'"):
        LLMConfig(backend="openvino", dtype="float16")


def test_settings_pick_the_backend_and_the_identity_names_its_precision():
    model = get_chat_model(LLMConfig(backend="openvino", dtype="float32"))
    assert isinstance(model, OpenVinoChatModel) and model.dtype == "float32"
    assert llm_identity(LLMConfig(backend="openvino")) == f"openvino[openvino/ir-bf16]:{DEFAULT_LLM}"
    assert llm_identity(LLMConfig(backend="openvino", dtype="float32")) == f"openvino[openvino/ir-f32]:{DEFAULT_LLM}"


@pytest.fixture(scope="module")
def smollm2_f32() -> OpenVinoChatModel:
    return OpenVinoChatModel(model_name=DEFAULT_LLM, dtype="float32", max_new_tokens=24)


def test_smollm2_prompt_tokens_are_apply_chat_templates(smollm2_f32):
    from transformers import AutoTokenizer

    from ragops.llm.messages import to_dicts

    tok = AutoTokenizer.from_pretrained(str(resolve_llm_path(DEFAULT_LLM)))
    expected = tok.apply_chat_template(to_dicts(CHAT), add_generation_prompt=True, tokenize=True,
                                       return_dict=True)["input_ids"]
    assert smollm2_f32.prompt_tokens(CHAT) == expected


def test_smollm2_float32_answers_as_transformers_does_and_ends_its_turn(smollm2_f32):
    theirs = LocalChatModel(model_name=DEFAULT_LLM, max_new_tokens=24).invoke(CHAT)
    ours = smollm2_f32.invoke(CHAT)
    assert ours.content == theirs.content and "Ünïcödé ✓" in ours.content  # multi-byte pieces decoded whole
    # <|im_end|> ended the turn before the cap; transformers counts that token as output, we do not
    assert ours.response_metadata["finish_reason"] == "stop"
    assert ours.usage_metadata["output_tokens"] == theirs.usage_metadata["output_tokens"] - 1 < 24


def test_smollm2_bfloat16_answers_where_the_cpu_has_it_or_names_the_fix():
    model = OpenVinoChatModel(model_name=DEFAULT_LLM, dtype="bfloat16", max_new_tokens=24)
    if not _bf16_cpu():
        with pytest.raises(LLMError, match="llm_dtype=float32"):
            model.invoke(CHAT)
        return
    answer = model.invoke(CHAT)
    assert answer.content and "\ufffd" not in answer.content
    assert answer.response_metadata["dtype"] == "bfloat16" and answer.usage_metadata["output_tokens"] > 0


def test_bfloat16_on_one_thread_answers_instead_of_killing_the_process(tiny):
    """``ragops serve --workers 2`` gives each worker one thread; OpenVINO's bf16 gated-MLP kernel died
    with SIGFPE on one thread, so the backend asks for two (run in a child: the failure is a dead process)."""
    import subprocess
    import sys

    if not _bf16_cpu():
        pytest.skip("this CPU has no bf16 arithmetic: llm_dtype=bfloat16 is refused before compiling")
    code = ("from ragops.llm.openvino_llm import OpenVinoChatModel\n"
            f"m = OpenVinoChatModel(model_name={str(tiny)!r}, dtype='bfloat16', max_new_tokens=4)\n"
            "print(m.invoke('hi').usage_metadata['output_tokens'])\n")
    import os

    env = {**os.environ, "RAGOPS_LLM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "4"
