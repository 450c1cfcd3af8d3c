"""Settings for one bundle target: where tables live, which engine runs, stage configs."""

from ragops.config.settings import (
    CHUNK_STRATEGIES,
    ENGINES,
    SEARCH_MODES,
    ChainConfig,
    ChunkingConfig,
    EmbeddingConfig,
    EvaluationConfig,
    IndexConfig,
    IngestConfig,
    LLMConfig,
    Settings,
    config_hash,
)

__all__ = ["CHUNK_STRATEGIES", "ENGINES", "SEARCH_MODES", "ChainConfig", "ChunkingConfig", "EmbeddingConfig", "EvaluationConfig", "IndexConfig", "IngestConfig", "LLMConfig", "Settings", "config_hash"]
