"""Rebuild a :class:`RagChain` from a logged model's artifacts (no lakehouse, no prompt registry).

Two callers: the pyfunc's ``load_context`` (MLflow hands it the artifact paths) and ``ragops ask``'s
warm path, which reads a downloaded model folder directly (:func:`chain_from_model_dir`) and so
skips ``mlflow.pyfunc.load_model``'s environment checks. Both build the chain here, so they answer
alike. The embedding model is built on the first query that needs a vector, not here.

A chain on a registered fine-tune (``llm_model=models:/rag_llm/…``) carries its weights as the
optional ``llm_weights`` artifact: the chat model runs on that path, while the chain config, the
lineage and the ``llm`` identity keep the registered URI. No registry is asked at load time.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

from ragops.chain.prompts import ResolvedPrompt
from ragops.chain.rag import RagChain
from ragops.config import ChainConfig, EmbeddingConfig, IndexConfig, LLMConfig
from ragops.embedding import get_embedder
from ragops.index.search import Searcher
from ragops.index.snapshot import SnapshotStore
from ragops.llm import get_chat_model

#: The pyfunc's artifact names (models/log.py logs them under these keys), required ones first.
ARTIFACTS = ("chain_config", "index_snapshot")
#: Logged only for a chain on a registered LLM: the weights its chat model runs (GGUF or a folder).
OPTIONAL_ARTIFACTS = ("llm_weights",)


def chain_from_artifacts(config_path: str | Path, snapshot_path: str | Path,
                         llm_weights: str | Path | None = None) -> RagChain:
    cfg = json.loads(Path(config_path).read_text())
    llm = LLMConfig(**cfg["chain"]["llm"])
    if cfg.get("llm_weights") and llm_weights is None:
        from ragops.errors import RagopsError

        raise RagopsError(f"this chain was logged with its LLM's weights ({cfg['llm_weights']}, for {llm.model}) "
                          "but no llm_weights artifact was given to load them from")
    chain_cfg = ChainConfig(**{**cfg["chain"], "llm": llm})
    snapshot_path = Path(snapshot_path)
    index_config = IndexConfig(**cfg["index"])
    snapshot = SnapshotStore(snapshot_path.parent.parent).load(snapshot_path.name, index_config, path=snapshot_path)
    # get_embedder is cached per config: one embedder per process, built when a query first needs it
    embedder = functools.partial(get_embedder, EmbeddingConfig(**cfg["embedding"]))
    searcher = Searcher.for_config(snapshot, embedder, index_config)
    prompt = ResolvedPrompt(**cfg["prompt"])
    # the weights travel with the chain; the config (and so the identity) keeps the registered URI
    chat = get_chat_model(llm if llm_weights is None else dataclasses.replace(llm, model=str(llm_weights)))
    return RagChain(searcher, chat, prompt, chain_cfg, lineage=cfg.get("lineage"))


def artifact_paths(model_dir: str | Path) -> dict[str, Path]:
    """The pyfunc's artifacts inside a downloaded model folder, as its ``MLmodel`` file lists them."""
    import yaml

    model_dir = Path(model_dir)
    meta = yaml.safe_load((model_dir / "MLmodel").read_text())
    listed = meta["flavors"]["python_function"].get("artifacts", {})
    missing = [name for name in ARTIFACTS if name not in listed]
    if missing:
        from ragops.errors import RagopsError

        raise RagopsError(f"{model_dir} is not a ragops chain: its MLmodel lists no {', '.join(missing)} artifact")
    return {name: model_dir / listed[name]["path"] for name in ARTIFACTS + OPTIONAL_ARTIFACTS if name in listed}


def chain_from_model_dir(model_dir: str | Path) -> RagChain:
    """The chain of a logged model folder (what ``mlflow.artifacts.download_artifacts`` gives)."""
    paths = artifact_paths(model_dir)
    return chain_from_artifacts(paths["chain_config"], paths["index_snapshot"], paths.get("llm_weights"))
