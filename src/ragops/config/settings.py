"""Typed, serialisable settings, each declared once on its field.

Every stage gets one small frozen config object. Its :func:`config_hash` goes into the ids of
what the stage produces (chunk ids, snapshot manifests), so a change of config is visible in
the data rather than silently mixed with older output.

One declaration per setting
---------------------------
A setting is a field declared with :func:`setting`: its type annotation, its default, its bundle
variable name (``var``) and its help text live on that one line. Everything else is derived from
it: :meth:`Settings.from_variables` (parsing ``--var`` / job parameters, coercing by the field's
type), :func:`list_settings` (what ``ragops bundle validate`` compares with the ``variables:`` of
``databricks.yml``, and what docs print), and the bundle variables' descriptions.

Variable names follow one rule: **the section's prefix + the field name**, without doubling a
prefix the field already has. The prefixes are ``chunk_`` (ChunkingConfig), ``embedding_``,
``llm_``, ``chain_``, ``eval_``, ``finetune_`` and ``monitor_``; ``Settings``, ``IngestConfig`` and ``IndexConfig`` fields have
names that are specific on their own (``catalog``, ``id_column``, ``hnsw_m``, ``rrf_k``) and no
prefix. Five names predate the rule and are kept because users pass them (``--var ...``):
``max_document_bytes`` / ``min_document_chars`` (ingest.max_bytes / min_chars), ``search_mode`` /
``search_k`` (index.default_mode / default_k), ``prompt_name`` / ``prompt_alias`` (chain.*), and
``gates`` / ``judge_*`` (evaluation.*); ``max_steps`` (finetune.max_steps) is the name the fine-tune
job's users pass. ``target`` and ``git_commit`` are settings the bundle
supplies (``${bundle.target}``, ``${bundle.git.commit}``), not variables.

Parsing rules (:meth:`Settings.from_variables`): unknown keys are ignored, so one dict can feed
every task; ``None`` or ``""`` means "the default"; ``bool`` accepts true/false/1/0/yes/no/on/off,
``tuple[int, ...]`` a comma list ("5,10"); a bad value raises :class:`SettingsError` naming the
variable, the value and the expected type. Fields of kind ``path`` resolve against ``base_dir``
(the bundle root); kind ``location`` resolves the same way unless the value is a spec rather than
a path (``delta:/x``, ``table:c.s.t``, ``beir:/folder``, ``s3://bucket``), and ``none`` sets it to
nothing (``--var eval_source=none``: score the eval set as the table has it), since ``""`` means
"the default".
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragops.errors import RagopsError

ENGINES = ("local", "spark")
CHUNK_STRATEGIES = ("token", "recursive", "markdown", "sentence")
SEARCH_MODES = ("vector", "keyword", "hybrid")
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}
#: The value that sets a ``location`` setting to nothing (``--var eval_source=none``: use the table as is).
NO_LOCATION = "none"


class SettingsError(RagopsError, ValueError):
    """A setting with a value it cannot take; names the variable, so the message says what to fix."""

    def __init__(self, message: str, variable: str = "", value: Any = None) -> None:
        super().__init__(message)
        self.variable, self.value = variable, value


def setting(default: Any = dataclasses.MISSING, *, var: str, help: str,  # noqa: A002 - the field's help text
            factory: Callable[[], Any] | None = None, bundle_default: Any = None, kind: str = "",
            from_bundle: str = "") -> Any:
    """A config field that is also a setting: ``var`` is its bundle variable / job parameter name.

    ``factory`` is a ``default_factory``; ``bundle_default`` is then the default as written in
    ``databricks.yml`` (e.g. ``.ragops`` for a root that resolves at run time). ``kind`` is
    ``path`` or ``location`` (see the module docstring). ``from_bundle`` marks a setting the bundle
    supplies (``${bundle.target}``) rather than a variable. Metadata does not enter
    :func:`dataclasses.asdict`, so declaring a setting does not change :func:`config_hash`.
    """
    meta = {"var": var, "help": help, "kind": kind, "from_bundle": from_bundle,
            "bundle_default": default if factory is None else bundle_default}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def config_hash(obj: Any, length: int = 12) -> str:
    """Stable short hash of a (dataclass) config: sorted-key JSON, sha256."""
    payload = dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@dataclass(frozen=True)
class IngestConfig:
    """What counts as a loadable document, and how structured sources map to documents."""

    max_bytes: int = setting(20_000_000, var="max_document_bytes",
                             help="Larger files are rejected (reason too_large).")
    min_chars: int = setting(1, var="min_document_chars",
                             help="Documents with less text are rejected (reason too_short).")
    # Structured sources (CSV / Parquet / Delta): which columns hold the id, title and text.
    id_column: str = setting("id", var="id_column",
                             help="Id column of structured sources (CSV, Parquet, Delta, JSON records).")
    title_column: str = setting("title", var="title_column", help="Title column of structured sources.")
    text_column: str = setting("text", var="text_column", help="Text column of structured sources.")


@dataclass(frozen=True)
class ChunkingConfig:
    """Chunking strategy and its sizes. Sizes are in embedding-model tokens."""

    strategy: str = setting("recursive", var="chunk_strategy", help="token | recursive | markdown | sentence")
    # 200 leaves room for the title prefix under MiniLM's 256-wordpiece limit (chosen on SciFact train).
    chunk_size: int = setting(200, var="chunk_size",
                              help="Chunk size in embedding-model tokens (200 + title stays under MiniLM's 256 limit).")
    chunk_overlap: int = setting(32, var="chunk_overlap", help="Tokens shared by neighbouring chunks.")
    include_title: bool = setting(True, var="chunk_include_title",
                                  help="Prefix each chunk's embedded/indexed text with its document title and section.")

    def __post_init__(self) -> None:
        if self.strategy not in CHUNK_STRATEGIES:
            raise SettingsError(
                f"chunk_strategy={self.strategy!r} is not one of {', '.join(CHUNK_STRATEGIES)}", "chunk_strategy"
            )
        if self.chunk_size < 16:
            raise SettingsError(f"chunk_size={self.chunk_size} is too small; use at least 16 tokens", "chunk_size")
        if not 0 <= self.chunk_overlap < self.chunk_size:
            raise SettingsError(
                f"chunk_overlap={self.chunk_overlap} must be >= 0 and smaller than chunk_size={self.chunk_size}",
                "chunk_overlap",
            )


@dataclass(frozen=True)
class EmbeddingConfig:
    """Which embedder to use. ``model`` is a name ('all-MiniLM-L6-v2'), a local path, or a remote model."""

    backend: str = setting("local", var="embedding_backend", help="local | openai | databricks")
    model: str = setting("all-MiniLM-L6-v2", var="embedding_model",
                         help="Embedding model: a name, a local path, or the remote model's name.")
    batch_size: int = setting(32, var="embedding_batch_size", help="Texts embedded per batch.")
    dtype: str = setting("float32", var="embedding_dtype",
                         help="float32 | bfloat16 (local backend, runtimes openvino and torch). bfloat16 on "
                              "openvino needs a CPU with AVX512-BF16 or AMX and is ~2.5x its fp32 there.")
    endpoint: str = setting("", var="embedding_endpoint",
                            help="Base URL (openai) or serving endpoint name (databricks) for remote embedders.")
    runtime: str = setting(
        "openvino", var="embedding_runtime",
        help="Local backend: openvino (the model exported once to ONNX into the model cache, run by OpenVINO; "
             "no torch when querying) | onnx (the same file on ONNX Runtime) | torch (sentence-transformers) | "
             "onnx-int8. At float32 all give the same vectors; int8 and bfloat16 are recorded with the vectors "
             "(all-MiniLM-L6-v2@onnx-int8, @openvino-bf16, @bf16): changing to them re-embeds.")

    DTYPES: typing.ClassVar[tuple[str, ...]] = ("float32", "bfloat16")
    #: openvino = OpenVINO (ragops.embedding.openvino_rt); onnx / onnx-int8 = ONNX Runtime
    #: (ragops.embedding.onnxrt); torch = sentence-transformers. All but torch run the same exported file.
    RUNTIMES: typing.ClassVar[tuple[str, ...]] = ("openvino", "onnx", "torch", "onnx-int8")
    #: the runtimes that compute at embedding_dtype=bfloat16
    BF16_RUNTIMES: typing.ClassVar[tuple[str, ...]] = ("openvino", "torch")

    def __post_init__(self) -> None:
        if self.dtype not in self.DTYPES:
            raise SettingsError(f"embedding_dtype={self.dtype!r}: use {' or '.join(self.DTYPES)}",
                                "embedding_dtype", self.dtype)
        if self.runtime not in self.RUNTIMES:
            raise SettingsError(f"embedding_runtime={self.runtime!r}: use {', '.join(self.RUNTIMES)}",
                                "embedding_runtime", self.runtime)
        if self.runtime not in self.BF16_RUNTIMES and self.dtype != "float32":
            raise SettingsError(f"embedding_dtype={self.dtype!r} needs embedding_runtime=openvino or torch "
                                f"(the {self.runtime} runtime is float32 or int8): pass --var "
                                "embedding_runtime=openvino too", "embedding_dtype", self.dtype)


@dataclass(frozen=True)
class LLMConfig:
    """Which chat model answers, and how it generates."""

    backend: str = setting(
        "local", var="llm_backend",
        help="Chat model backend: local (llama.cpp on GGUF weights) | openvino (the model exported once to "
             "OpenVINO; fastest prompt evaluation on CPUs with AMX/AVX512-BF16) | transformers (torch, what "
             "fine-tuning trains) | openai | databricks")
    model: str = setting("SmolLM2-135M-Instruct", var="llm_model", help="Chat model name or local path.")
    gguf_type: str = setting(
        "f16", var="llm_gguf_type",
        help="Weights llama.cpp runs (llm_backend=local): f16 (the model converted once to F16: the transformers "
             "backend's numbers, 2x faster prefill than Q4_1) | q8_0 | packaged (as shipped: Q4_1). A .gguf path in "
             "llm_model runs as it is.")
    dtype: str = setting(
        "bfloat16", var="llm_dtype",
        help="Precision of llm_backend=openvino: bfloat16 (needs AVX512-BF16 or AMX; ~2.5x faster prompts than "
             "transformers, some answers differ) | float32 (transformers' answers, at its speed).")
    endpoint: str = setting("", var="llm_endpoint",
                            help="Base URL (openai) or serving endpoint name (databricks) of a hosted chat model.")
    max_new_tokens: int = setting(256, var="llm_max_new_tokens", help="Answer length cap in tokens.")
    temperature: float = setting(0.0, var="llm_temperature", help="Sampling temperature (0 = greedy).")
    top_p: float = setting(1.0, var="llm_top_p", help="Nucleus sampling probability mass.")
    repetition_penalty: float = setting(
        1.0, var="llm_repetition_penalty",
        help=">1 discourages repetition, but also penalises copying facts from the context: keep 1.0 for RAG.")

    #: local = llama.cpp (GGUF), openvino = OpenVINO (exported), transformers = torch (safetensors);
    #: see ragops.llm.get_chat_model.
    BACKENDS: typing.ClassVar[tuple[str, ...]] = ("local", "openvino", "transformers", "openai", "databricks")
    #: the backends that run on this machine, from weights in the model cache or the registry
    LOCAL_BACKENDS: typing.ClassVar[tuple[str, ...]] = ("local", "openvino", "transformers")
    DTYPES: typing.ClassVar[tuple[str, ...]] = ("bfloat16", "float32")
    GGUF_TYPES: typing.ClassVar[tuple[str, ...]] = ("f16", "q8_0", "packaged")

    def __post_init__(self) -> None:
        if self.backend not in self.BACKENDS:
            raise SettingsError(f"llm_backend={self.backend!r}: use {', '.join(self.BACKENDS)}", "llm_backend")
        if self.gguf_type not in self.GGUF_TYPES:
            raise SettingsError(f"llm_gguf_type={self.gguf_type!r}: use {', '.join(self.GGUF_TYPES)}", "llm_gguf_type")
        if self.dtype not in self.DTYPES:
            raise SettingsError(f"llm_dtype={self.dtype!r}: use {', '.join(self.DTYPES)}", "llm_dtype")
        if self.max_new_tokens < 1:
            raise SettingsError("llm_max_new_tokens must be at least 1", "llm_max_new_tokens")


@dataclass(frozen=True)
class IndexConfig:
    """Vector index type and search defaults."""

    vector_index: str = setting("flat", var="vector_index", help="flat (exact) | hnsw")
    hnsw_m: int = setting(32, var="hnsw_m", help="HNSW graph degree (vector_index=hnsw).")
    hnsw_ef_search: int = setting(128, var="hnsw_ef_search", help="HNSW search breadth (vector_index=hnsw).")
    bm25_k1: float = setting(1.2, var="bm25_k1", help="BM25 term-frequency saturation.")
    bm25_b: float = setting(0.75, var="bm25_b", help="BM25 document-length normalisation.")
    stemmer: str = setting("english", var="stemmer", help="Keyword-index stemmer language; empty disables stemming.")
    # Fusion constants chosen on the SciFact *train* split (BENCHMARKS.md); search-time only.
    rrf_k: int = setting(10, var="rrf_k", help="Reciprocal rank fusion constant of hybrid search.")
    hybrid_vector_weight: float = setting(1.5, var="hybrid_vector_weight",
                                          help="Weight of the vector ranking in hybrid fusion.")
    hybrid_keyword_weight: float = setting(1.0, var="hybrid_keyword_weight",
                                           help="Weight of the keyword ranking in hybrid fusion.")
    default_mode: str = setting("hybrid", var="search_mode", help="Default search mode: vector | keyword | hybrid")
    default_k: int = setting(5, var="search_k", help="Default number of results of `ragops search` (--k overrides).")
    keep_snapshots: int = setting(3, var="keep_snapshots", help="Index snapshots kept per catalog.schema.")


@dataclass(frozen=True)
class ChainConfig:
    """The RAG chain: how it retrieves, which prompt (registry name@alias) and which LLM."""

    search_mode: str = setting("hybrid", var="chain_search_mode",
                               help="How the chain retrieves: vector | keyword | hybrid")
    k: int = setting(4, var="chain_k", help="Chunks retrieved as context per question.")
    min_similarity: float = setting(
        0.25, var="chain_min_similarity",
        help="Chunks less similar (cosine) to the question are not context; none left: \"I don't know\".")
    prompt_name: str = setting("rag_answer", var="prompt_name", help="Prompt registry name of the answer prompt.")
    prompt_alias: str = setting("production", var="prompt_alias", help="Prompt registry alias to load.")
    max_context_chars: int = setting(6000, var="chain_max_context_chars", help="Context length cap in characters.")
    llm: LLMConfig = field(default_factory=LLMConfig)

    def __post_init__(self) -> None:
        if self.search_mode not in SEARCH_MODES:
            raise SettingsError(f"chain_search_mode={self.search_mode!r} is not one of {', '.join(SEARCH_MODES)}",
                                "chain_search_mode")
        if self.k < 1:
            raise SettingsError("chain_k must be at least 1", "chain_k")


@dataclass(frozen=True)
class EvaluationConfig:
    """The evaluate job: which eval set (and where to load it from), which gates, what to compute."""

    eval_set: str = setting("sample", var="eval_set",
                            help="Eval set (name in the eval_sets table) the evaluate and sweep jobs score.")
    source: str = setting(
        "data/eval/questions.jsonl", var="eval_source", kind="location",
        help="Registered as eval_set before evaluating (new version only if changed): a .jsonl path, "
             "beir:<folder>[:split], squad:<file>[:sample]; none = use the table as is.")
    gates: str = setting("data/eval/gates.yml", var="gates", kind="location",
                         help="Quality gates (block / warn / info tiers) that decide promotion to @champion.")
    answers: bool = setting(True, var="eval_answers",
                            help="Generate and score answers (true) or retrieval metrics only (false).")
    harness: str = setting(
        "mlflow", var="eval_harness",
        help="mlflow (mlflow.genai.evaluate, one trace per question) | direct (same scorers in-process).")
    limit: int = setting(0, var="eval_limit", help="Evaluate only the first N questions (0 = all).")
    parallel: int = setting(
        0, var="eval_parallel",
        help="Questions answered at once (0 = auto: one per core on the llama.cpp backend, each on one core; "
             "1 elsewhere). Answers are the same either way.")
    ks: tuple[int, ...] = setting((5, 10), var="eval_ks", help="Cut-offs k of the @k retrieval metrics, e.g. 5,10.")
    ndcg_k: int = setting(10, var="eval_ndcg_k", help="Cut-off of nDCG.")
    judge_backend: str = setting(
        "", var="judge_backend",
        help="LLM-as-judge metrics when set: local | transformers | openai | databricks (empty = code-based metrics only).")
    judge_model: str = setting("", var="judge_model", help="Judge model (empty = the local chat model).")
    judge_endpoint: str = setting("", var="judge_endpoint", help="Judge endpoint (base URL or serving endpoint).")

    #: The scoring harnesses (``ragops.evaluation.harness.HARNESSES`` runs them).
    HARNESSES: typing.ClassVar[tuple[str, ...]] = ("mlflow", "direct")

    def __post_init__(self) -> None:
        if self.parallel < 0:
            raise SettingsError("eval_parallel must be 0 (auto) or a positive number of questions", "eval_parallel")
        if self.harness not in self.HARNESSES:
            raise SettingsError(f"eval_harness={self.harness!r} is not one of {', '.join(self.HARNESSES)}",
                                "eval_harness")
        if not self.ks or min(self.ks) < 1:
            raise SettingsError(f"eval_ks={','.join(map(str, self.ks))!r}: every k must be at least 1", "eval_ks")
        if self.ndcg_k < 1:
            raise SettingsError("eval_ndcg_k must be at least 1", "eval_ndcg_k")
        if self.limit < 0:
            raise SettingsError("eval_limit must be 0 (all questions) or more", "eval_limit")

    def judge(self) -> LLMConfig | None:
        if not self.judge_backend:
            return None
        return LLMConfig(backend=self.judge_backend, model=self.judge_model or LLMConfig.model,
                         endpoint=self.judge_endpoint, max_new_tokens=128)


@dataclass(frozen=True)
class FinetuneConfig:
    """The fine-tune job: which examples it builds (eval sets, feedback), how it splits them, how it trains."""

    method: str = setting("sft", var="finetune_method",
                          help="What trains: sft (SFTTrainer, LoRA) | dpo (DPOTrainer on the base) | sft+dpo (DPO on "
                               "the SFT model).")
    base_model: str = setting(
        "", var="finetune_base_model",
        help="Model to fine-tune (empty = llm_model): a packaged name, a transformers folder, or "
             "models:/rag_llm/<version> to go on from a fine-tune.")
    eval_sets: str = setting(
        "sample", var="finetune_eval_sets",
        help="Comma list of eval sets (names in the eval_sets table) whose reference answers become examples.")
    holdout_eval_set: str = setting(
        "", var="finetune_holdout_eval_set",
        help="An eval set the gates score: its questions and their documents (split_by) never enter training "
             "(empty = none besides the validation split).")
    split_by: str = setting(
        "document", var="finetune_split_by",
        help="What train / validation split by, so no question's source leaks: document (expected_doc_ids) | tag "
             "(the first tag: a SQuAD article).")
    validation_share: float = setting(0.2, var="finetune_validation_share",
                                      help="Share of split groups held out for validation.")
    dont_know_share: float = setting(
        0.05, var="finetune_dont_know_share",
        help="Share of answerable questions also written with their source removed from the context and \"I don't "
             "know\" as the answer.")
    feedback: bool = setting(True, var="finetune_feedback",
                             help="Also learn from feedback: up-voted and corrected answers (SFT), and pairs (DPO).")
    max_steps: int = setting(30, var="max_steps",
                             help="Optimizer steps per trainer (0 = finetune_epochs over the training rows).")
    epochs: float = setting(1.0, var="finetune_epochs", help="Epochs when max_steps is 0.")
    learning_rate: float = setting(3e-4, var="finetune_learning_rate", help="Peak learning rate (LoRA).")
    dpo_learning_rate: float = setting(5e-5, var="finetune_dpo_learning_rate", help="Peak learning rate of DPO.")
    dpo_beta: float = setting(0.1, var="finetune_dpo_beta", help="DPO's beta (how far from the reference model).")
    batch_size: int = setting(0, var="finetune_batch_size",
                              help="Examples per device step (0 = chosen from the device: its memory on a GPU).")
    grad_accum: int = setting(0, var="finetune_grad_accum",
                              help="Gradient accumulation steps (0 = enough for about 16 examples per update).")
    max_length: int = setting(1024, var="finetune_max_length", help="Longest training sequence in tokens.")
    lora_r: int = setting(16, var="finetune_lora_r", help="LoRA rank.")
    lora_alpha: int = setting(32, var="finetune_lora_alpha", help="LoRA scaling numerator (alpha / r).")
    lora_dropout: float = setting(0.05, var="finetune_lora_dropout", help="LoRA dropout.")
    device: str = setting("auto", var="finetune_device",
                          help="auto (a GPU when there is one, else the CPU) | cuda | mps | cpu")
    seed: int = setting(0, var="finetune_seed", help="Seed of the split, the sampling and the trainers.")
    model_name: str = setting("rag_llm", var="finetune_model_name",
                              help="Registered model name of fine-tuned LLMs (<catalog>.<schema>.<name> in Unity Catalog).")

    METHODS: typing.ClassVar[tuple[str, ...]] = ("sft", "dpo", "sft+dpo")
    SPLIT_BY: typing.ClassVar[tuple[str, ...]] = ("document", "tag")
    DEVICES: typing.ClassVar[tuple[str, ...]] = ("auto", "cuda", "mps", "cpu")

    def __post_init__(self) -> None:
        if self.method not in self.METHODS:
            raise SettingsError(f"finetune_method={self.method!r}: use {', '.join(self.METHODS)}", "finetune_method")
        if self.split_by not in self.SPLIT_BY:
            raise SettingsError(f"finetune_split_by={self.split_by!r}: use {', '.join(self.SPLIT_BY)}",
                                "finetune_split_by")
        if self.device not in self.DEVICES:
            raise SettingsError(f"finetune_device={self.device!r}: use {', '.join(self.DEVICES)}", "finetune_device")
        if not self.eval_set_names:
            raise SettingsError("finetune_eval_sets names no eval set", "finetune_eval_sets")
        for name, value in (("finetune_validation_share", self.validation_share),
                            ("finetune_dont_know_share", self.dont_know_share)):
            if not 0.0 <= value < 1.0:
                raise SettingsError(f"{name}={value}: use a share in [0, 1)", name)
        if self.max_steps < 0:
            raise SettingsError("max_steps must be 0 (epochs) or more", "max_steps")
        if self.max_steps == 0 and self.epochs <= 0:
            raise SettingsError("finetune_epochs must be positive when max_steps is 0", "finetune_epochs")
        for name, value in (("finetune_batch_size", self.batch_size), ("finetune_grad_accum", self.grad_accum)):
            if value < 0:
                raise SettingsError(f"{name} must be 0 (auto) or more", name)
        if self.max_length < 64:
            raise SettingsError("finetune_max_length must be at least 64 tokens", "finetune_max_length")
        if self.lora_r < 1:
            raise SettingsError("finetune_lora_r must be at least 1", "finetune_lora_r")

    @property
    def eval_set_names(self) -> tuple[str, ...]:
        return tuple(n.strip() for n in self.eval_sets.split(",") if n.strip())


@dataclass(frozen=True)
class MonitoringConfig:
    """The monitor job: windowed metrics over the inference log and feedback, drift, freshness, alerts."""

    window: str = setting("1h", var="monitor_window",
                          help="Length of a metrics window (a pandas duration: 15min, 1h, 1d).")
    prices: str = setting(
        "", var="monitor_prices",
        help="Price per 1k tokens per route for the estimated cost, e.g. rag_chain=0.002,*=0.001 (* = any other "
             "route; empty = no cost metric).")
    alerts: str = setting("data/monitoring/alerts.yml", var="monitor_alerts", kind="location",
                          help="Alert rules: thresholds on monitoring metrics, by tier (page | warn | info).")
    webhook: str = setting("", var="monitor_webhook",
                           help="URL that receives a JSON POST when an alert fires or clears (empty = none).")
    groundedness_sample: int = setting(
        50, var="monitor_groundedness_sample",
        help="Answers per window, route and model version scored for groundedness (0 = none).")
    drift_eval_set: str = setting(
        "", var="monitor_drift_eval_set",
        help="Eval set whose questions are the drift reference (empty = eval_set).")
    drift_sample: int = setting(500, var="monitor_drift_sample",
                                help="Most recent queries per window compared with the drift reference.")
    drift_min_queries: int = setting(50, var="monitor_drift_min_queries",
                                     help="Fewest queries in a window for a drift statistic to be computed.")
    feedback_eval_set: str = setting(
        "feedback_candidates", var="monitor_feedback_eval_set",
        help="Eval set that down-voted and corrected answers are written to, pending review.")
    inference_table: str = setting(
        "", var="monitor_inference_table",
        help="On Databricks: the serving endpoint's inference table (catalog.schema.table) read instead of "
             "inference_log (empty = inference_log).")
    jobs_root: str = setting("", var="monitor_jobs_root", kind="location",
                             help="Folder of the local runner's run records (empty = <bundle root>/.ragops/runs).")

    def __post_init__(self) -> None:
        try:
            import pandas as pd

            td = pd.Timedelta(self.window)
        except (ValueError, TypeError):
            raise SettingsError(f"monitor_window={self.window!r}: use a duration such as 15min, 1h or 1d",
                                "monitor_window") from None
        if td <= pd.Timedelta(0):
            raise SettingsError(f"monitor_window={self.window!r} must be positive", "monitor_window")
        _ = self.price_table  # parses, or raises SettingsError
        for name, value in (("monitor_groundedness_sample", self.groundedness_sample),
                            ("monitor_drift_sample", self.drift_sample),
                            ("monitor_drift_min_queries", self.drift_min_queries)):
            if value < 0:
                raise SettingsError(f"{name} must be 0 or more", name)

    @property
    def window_seconds(self) -> int:
        import pandas as pd

        return int(pd.Timedelta(self.window).total_seconds())

    @property
    def price_table(self) -> dict[str, float]:
        """``{route: price per 1k tokens}``; ``*`` prices any other route."""
        out: dict[str, float] = {}
        for part in self.prices.split(","):
            if not part.strip():
                continue
            route, eq, price = part.partition("=")
            try:
                value = float(price)
            except ValueError:
                value = -1.0
            if not eq or not route.strip() or value < 0:
                raise SettingsError(f"monitor_prices={self.prices!r}: write route=price per 1k tokens, comma separated "
                                    "(e.g. rag_chain=0.002,*=0.001)", "monitor_prices")
            out[route.strip()] = value
        return out

    def price_of(self, route: str) -> float | None:
        table = self.price_table
        return table.get(route, table.get("*"))


@dataclass(frozen=True)
class Settings:
    """Everything a job needs to know about one target."""

    target: str = setting("local", var="target", from_bundle="${bundle.target}",
                          help="Bundle target the settings are for.")
    engine: str = setting("local", var="engine",
                          help="local (delta-rs, in-process) or spark (Databricks / any Spark Connect server).")
    catalog: str = setting("main", var="catalog", help="Unity Catalog catalog (locally, a folder under root/lakehouse).")
    schema: str = setting("ragops", var="schema", help="Schema that holds the ragops tables.")
    root: Path = setting(var="root", factory=lambda: Path(".ragops").resolve(), bundle_default=".ragops", kind="path",
                         help="Where the local target keeps its state (Delta tables, index snapshots, MLflow, runs).")
    source_path: str = setting("data/corpus", var="source_path", kind="location",
                               help="Documents to ingest: a folder, a glob, a file, or delta:<path> of a table.")
    spark_remote: str = setting(
        "", var="spark_remote",
        help="Spark Connect URL (sc://host:port) for engine=spark off Databricks; empty on Databricks.")
    git_commit: str = setting("", var="git_commit", from_bundle="${bundle.git.commit}",
                              help="Commit the code was deployed from (recorded with what a run writes).")
    ingest: IngestConfig = field(default_factory=IngestConfig)
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    chain: ChainConfig = field(default_factory=ChainConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    mlflow_tracking_uri: str = setting(
        "", var="mlflow_tracking_uri",
        help='Empty = sqlite under root (local); "databricks" on a workspace (models go to Unity Catalog).')
    model_name: str = setting("rag_chain", var="model_name",
                              help="Registered model name (<catalog>.<schema>.<name> in Unity Catalog).")
    experiment: str = setting("ragops", var="experiment", help="MLflow experiment the jobs log to.")

    @property
    def llm(self) -> LLMConfig:
        return self.chain.llm

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise SettingsError(f"engine={self.engine!r} is not one of {', '.join(ENGINES)}", "engine")

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
        return self.qualified_model_name(self.model_name)

    @property
    def registered_llm_name(self) -> str:
        """Where fine-tuned LLMs register: ``rag_llm`` locally, ``<catalog>.<schema>.rag_llm`` in Unity Catalog."""
        return self.qualified_model_name(self.finetune.model_name)

    def qualified_model_name(self, name: str) -> str:
        if self.mlflow_tracking_uri.startswith("databricks") and "." not in name:
            return f"{self.catalog}.{self.schema}.{name}"
        return name

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

        One loop over the declared settings (see the module docstring for the rules): unknown keys
        are ignored, empty values keep the default, values are coerced by the field's type, and
        ``path`` / ``location`` settings resolve against ``base_dir`` (the bundle root; default cwd).
        """
        values = {k: v for k, v in variables.items() if v is not None and v != ""}
        base = Path(base_dir) if base_dir else Path.cwd()
        return _build(cls, values, base)


# --- the settings, derived from the fields ------------------------------------------------


@dataclass(frozen=True)
class SettingInfo:
    """One setting as :func:`list_settings` describes it."""

    name: str  #: the bundle variable / job parameter name (``chunk_size``)
    path: str  #: dotted field path in :class:`Settings` (``chunking.chunk_size``)
    type: str  #: ``int``, ``float``, ``bool``, ``str``, ``Path`` or ``tuple[int, ...]``
    default: Any  #: the default as the bundle writes it (``.ragops`` for root, ``(5, 10)`` for eval_ks)
    help: str
    kind: str = ""  #: ``path`` | ``location`` | ""
    from_bundle: str = ""  #: e.g. ``${bundle.git.commit}``: supplied by the bundle, not a variable

    @property
    def is_variable(self) -> bool:
        """Whether ``databricks.yml`` declares this setting under ``variables:``."""
        return not self.from_bundle

    def parse(self, value: Any) -> Any:
        """``value`` (a string from YAML, a widget or the command line) as this setting's type."""
        return _coerce(self.name, value, _TYPES[self.type])

    def bundle_text(self, value: Any = dataclasses.MISSING) -> str:
        """The default (or ``value``) as a bundle variable / job parameter string."""
        value = self.default if value is dataclasses.MISSING else value
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, tuple):
            return ",".join(map(str, value))
        return str(value)


_TYPES: dict[str, Any] = {"int": int, "float": float, "bool": bool, "str": str, "Path": Path,
                          "tuple[int, ...]": tuple[int, ...]}
_EXPECTED = {int: "an integer", float: "a number", bool: "true or false", str: "text", Path: "a path"}


def _type_name(tp: Any) -> str:
    for name, known in _TYPES.items():
        if tp == known:
            return name
    raise TypeError(f"settings of type {tp!r} are not supported; use one of {', '.join(_TYPES)}")


def _coerce(name: str, value: Any, tp: Any) -> Any:
    def bad(expected: str) -> SettingsError:
        return SettingsError(f"--var {name}={value}: expected {expected}", name, value)

    if tp is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise bad(_EXPECTED[bool])
    if tp in (int, float):
        # int(1.5) from YAML would truncate silently, so only integral numbers are integers
        if isinstance(value, bool) or (tp is int and isinstance(value, float) and not value.is_integer()):
            raise bad(_EXPECTED[tp])
        try:
            return tp(str(value).strip()) if isinstance(value, str) else tp(value)
        except (TypeError, ValueError):
            raise bad(_EXPECTED[tp]) from None
    if tp == tuple[int, ...]:
        if isinstance(value, (tuple, list)):
            items = list(value)
        else:
            items = [p for p in str(value).split(",") if p.strip()]
        try:
            return tuple(int(str(p).strip()) for p in items)
        except ValueError:
            raise bad("comma-separated integers, e.g. 5,10") from None
    if tp is Path:
        return Path(os.path.expanduser(str(value)))
    return str(value)


def _is_spec(value: str) -> bool:
    """``delta:/x``, ``beir:/folder``, ``s3://bucket``: a location that is not a local path."""
    return "://" in value or ":" in value.split("/")[0]


def _resolve(info: SettingInfo, value: Any, base: Path) -> Any:
    if info.kind == "path":
        p = Path(os.path.expanduser(str(value)))
        return (p if p.is_absolute() else base / p).resolve()
    if info.kind == "location":
        text = str(value)
        if text.strip().lower() == NO_LOCATION:  # "" already means "the default"; this says "none"
            return ""
        if not text or _is_spec(text):
            return text
        p = Path(os.path.expanduser(text))
        return str((p if p.is_absolute() else base / p).resolve())
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, globalns=globals())


def _walk(cls: type, prefix: str = "") -> Iterator[tuple[dataclasses.Field, str, Any]]:
    """(field, dotted path, type) of every setting field, depth first in declaration order."""
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from _walk(tp, f"{prefix}{f.name}.")
        elif "var" in f.metadata:
            yield f, prefix + f.name, tp
        # a plain field is no setting: no variable reaches it (tests/config checks there is none)


def list_settings() -> list[SettingInfo]:
    """Every setting (variable name, dotted field path, type, default, help): the one list that
    ``ragops bundle validate`` checks ``databricks.yml`` against and docs are generated from."""
    return list(_SETTINGS)


def _infos() -> list[SettingInfo]:
    out: list[SettingInfo] = []
    for f, path, tp in _walk(Settings):
        m = f.metadata
        out.append(SettingInfo(name=m["var"], path=path, type=_type_name(tp), default=m["bundle_default"],
                               help=m["help"], kind=m["kind"], from_bundle=m["from_bundle"]))
    names = [i.name for i in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise TypeError(f"settings variables declared twice: {dupes}")
    return out


def _build(cls: type, values: Mapping[str, Any], base: Path, prefix: str = "") -> Any:
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            kwargs[f.name] = _build(tp, values, base, f"{prefix}{f.name}.")
            continue
        info = _BY_PATH.get(prefix + f.name)
        if info is None:
            continue
        if info.name in values:
            value = _resolve(info, _coerce(info.name, values[info.name], tp), base)
        elif info.kind:  # a path default resolves like a given value: relative to the bundle root
            value = _resolve(info, info.default, base)
        else:
            continue
        kwargs[f.name] = value
    return cls(**kwargs)


_SETTINGS = _infos()
_BY_PATH = {i.path: i for i in _SETTINGS}
SETTINGS_BY_VARIABLE: dict[str, SettingInfo] = {i.name: i for i in _SETTINGS}
