"""Settings for one bundle target: where tables live, which engine runs, stage configs.

Each setting is declared once, on its field (:func:`setting`); :func:`list_settings` lists them.
"""

from ragops.config.settings import (
    CHUNK_STRATEGIES,
    ENGINES,
    SEARCH_MODES,
    SETTINGS_BY_VARIABLE,
    ChainConfig,
    ChunkingConfig,
    EmbeddingConfig,
    EvaluationConfig,
    FinetuneConfig,
    IndexConfig,
    IngestConfig,
    LLMConfig,
    MonitoringConfig,
    SettingInfo,
    Settings,
    SettingsError,
    config_hash,
    list_settings,
    setting,
)

__all__ = ["CHUNK_STRATEGIES", "ENGINES", "SEARCH_MODES", "SETTINGS_BY_VARIABLE", "ChainConfig", "ChunkingConfig",
           "EmbeddingConfig", "EvaluationConfig", "FinetuneConfig", "IndexConfig", "IngestConfig", "LLMConfig", "MonitoringConfig",
           "SettingInfo",
           "Settings", "SettingsError", "config_hash", "list_settings", "setting"]
