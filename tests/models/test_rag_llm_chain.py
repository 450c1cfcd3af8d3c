"""A chain on a registered fine-tune: ``llm_model=models:/rag_llm@candidate`` → log_chain pins the
version, packs the weights as ``llm_weights``, and the logged chain answers on them through llama.cpp
(or transformers) with the registry and its artifact store gone."""

from __future__ import annotations

import shutil

import mlflow
import pytest
import yaml

pytest.importorskip("llama_cpp")

from ragops.config import LLMConfig, Settings  # noqa: E402
from ragops.finetune.register import register_llm  # noqa: E402
from ragops.llm import get_chat_model  # noqa: E402
from ragops.models.loading import chain_from_model_dir  # noqa: E402
from ragops.models.log import log_chain  # noqa: E402
from ragops.tracking import configure_mlflow  # noqa: E402
from ragops.weights import llm as weights_llm  # noqa: E402
from ragops.weights.llm import DEFAULT_LLM, resolve_gguf_path  # noqa: E402
from tests.conftest import copy_corpus, run_pipeline  # noqa: E402
from tests.finetune.test_register import LINEAGE, save_tiny_merged  # noqa: E402

pytestmark = pytest.mark.slow

QUESTION = "What is the default retention period?"


@pytest.fixture(scope="module")
def tuned_chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("rag_llm_chain")
    merged = save_tiny_merged(root / "merged")
    packaged_gguf = resolve_gguf_path(DEFAULT_LLM)  # the packaged model's F16 weights (the user's cache)
    variables = {"root": str(root / "state"), "source_path": str(copy_corpus(root / "corpus")),
                 "llm_max_new_tokens": "8", "chain_search_mode": "keyword"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAGOPS_MODEL_CACHE", str(root / "cache"))  # this module's downloads and conversions
        base = Settings.from_variables(variables)
        run_pipeline(base)
        reg = register_llm(base, merged, None, LINEAGE)  # version 1, @candidate
        settings = Settings.from_variables({**variables, "llm_model": "models:/rag_llm@candidate"})
        logged = log_chain(settings)
        yield settings, reg, logged, root, packaged_gguf


def _artifacts(model_dir):
    return yaml.safe_load((model_dir / "MLmodel").read_text())["flavors"]["python_function"]["artifacts"]


def test_log_chain_pins_the_alias_and_records_the_llms_lineage(tuned_chain):
    settings, reg, logged, _, _ = tuned_chain
    lineage = logged.lineage
    assert lineage["llm_model_uri"] == "models:/rag_llm/1" and lineage["llm_model_version"] == "1"
    assert lineage["llm_model_requested"] == "models:/rag_llm@candidate" and lineage["llm_run_id"] == reg.run_id
    assert lineage["llm"] == "local[llama.cpp/gguf-f16]:models:/rag_llm/1"  # the version, not the alias
    assert lineage["llm_base_model"] == DEFAULT_LLM and lineage["llm_method"] == "sft"
    assert lineage["llm_finetune_sft_version"] == "3" and lineage["llm_git_commit"] == "abc1234"
    client = configure_mlflow(settings)
    mv = client.get_model_version(logged.model_name, logged.version)
    assert mv.tags["llm_model_uri"] == "models:/rag_llm/1" and mv.tags["llm"] == lineage["llm"]


def test_the_chain_answers_on_the_tuned_weights_with_the_registry_gone(tuned_chain, tmp_path):
    settings, _, logged, root, packaged_gguf = tuned_chain
    configure_mlflow(settings)
    model_dir = tmp_path / "chain"
    model_dir.mkdir()
    mlflow.artifacts.download_artifacts(artifact_uri=logged.model_uri, dst_path=str(model_dir))
    artifacts = _artifacts(model_dir)
    assert set(artifacts) == {"chain_config", "index_snapshot", "llm_weights"}
    weights = model_dir / artifacts["llm_weights"]["path"]
    assert weights.is_file() and weights.suffix == ".gguf" and weights.name.startswith("rag_llm-v1-")

    # the registry, its artifact store and the model cache are gone: the chain has what it needs
    shutil.move(str(settings.artifact_root), str(tmp_path / "mlartifacts-moved"))
    shutil.rmtree(root / "cache")
    weights_llm._VERSIONS.clear()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'empty.db'}")
    mlflow.set_registry_uri(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        model = mlflow.pyfunc.load_model(str(model_dir))
        chain = model.unwrap_python_model().chain
        assert type(chain.llm).__name__ == "LlamaCppChatModel" and chain.llm.model_name == str(weights)
        out = model.predict({"messages": [{"role": "user", "content": QUESTION}]})
    finally:
        shutil.move(str(tmp_path / "mlartifacts-moved"), str(settings.artifact_root))
        configure_mlflow(settings)
    assert "guides/retention.md" in [s["doc_id"] for s in out["sources"]]  # retrieval ran: the LLM answered
    assert out["lineage"]["llm"] == "local[llama.cpp/gguf-f16]:models:/rag_llm/1"
    assert out["lineage"]["llm_model_version"] == "1"
    # the packaged SmolLM2 on the same prompt answers otherwise (the tuned model is random)
    chain.llm = get_chat_model(LLMConfig(model=str(packaged_gguf), max_new_tokens=8))
    assert chain.invoke(QUESTION)["answer"] != out["answer"]


def test_a_transformers_chain_packs_the_merged_folder(tuned_chain, tmp_path):
    settings, _, _, _, _ = tuned_chain
    import dataclasses

    llm = dataclasses.replace(settings.llm, backend="transformers", model="models:/rag_llm/1")
    logged = log_chain(dataclasses.replace(settings, chain=dataclasses.replace(settings.chain, llm=llm)))
    assert logged.lineage["llm"] == "transformers[transformers/safetensors]:models:/rag_llm/1"
    configure_mlflow(settings)
    model_dir = tmp_path / "chain"
    model_dir.mkdir()
    mlflow.artifacts.download_artifacts(artifact_uri=logged.model_uri, dst_path=str(model_dir))
    weights = model_dir / _artifacts(model_dir)["llm_weights"]["path"]
    assert (weights / "config.json").exists() and (weights / "model.safetensors").exists()
    chain = chain_from_model_dir(model_dir)  # `ragops ask`'s warm path: the same loader
    assert type(chain.llm).__name__ == "LocalChatModel" and chain.llm.model_name == str(weights)
    assert isinstance(chain.invoke(QUESTION)["answer"], str)
