"""The llama.cpp backend (``llm_backend=local``) on the real packaged SmolLM2 GGUF: prompt tokens
identical to the transformers backend's, stop sequences, streaming, token counts, determinism."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

pytest.importorskip("llama_cpp")

from ragops.config import LLMConfig, SettingsError  # noqa: E402
from ragops.llm import get_chat_model, llm_identity  # noqa: E402
from ragops.llm.generation import StopFilter  # noqa: E402
from ragops.llm.llamacpp import (  # noqa: E402
    LlamaCppChatModel,
    batch_threads_default,
    default_threads,
    load_gguf,
)  # noqa: E402
from ragops.llm.messages import to_dicts  # noqa: E402
from ragops.llm.remote import LLMError  # noqa: E402

CHAT = [SystemMessage("You are a documentation assistant. Answer from the context only."),
        HumanMessage("Context:\n[1] Retention — raw samples are kept for 30 days, rollups 2 years.\n\n"
                     "Question: How long are raw samples kept? Ünïcödé ✓")]


@pytest.fixture(scope="module")
def llm() -> LlamaCppChatModel:
    model = get_chat_model(LLMConfig(max_new_tokens=16))
    assert isinstance(model, LlamaCppChatModel)
    return model


def test_local_is_llama_cpp_and_identity_names_engine_and_format(llm):
    assert llm_identity(LLMConfig()) == "local[llama.cpp/gguf-f16]:SmolLM2-135M-Instruct"
    assert llm_identity(LLMConfig(gguf_type="packaged")) == "local[llama.cpp/gguf]:SmolLM2-135M-Instruct"
    assert llm_identity(LLMConfig(backend="transformers")) == "transformers[transformers/safetensors]:SmolLM2-135M-Instruct"
    with pytest.raises(SettingsError, match="local, openvino, transformers, openai, databricks"):
        LLMConfig(backend="onnx")
    with pytest.raises(SettingsError, match="llm_gguf_type='q4'"):
        LLMConfig(gguf_type="q4")
    loaded = llm.loaded()
    assert loaded is llm.loaded()  # one Llama per GGUF and process
    assert loaded.path.endswith(".f16.gguf") and loaded.llama.metadata["general.file_type"] == "1"  # MOSTLY_F16
    params = loaded.llama.context_params
    assert loaded.llama.n_ctx() >= 4096 and params.n_threads == default_threads()
    assert params.n_threads_batch == batch_threads_default()  # prefill on every core


@pytest.mark.parametrize("messages", [CHAT, [HumanMessage("Name a colour.")],
                                      [*CHAT, AIMessage("30 days [1]."), HumanMessage("And rollups?")]])
def test_prompt_tokens_are_the_transformers_backends(llm, messages):
    from transformers import AutoTokenizer

    from ragops.weights.llm import resolve_llm_path

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_llm_path("SmolLM2-135M-Instruct")))  # what it loads
    theirs = tokenizer.apply_chat_template(to_dicts(messages), add_generation_prompt=True, return_dict=True)
    assert llm.prompt_tokens(messages) == list(theirs["input_ids"])


def test_generates_with_real_token_counts_and_timings(llm):
    reply = llm.invoke(CHAT)
    assert isinstance(reply.content, str) and reply.content
    usage = reply.usage_metadata
    assert usage["input_tokens"] == len(llm.prompt_tokens(CHAT))
    assert 1 <= usage["output_tokens"] <= 16 and usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    meta = reply.response_metadata
    assert meta["engine"] == "llama.cpp" and meta["finish_reason"] in ("stop", "length")
    assert 0 < meta["timings"]["ttft_s"] <= meta["timings"]["total_s"]


def test_temperature_zero_is_deterministic_and_sampling_is_seeded(llm):
    assert llm.invoke(CHAT).content == llm.invoke(CHAT).content
    a = llm.invoke("Tell me a story.", temperature=1.2, seed=7).content
    assert a == llm.invoke("Tell me a story.", temperature=1.2, seed=7).content


def test_stream_deltas_concatenate_to_the_answer(llm):
    chunks = list(llm.stream(CHAT))
    deltas = [str(c.content) for c in chunks if c.content]
    assert len(deltas) >= 2
    assert "".join(deltas).strip() == llm.invoke(CHAT).content
    usage = [c.usage_metadata for c in chunks if c.usage_metadata]
    assert usage and usage[-1]["input_tokens"] == len(llm.prompt_tokens(CHAT)) and usage[-1]["output_tokens"] >= 2


def test_stop_sequences_cut_the_answer_in_invoke_and_stream(llm):
    full = llm.invoke(CHAT).content
    word = full.split()[2]  # a word inside the answer
    cut = llm.invoke(CHAT, stop=[word]).content
    assert word not in cut and full.startswith(cut)
    streamed = "".join(str(c.content) for c in llm.stream(CHAT, stop=[word]))
    assert streamed.strip() == cut


def test_stop_filter_holds_back_a_possible_stop_prefix():
    f = StopFilter(["</s>"])
    assert f.feed("ab<") == "ab" and f.feed("/") == "" and f.feed("x") == "</x"
    assert f.feed("y</s>z") == "y" and f.stopped


def test_a_prompt_longer_than_the_context_is_refused_with_the_numbers():
    small = LlamaCppChatModel(n_ctx=64, max_new_tokens=8)
    with pytest.raises(LLMError, match=r"prompt has \d+ tokens .* context of 64 tokens"):
        small.invoke(CHAT)
    load_gguf.cache_clear()  # do not keep the small context around for other tests


def test_thread_count_defaults_to_half_the_cores_and_follows_the_serving_override(monkeypatch):
    from ragops.cpu import available_cores

    monkeypatch.delenv("RAGOPS_LLM_THREADS", raising=False)
    assert default_threads() == max(1, available_cores() // 2)
    assert batch_threads_default() == available_cores()
    monkeypatch.setenv("RAGOPS_LLM_THREADS", "3")
    assert default_threads() == 3 and batch_threads_default() == 3


def test_a_context_pool_answers_concurrently_and_greedy_answers_do_not_change():
    """n_parallel=2 (what evaluation uses on llama.cpp): two questions generate at once on two
    contexts of one GGUF, each on cores // 2 threads, and every answer is the one a single context gives."""
    import threading

    from ragops.cpu import available_cores

    questions = [[*CHAT[:1], HumanMessage(q)] for q in ("How long are raw samples kept?", "Name two colours.",
                                                          "What is 2 + 2?", "Say hello in French.")]
    single = get_chat_model(LLMConfig(max_new_tokens=12))
    expected = [single.invoke(q).content for q in questions]
    pooled = get_chat_model(LLMConfig(max_new_tokens=12))
    pooled.n_parallel = 2
    answers: dict[int, str] = {}
    active, peak, guard = [0], [0], threading.Lock()
    original = pooled._context

    def counting_context():
        cm = original()

        class Counted:
            def __enter__(self):
                loaded = cm.__enter__()
                with guard:
                    active[0] += 1
                    peak[0] = max(peak[0], active[0])
                return loaded

            def __exit__(self, *exc):
                with guard:
                    active[0] -= 1
                return cm.__exit__(*exc)

        return Counted()

    object.__setattr__(pooled, "_context", counting_context)
    threads = [threading.Thread(target=lambda i=i: answers.__setitem__(i, pooled.invoke(questions[i]).content))
               for i in range(len(questions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [answers[i] for i in range(len(questions))] == expected
    pool = pooled._pool()
    assert pool.size == 2 and pool._count <= 2 and peak[0] == 2  # two answers really generated at once
    assert pool.first.llama.context_params.n_threads == max(1, available_cores() // 2)


def test_the_model_file_is_resolved_once_per_model_not_per_request(monkeypatch):
    """A registry name (models:/rag_llm@candidate) resolves through the MLflow registry: once per model
    instance, not on every request (the answering path calls loaded() several times per request)."""
    import ragops.llm.llamacpp as llamacpp

    calls = []
    real = llamacpp.resolve_gguf_path

    def counting(name, gguf_type="f16"):
        calls.append(name)
        return real(name, gguf_type)

    monkeypatch.setattr(llamacpp, "resolve_gguf_path", counting)
    model = LlamaCppChatModel(max_new_tokens=4)
    for _ in range(3):
        assert model.invoke(CHAT).content
        model.prompt_tokens(CHAT)
    assert calls == [model.model_name]


@pytest.mark.parametrize("gguf_type", ["packaged", "q8_0"])
def test_every_gguf_type_answers_a_chain_sized_prompt(gguf_type):
    """Each ``llm_gguf_type`` loads and answers a prompt of the chain's size. Run in a child process:
    on a Xeon with AMX, llama.cpp's repacked AMX path crashed the whole process (SIGSEGV) on the
    quantized types, which no in-process assertion could report."""
    import subprocess
    import sys

    code = ("from langchain_core.messages import HumanMessage; from ragops.config import LLMConfig; "
            "from ragops.llm import get_chat_model; "
            f"m = get_chat_model(LLMConfig(gguf_type={gguf_type!r}, max_new_tokens=4)); "
            "r = m.invoke([HumanMessage('Context: ' + 'the collector listens on port 4817. ' * 80 + "
            "'Question: which port?')]); "
            "print(r.usage_metadata['input_tokens'], r.usage_metadata['output_tokens'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    prompt_tokens, answer_tokens = map(int, done.stdout.split()[-2:])
    assert prompt_tokens > 600 and 1 <= answer_tokens <= 4
