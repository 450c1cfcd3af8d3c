"""Register a fine-tuned LLM as the ``rag_llm`` pyfunc (models-from-code :mod:`ragops.finetune.llm_model`),
tag its lineage and give the new version an alias (``candidate`` by default).

The chain then answers with it through ``llm_model=models:/rag_llm/<version>`` (or ``@<alias>``):
:func:`ragops.weights.llm.resolve_registered_llm` downloads the version's ``merged`` artifact once,
and :func:`ragops.models.log.log_chain` packs the resolved weights into the chain it logs.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ragops.config import Settings
from ragops.models.log import PACKAGE_DIR, requirements
from ragops.tracking import configure_mlflow
from ragops.weights.llm import MERGED_ARTIFACT

log = logging.getLogger(__name__)

MODEL_CODE = Path(__file__).with_name("llm_model.py")
#: The name of the logged model inside its run (the registered name is ``settings.registered_llm_name``).
ARTIFACT_NAME = "rag_llm"
INPUT_EXAMPLE = {"messages": [{"role": "user", "content": "What is the default retention period?"}]}
#: What a serving environment must install: llama.cpp (default backend), torch + transformers (the
#: transformers backend, and the GGUF conversion on load), gguf, peft (adapters).
SERVING_PACKAGES = ["mlflow", "pandas", "numpy", "torch", "transformers", "safetensors", "gguf",
                    "llama-cpp-python", "peft", "langchain-core", "jinja2"]


@dataclass
class RegisteredLLM:
    name: str
    version: str
    uri: str  #: models:/<name>/<version>
    run_id: str
    alias: str | None
    lineage: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def signature():
    """A chat request (``messages``: a list of {role, content}) in, the answer text out."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, Object, Property, Schema

    message = Object([Property("role", "string"), Property("content", "string")])
    return ModelSignature(inputs=Schema([ColSpec(Array(message), "messages")]), outputs=Schema([ColSpec("string")]))


def _tag_value(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def model_config(settings: Settings) -> dict[str, Any]:
    """How the pyfunc generates: the settings' llm_* values (a remote backend falls back to llama.cpp)."""
    llm = settings.llm
    return {"backend": llm.backend if llm.backend in llm.LOCAL_BACKENDS else "local",
            "gguf_type": llm.gguf_type, "dtype": llm.dtype, "max_new_tokens": llm.max_new_tokens, "temperature": llm.temperature,
            "top_p": llm.top_p, "repetition_penalty": llm.repetition_penalty}


def register_llm(settings: Settings, merged_dir: Path, adapter_dir: Path | None, lineage: dict[str, Any],
                 alias: str | None = "candidate") -> RegisteredLLM:
    """Log ``merged_dir`` (and ``adapter_dir``) as the ``rag_llm`` pyfunc, register it under
    ``settings.registered_llm_name``, tag the version (and the run, as ``ragops.<key>``) with every
    ``lineage`` key and point ``alias`` at it.

    Logs inside the caller's active MLflow run if there is one, else in a run of its own in the
    settings' experiment.
    """
    import mlflow

    merged_dir = Path(merged_dir)
    if not (merged_dir / "config.json").exists():
        raise FileNotFoundError(f"{merged_dir} is not a transformers folder (no config.json)")
    artifacts = {MERGED_ARTIFACT: str(merged_dir)}
    if adapter_dir is not None:
        if not Path(adapter_dir).is_dir():
            raise FileNotFoundError(f"adapter folder {adapter_dir} does not exist")
        artifacts["adapter"] = str(adapter_dir)
    active = mlflow.active_run()
    client = configure_mlflow(settings, experiment=active is None)
    name = settings.registered_llm_name
    tags = {str(k): _tag_value(v) for k, v in lineage.items() if v is not None}
    run = active or mlflow.start_run(run_name=f"rag_llm {lineage.get('method', '')}".strip())
    try:
        mlflow.set_tags({f"ragops.{k}": v for k, v in tags.items()})
        info = mlflow.pyfunc.log_model(
            name=ARTIFACT_NAME,
            python_model=str(MODEL_CODE),
            artifacts=artifacts,
            code_paths=[str(PACKAGE_DIR)],
            model_config=model_config(settings),
            signature=signature(),
            input_example=INPUT_EXAMPLE,
            pip_requirements=requirements(SERVING_PACKAGES),
            registered_model_name=name,
            metadata={"ragops_lineage": tags},
        )
    finally:
        if active is None:
            mlflow.end_run()
    version = str(info.registered_model_version)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    if alias:
        client.set_registered_model_alias(name, alias, version)
    log.info("registered LLM %s version %s%s", name, version, f" (@{alias})" if alias else "")
    return RegisteredLLM(name, version, f"models:/{name}/{version}", run.info.run_id, alias, dict(lineage))
