"""register_llm → a real MLflow sqlite registry → models:/rag_llm/<version> and @<alias> resolved to
weights that load (transformers folder, GGUF on llama.cpp), and the rag_llm pyfunc answering chats.

The "fine-tune" is a tiny random LlamaForCausalLM with SmolLM2's vocabulary and tokenizer: real
weights in the real layout, small enough to convert and run in a second."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pytest

pytest.importorskip("llama_cpp")

from ragops.config import Settings  # noqa: E402
from ragops.finetune.register import RegisteredLLM, register_llm  # noqa: E402
from ragops.tracking import configure_mlflow  # noqa: E402
from ragops.weights import llm as weights_llm  # noqa: E402
from ragops.weights.llm import (  # noqa: E402
    DEFAULT_LLM,
    LLMNotFoundError,
    resolve_gguf_path,
    resolve_llm_path,
    resolve_registered_llm,
)
from tests.weights.test_gguf import tiny_llama  # noqa: E402

LINEAGE = {"base_model": DEFAULT_LLM, "method": "sft", "build_id": "b-0001", "finetune_sft_version": 3,
           "finetune_dpo_version": None, "config_hash": "0123456789ab", "git_commit": "abc1234", "eval_loss": 1.25}


def save_tiny_merged(folder: Path, adapter: Path | None = None) -> Path:
    """A tiny random Llama saved like a merged fine-tune (with SmolLM2's tokenizer); and, if asked, a
    real LoRA adapter of it."""
    from transformers import AutoTokenizer

    model = tiny_llama()
    model.save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(resolve_llm_path(DEFAULT_LLM))).save_pretrained(str(folder))
    if adapter is not None:
        from peft import LoraConfig, get_peft_model

        get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"])).save_pretrained(
            str(adapter))
    return folder


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    root = tmp_path_factory.mktemp("register")
    merged = save_tiny_merged(root / "merged", adapter=root / "adapter")
    settings = Settings.from_variables({"root": str(root / "state"), "llm_max_new_tokens": "8"})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAGOPS_MODEL_CACHE", str(root / "cache"))  # downloads and conversions of this module only
        reg = register_llm(settings, merged, root / "adapter", LINEAGE)
        yield settings, reg, root


def test_register_tags_the_version_and_the_run_and_sets_the_alias(registered):
    settings, reg, _ = registered
    assert isinstance(reg, RegisteredLLM)
    assert (reg.name, reg.version, reg.uri, reg.alias) == ("rag_llm", "1", "models:/rag_llm/1", "candidate")
    client = configure_mlflow(settings)
    mv = client.get_model_version("rag_llm", "1")
    assert mv.tags["base_model"] == DEFAULT_LLM and mv.tags["finetune_sft_version"] == "3"
    assert mv.tags["eval_loss"] == "1.25" and mv.tags["build_id"] == "b-0001"
    assert "finetune_dpo_version" not in mv.tags  # None: not given
    assert str(client.get_model_version_by_alias("rag_llm", "candidate").version) == "1"
    run = client.get_run(reg.run_id)
    assert run.data.tags["ragops.method"] == "sft" and run.data.tags["ragops.git_commit"] == "abc1234"
    assert reg.to_dict()["lineage"]["base_model"] == DEFAULT_LLM


def test_register_inside_the_callers_run(registered, tmp_path):
    settings, _, root = registered
    configure_mlflow(settings)
    with mlflow.start_run() as run:
        reg = register_llm(settings, root / "merged", None, {"method": "dpo"}, alias=None)
    assert reg.run_id == run.info.run_id and reg.version == "2" and reg.alias is None
    assert mlflow.get_run(run.info.run_id).data.tags["ragops.method"] == "dpo"


def test_version_and_alias_resolve_to_a_folder_that_loads_downloaded_once(registered):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    settings, reg, root = registered
    configure_mlflow(settings)
    by_version = resolve_llm_path("models:/rag_llm/1")
    assert by_version == root / "cache" / "registry" / f"rag_llm-v1-{reg.run_id[:8]}"
    assert resolve_llm_path("models:/rag_llm@candidate") == by_version
    model = AutoModelForCausalLM.from_pretrained(str(by_version))
    assert model.config.hidden_size == 64 and AutoTokenizer.from_pretrained(str(by_version)).vocab_size == 49152
    mtime = (by_version / "model.safetensors").stat().st_mtime_ns
    weights_llm._VERSIONS.clear()  # a new process: only the disk cache is left
    again = resolve_registered_llm("models:/rag_llm@candidate")
    assert again.path == by_version and (by_version / "model.safetensors").stat().st_mtime_ns == mtime
    assert (again.version, again.uri, again.requested) == ("1", "models:/rag_llm/1", "models:/rag_llm@candidate")
    assert again.tags["method"] == "sft"
    assert not [p for p in by_version.parent.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_gguf_of_a_registered_version_runs_on_llama_cpp(registered):
    from ragops.llm.llamacpp import open_llama

    settings, _, root = registered
    configure_mlflow(settings)
    path = resolve_gguf_path("models:/rag_llm@candidate")
    assert path.suffix == ".gguf" and path.parent == root / "cache"
    assert resolve_gguf_path("models:/rag_llm/1") == path
    llama = open_llama(str(path), n_ctx=64, n_threads=1, verbose=False)
    assert llama.n_embd() == 64 and "im_start" in llama.metadata["tokenizer.chat_template"]


def test_a_registered_version_answers_on_openvino_as_on_transformers(registered):
    from langchain_core.messages import HumanMessage

    from ragops.config import LLMConfig
    from ragops.llm import get_chat_model

    settings, _, root = registered
    configure_mlflow(settings)
    ask = [HumanMessage("What is the default retention period?")]
    ov = get_chat_model(LLMConfig(backend="openvino", dtype="float32", model="models:/rag_llm@candidate",
                                  max_new_tokens=6))
    hf = get_chat_model(LLMConfig(backend="transformers", model="models:/rag_llm@candidate", max_new_tokens=6))
    assert ov.invoke(ask).content == hf.invoke(ask).content
    assert ov._folder and Path(ov._folder).parent == root / "cache"  # exported into the model cache, once
    model = mlflow.pyfunc.load_model("models:/rag_llm/1", model_config={"backend": "openvino", "dtype": "float32"})
    assert type(model.unwrap_python_model().llm).__name__ == "OpenVinoChatModel"
    assert isinstance(model.predict({"messages": [{"role": "user", "content": "hi"}]}), str)


def test_missing_versions_and_aliases_are_clear_errors(registered):
    settings, _, _ = registered
    configure_mlflow(settings)
    with pytest.raises(LLMNotFoundError, match=r"'models:/rag_llm/9' names no registered LLM version.*versions 1, 2"):
        resolve_llm_path("models:/rag_llm/9")
    with pytest.raises(LLMNotFoundError, match=r"models:/rag_llm@champion.*aliases: @candidate -> 1"):
        resolve_gguf_path("models:/rag_llm@champion")
    with pytest.raises(LLMNotFoundError, match="no model 'nope' is registered"):
        resolve_llm_path("models:/nope/1")
    with pytest.raises(LLMNotFoundError, match="use models:/<name>/<version> or models:/<name>@<alias>"):
        resolve_llm_path("models:/rag_llm")


def test_the_rag_llm_pyfunc_answers_chat_messages(registered):
    settings, _, _ = registered
    configure_mlflow(settings)
    model = mlflow.pyfunc.load_model("models:/rag_llm@candidate")
    out = model.predict({"messages": [{"role": "user", "content": "What is the default retention period?"}]})
    assert isinstance(out, str)  # a random tiny model: any text
    llm = model.unwrap_python_model().llm
    assert type(llm).__name__ == "LlamaCppChatModel" and llm.model_name.endswith("merged")  # llama.cpp by default
    import pandas as pd

    batch = model.predict(pd.DataFrame({"messages": [[{"role": "user", "content": "hi"}],
                                                     [{"role": "user", "content": "hello"}]]}))
    assert isinstance(batch, list) and len(batch) == 2 and all(isinstance(t, str) for t in batch)
    assert model.metadata.metadata["ragops_lineage"]["base_model"] == DEFAULT_LLM


def test_register_refuses_a_folder_that_is_not_a_model(registered, tmp_path):
    settings, _, _ = registered
    with pytest.raises(FileNotFoundError, match="no config.json"):
        register_llm(settings, tmp_path, None, {})


def test_resolving_needs_no_source_folder(registered, tmp_path):
    """The registry holds its own copy: the trainer's output folder may be gone."""
    settings, _, root = registered
    configure_mlflow(settings)
    moved = shutil.move(str(root / "merged"), str(tmp_path / "gone"))
    try:
        weights_llm._VERSIONS.clear()
        shutil.rmtree(root / "cache" / "registry")
        assert (resolve_llm_path("models:/rag_llm/2") / "config.json").exists()
    finally:
        shutil.move(moved, str(root / "merged"))
