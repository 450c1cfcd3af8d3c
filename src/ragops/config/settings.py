"""Typed, serialisable settings built from a flat dict of bundle variables.

Every stage gets one small frozen config object. Its :func:`config_hash` goes into the ids of
what the stage produces (chunk ids, snapshot manifests), so a change of config is visible in
the data rather than silently mixed with older output.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENGINES = ("local", "spark")
CHUNK_STRATEGIES = ("token", "recursive", "markdown", "sentence")
SEARCH_MODES = ("vector", "keyword", "hybrid")


def config_hash(obj: Any, length: int = 12) -> str:
    """Stable short hash of a (dataclass) config: sorted-key JSON, sha256."""
    payload = dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class IngestConfig:
    """What counts as a loadable document, and how structured sources map to documents."""

    max_bytes: int = 20_000_000
    min_chars: int = 1
    # Structured sources (CSV / Parquet / Delta): which columns hold the id, title and text.
    id_column: str = "id"
    title_column: str = "title"
    text_column: str = "text"


@dataclass(frozen=True)
class ChunkingConfig:
    """Chunking strategy and its sizes. Sizes are in embedding-model tokens."""

    strategy: str = "recursive"
    # 200 leaves room for the title prefix under MiniLM's 256-wordpiece limit (chosen on SciFact train).
    chunk_size: int = 200
    chunk_overlap: int = 32
    # Prefix each chunk's *indexed* text with its document title (improves recall on short chunks).
    include_title: bool = True

    def __post_init__(self) -> None:
        if self.strategy not in CHUNK_STRATEGIES:
            raise ValueError(
                f"chunk_strategy={self.strategy!r} is not one of {', '.join(CHUNK_STRATEGIES)}"
            )
        if self.chunk_size < 16:
            raise ValueError(f"chunk_size={self.chunk_size} is too small; use at least 16 tokens")
        if not 0 <= self.chunk_overlap < self.chunk_size:
            raise ValueError(
                f"chunk_overlap={self.chunk_overlap} must be >= 0 and smaller than chunk_size={self.chunk_size}"
            )


@dataclass(frozen=True)
class EmbeddingConfig:
    """Which embedder to use. ``model`` is a name ('all-MiniLM-L6-v2'), a local path, or a remote model."""

    backend: str = "local"  # local | openai | databricks
    model: str = "all-MiniLM-L6-v2"
    batch_size: int = 32
    dtype: str = "float32"  # float32 | bfloat16 (local backend only)
    endpoint: str = ""  # base URL for openai, endpoint name for databricks
    normalize: bool = True


@dataclass(frozen=True)
class LLMConfig:
    """Which chat model answers, and how it generates."""

    backend: str = "local"  # local | openai | databricks
    model: str = "SmolLM2-135M-Instruct"
    endpoint: str = ""  # base URL for openai, serving endpoint name for databricks
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    #: >1 discourages repetition, but also penalises copying facts from the context: keep 1.0 for RAG
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        if self.backend not in ("local", "openai", "databricks"):
            raise ValueError(f"llm_backend={self.backend!r}: use local, openai or databricks")
        if self.max_new_tokens < 1:
            raise ValueError("llm_max_new_tokens must be at least 1")


@dataclass(frozen=True)
class IndexConfig:
    """Vector index type and search defaults."""

    vector_index: str = "flat"  # flat (exact) | hnsw
    hnsw_m: int = 32
    hnsw_ef_search: int = 128
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    stemmer: str = "english"  # '' to disable
    # Fusion constants chosen on the SciFact *train* split (BENCHMARKS.md); search-time only.
    rrf_k: int = 10
    hybrid_vector_weight: float = 1.5
    hybrid_keyword_weight: float = 1.0
    default_mode: str = "hybrid"
    default_k: int = 5
    keep_snapshots: int = 3


@dataclass(frozen=True)
class ChainConfig:
    """The RAG chain: how it retrieves, which prompt (registry name@alias) and which LLM."""

    search_mode: str = "hybrid"
    k: int = 4
    #: chunks less similar (cosine) to the question than this are not context; none left → "I don't know"
    min_similarity: float = 0.25
    prompt_name: str = "rag_answer"
    prompt_alias: str = "production"
    max_context_chars: int = 6000
    llm: LLMConfig = field(default_factory=LLMConfig)

    def __post_init__(self) -> None:
        if self.search_mode not in SEARCH_MODES:
            raise ValueError(f"chain_search_mode={self.search_mode!r} is not one of {', '.join(SEARCH_MODES)}")
        if self.k < 1:
            raise ValueError("chain_k must be at least 1")


@dataclass(frozen=True)
class EvaluationConfig:
    """The evaluate job: which eval set (and where to load it from), which gates, what to compute."""

    eval_set: str = "sample"
    #: registered (idempotently) as ``eval_set`` before evaluating; "" = use the table as it is
    source: str = "data/eval/questions.jsonl"
    gates: str = "data/eval/gates.yml"
    answers: bool = True
    harness: str = "mlflow"  # mlflow (mlflow.genai.evaluate) | direct (same scorers, in-process)
    limit: int = 0  # first N questions only (0 = all)
    ks: tuple[int, ...] = (5, 10)
    ndcg_k: int = 10
    #: LLM-as-judge metrics when set (local | openai | databricks); "" = code-based metrics only
    judge_backend: str = ""
    judge_model: str = ""
    judge_endpoint: str = ""

    def judge(self) -> LLMConfig | None:
        if not self.judge_backend:
            return None
        return LLMConfig(backend=self.judge_backend, model=self.judge_model or LLMConfig.model,
                         endpoint=self.judge_endpoint, max_new_tokens=128)


@dataclass(frozen=True)
class Settings:
    """Everything a job needs to know about one target."""

    target: str = "local"
    engine: str = "local"
    catalog: str = "main"
    schema: str = "ragops"
    root: Path = field(default_factory=lambda: Path(".ragops").resolve())
    source_path: str = "data/corpus"
    spark_remote: str = ""
    git_commit: str = ""
    ingest: IngestConfig = field(default_factory=IngestConfig)
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    chain: ChainConfig = field(default_factory=ChainConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    mlflow_tracking_uri: str = ""  # empty: sqlite under root; "databricks" on a workspace
    model_name: str = "rag_chain"
    experiment: str = "ragops"

    @property
    def llm(self) -> LLMConfig:
        return self.chain.llm

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine={self.engine!r} is not one of {', '.join(ENGINES)}")

    # --- locations -------------------------------------------------------------------------
    @property
    def lakehouse_root(self) -> Path:
        return self.root / "lakehouse"

    @property
    def index_root(self) -> Path:
        """Where index snapshots live (one folder per catalog.schema, so targets do not mix)."""
        return self.root / "index" / self.catalog / self.schema

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def artifact_root(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def registered_model_name(self) -> str:
        """``rag_chain`` in a local registry; ``<catalog>.<schema>.rag_chain`` in Unity Catalog."""
        if self.mlflow_tracking_uri.startswith("databricks") and "." not in self.model_name:
            return f"{self.catalog}.{self.schema}.{self.model_name}"
        return self.model_name

    def table_path(self, table: str) -> Path:
        """Local (delta-rs) location of a table."""
        return self.lakehouse_root / self.catalog / self.schema / table

    def table_name(self, table: str) -> str:
        """Three-level Unity Catalog / metastore name of a table."""
        return f"{self.catalog}.{self.schema}.{table}"

    def to_dict(self) -> dict[str, Any]:
        """Flat, JSON-friendly view (for notebooks, logs and MLflow params)."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))

    # --- construction ----------------------------------------------------------------------
    @classmethod
    def from_variables(cls, variables: Mapping[str, Any], base_dir: Path | None = None) -> Settings:
        """Build settings from flat bundle variables / job parameters (all values may be strings).

        Unknown keys are ignored so that one job-parameter dict can feed every task.
        Relative ``root`` and ``source_path`` resolve against ``base_dir`` (the bundle root).
        """
        v = {k: val for k, val in variables.items() if val is not None and val != ""}
        base = Path(base_dir) if base_dir else Path.cwd()

        def path_var(name: str, default: str) -> Path:
            p = Path(os.path.expanduser(str(v.get(name, default))))
            return (p if p.is_absolute() else base / p).resolve()

        ingest = IngestConfig(
            max_bytes=int(v.get("max_document_bytes", IngestConfig.max_bytes)),
            id_column=str(v.get("id_column", IngestConfig.id_column)),
            title_column=str(v.get("title_column", IngestConfig.title_column)),
            text_column=str(v.get("text_column", IngestConfig.text_column)),
        )
        chunking = ChunkingConfig(
            strategy=str(v.get("chunk_strategy", ChunkingConfig.strategy)),
            chunk_size=int(v.get("chunk_size", ChunkingConfig.chunk_size)),
            chunk_overlap=int(v.get("chunk_overlap", ChunkingConfig.chunk_overlap)),
            include_title=_as_bool(v.get("chunk_include_title", ChunkingConfig.include_title)),
        )
        embedding = EmbeddingConfig(
            backend=str(v.get("embedding_backend", EmbeddingConfig.backend)),
            model=str(v.get("embedding_model", EmbeddingConfig.model)),
            batch_size=int(v.get("embedding_batch_size", EmbeddingConfig.batch_size)),
            dtype=str(v.get("embedding_dtype", EmbeddingConfig.dtype)),
            endpoint=str(v.get("embedding_endpoint", EmbeddingConfig.endpoint)),
        )
        index = IndexConfig(
            vector_index=str(v.get("vector_index", IndexConfig.vector_index)),
            default_mode=str(v.get("search_mode", IndexConfig.default_mode)),
            rrf_k=int(v.get("rrf_k", IndexConfig.rrf_k)),
            hybrid_vector_weight=float(v.get("hybrid_vector_weight", IndexConfig.hybrid_vector_weight)),
            hybrid_keyword_weight=float(v.get("hybrid_keyword_weight", IndexConfig.hybrid_keyword_weight)),
        )
        llm = LLMConfig(
            backend=str(v.get("llm_backend", LLMConfig.backend)),
            model=str(v.get("llm_model", LLMConfig.model)),
            endpoint=str(v.get("llm_endpoint", LLMConfig.endpoint)),
            max_new_tokens=int(v.get("llm_max_new_tokens", LLMConfig.max_new_tokens)),
            temperature=float(v.get("llm_temperature", LLMConfig.temperature)),
            top_p=float(v.get("llm_top_p", LLMConfig.top_p)),
        )
        def file_var(name: str, default: str) -> str:
            value = str(v.get(name, default))
            if not value or ":" in value.split("/")[0]:  # "" or a spec such as beir:/path
                return value
            return str(path_var(name, default))

        evaluation = EvaluationConfig(
            eval_set=str(v.get("eval_set", EvaluationConfig.eval_set)),
            source=file_var("eval_source", EvaluationConfig.source),
            gates=file_var("gates", EvaluationConfig.gates),
            answers=_as_bool(v.get("eval_answers", EvaluationConfig.answers)),
            harness=str(v.get("eval_harness", EvaluationConfig.harness)),
            limit=int(v.get("eval_limit", EvaluationConfig.limit)),
            ks=tuple(int(k) for k in str(v.get("eval_ks", "5,10")).split(",") if k.strip()),
            ndcg_k=int(v.get("eval_ndcg_k", EvaluationConfig.ndcg_k)),
            judge_backend=str(v.get("judge_backend", "")),
            judge_model=str(v.get("judge_model", "")),
            judge_endpoint=str(v.get("judge_endpoint", "")),
        )
        source = str(v.get("source_path", cls.source_path))
        if "://" not in source and not source.startswith(("delta:", "table:")):
            source = str(path_var("source_path", cls.source_path))
        return cls(
            target=str(v.get("target", cls.target)),
            engine=str(v.get("engine", cls.engine)),
            catalog=str(v.get("catalog", cls.catalog)),
            schema=str(v.get("schema", cls.schema)),
            root=path_var("root", ".ragops"),
            source_path=source,
            spark_remote=str(v.get("spark_remote", "")),
            git_commit=str(v.get("git_commit", "")),
            ingest=ingest,
            chunking=chunking,
            embedding=embedding,
            index=index,
            chain=ChainConfig(
                search_mode=str(v.get("chain_search_mode", ChainConfig.search_mode)),
                k=int(v.get("chain_k", ChainConfig.k)),
                min_similarity=float(v.get("chain_min_similarity", ChainConfig.min_similarity)),
                prompt_name=str(v.get("prompt_name", ChainConfig.prompt_name)),
                prompt_alias=str(v.get("prompt_alias", ChainConfig.prompt_alias)),
                llm=llm,
            ),
            evaluation=evaluation,
            mlflow_tracking_uri=str(v.get("mlflow_tracking_uri", "")),
            model_name=str(v.get("model_name", cls.model_name)),
            experiment=str(v.get("experiment", cls.experiment)),
        )
