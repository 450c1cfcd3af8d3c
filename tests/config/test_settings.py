from pathlib import Path

import pytest

from ragops.config import ChunkingConfig, Settings, config_hash


def test_variables_are_parsed_from_strings(tmp_path: Path):
    s = Settings.from_variables(
        {"root": "state", "source_path": "docs", "chunk_size": "128", "chunk_overlap": "16",
         "chunk_include_title": "false", "engine": "local", "catalog": "dev", "unknown_key": "ignored"},
        base_dir=tmp_path,
    )
    assert s.root == (tmp_path / "state").resolve()
    assert s.source_path == str((tmp_path / "docs").resolve())
    assert (s.chunking.chunk_size, s.chunking.chunk_overlap, s.chunking.include_title) == (128, 16, False)
    assert s.table_path("chunks") == tmp_path.resolve() / "state" / "lakehouse" / "dev" / "ragops" / "chunks"
    assert s.table_name("chunks") == "dev.ragops.chunks"


def test_empty_values_keep_defaults(tmp_path: Path):
    s = Settings.from_variables({"root": str(tmp_path), "chunk_strategy": "", "spark_remote": ""})
    assert s.chunking.strategy == ChunkingConfig().strategy


def test_delta_source_is_not_turned_into_a_path(tmp_path: Path):
    s = Settings.from_variables({"root": str(tmp_path), "source_path": "delta:/data/docs_table"})
    assert s.source_path == "delta:/data/docs_table"


@pytest.mark.parametrize(
    "variables, message",
    [
        ({"chunk_strategy": "paragraphs"}, "chunk_strategy='paragraphs' is not one of"),
        ({"chunk_size": "100", "chunk_overlap": "100"}, "chunk_overlap=100 must be"),
        ({"chunk_size": "8"}, "chunk_size=8 is too small"),
        ({"engine": "duckdb"}, "engine='duckdb' is not one of"),
    ],
)
def test_bad_settings_say_what_is_wrong(variables, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        Settings.from_variables({"root": str(tmp_path), **variables})


def test_config_hash_is_stable_and_sensitive():
    a = ChunkingConfig(strategy="token", chunk_size=128)
    assert config_hash(a) == config_hash(ChunkingConfig(strategy="token", chunk_size=128))
    assert config_hash(a) != config_hash(ChunkingConfig(strategy="token", chunk_size=129))
