from pathlib import Path

import pytest

from ragops.config import (
    ChainConfig,
    ChunkingConfig,
    EmbeddingConfig,
    IndexConfig,
    IngestConfig,
    LLMConfig,
    SettingInfo,
    Settings,
    SettingsError,
    config_hash,
    list_settings,
)

#: Valid non-default values for settings whose values are validated in __post_init__.
CHOICES = {"engine": "spark", "chunk_strategy": "token", "llm_backend": "openai", "chain_search_mode": "keyword",
           "eval_harness": "direct", "embedding_dtype": "bfloat16", "embedding_runtime": "torch",
           "llm_gguf_type": "q8_0", "llm_dtype": "float32", "finetune_method": "sft+dpo", "finetune_split_by": "tag", "finetune_device": "cpu",
           "finetune_validation_share": "0.3", "finetune_dont_know_share": "0.2", "finetune_eval_sets": "a,b",
           "monitor_window": "15min", "monitor_prices": "rag_chain=0.002,*=0.001"}

#: settings whose non-default value is valid only with another one
NEEDS = {"embedding_dtype": {"embedding_runtime": "torch"}}


def other_value(info: SettingInfo) -> str:
    """A valid, non-default value for ``info``, as the string a user would pass with --var."""
    if info.name in CHOICES:
        return CHOICES[info.name]
    return {"bool": lambda d: str(not d).lower(), "int": lambda d: str(d + 1), "float": lambda d: str(d + 0.5),
            "tuple[int, ...]": lambda d: "3,7", "Path": lambda d: "elsewhere",
            "str": lambda d: f"x-{d}"}[info.type](info.default)


def field_value(settings: Settings, path: str):
    node = settings
    for part in path.split("."):
        node = getattr(node, part)
    return node


@pytest.mark.parametrize("info", list_settings(), ids=lambda i: i.name)
def test_every_setting_is_set_by_its_variable(info: SettingInfo, tmp_path: Path):
    value = other_value(info)
    s = Settings.from_variables({info.name: value, **NEEDS.get(info.name, {})}, base_dir=tmp_path)
    got = field_value(s, info.path)
    expected = info.parse(value)
    if info.kind:  # resolved against the base folder
        expected = (tmp_path / value).resolve() if info.kind == "path" else str((tmp_path / value).resolve())
    assert got == expected
    assert got != field_value(Settings.from_variables({}, base_dir=tmp_path), info.path)


def test_every_config_field_is_a_setting_or_a_nested_config():
    import dataclasses
    import typing

    def plain(cls, prefix=""):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                yield from plain(hints[f.name], f"{prefix}{f.name}.")
            elif "var" not in f.metadata:
                yield prefix + f.name

    assert list(plain(Settings)) == [], "declare these with setting(default, var=..., help=...)"


def test_settings_list_names_are_unique_and_described():
    names = [i.name for i in list_settings()]
    assert len(names) == len(set(names))
    assert all(i.help for i in list_settings())
    by_name = {i.name: i for i in list_settings()}
    assert by_name["rrf_k"].path == "index.rrf_k" and by_name["rrf_k"].type == "int" and by_name["rrf_k"].default == 10
    assert by_name["root"].default == ".ragops" and by_name["eval_ks"].default == (5, 10)
    assert {i.name for i in list_settings() if not i.is_variable} == {"target", "git_commit"}


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


def test_types_coerce_from_strings_and_yaml_values(tmp_path: Path):
    s = Settings.from_variables({"rrf_k": "20", "bm25_b": "0.5", "eval_ks": "1, 3,10", "eval_answers": "0",
                                 "hnsw_m": 16, "llm_temperature": 1,
                                 "chunk_include_title": True}, base_dir=tmp_path)
    assert (s.index.rrf_k, s.index.bm25_b, s.index.hnsw_m) == (20, 0.5, 16)
    assert s.evaluation.ks == (1, 3, 10)
    assert s.evaluation.answers is False and s.chunking.include_title is True
    assert s.llm.temperature == 1.0 and isinstance(s.llm.temperature, float)


@pytest.mark.parametrize("name, value, expected", [
    ("chunk_size", "abc", "expected an integer"),
    ("chunk_size", "1.5", "expected an integer"),
    ("chunk_size", 1.5, "expected an integer"),
    ("bm25_b", "high", "expected a number"),
    ("chunk_include_title", "maybe", "expected true or false"),
    ("eval_ks", "5,ten", "expected comma-separated integers"),
])
def test_a_bad_type_names_the_variable_the_value_and_the_type(name, value, expected, tmp_path):
    with pytest.raises(SettingsError, match=f"--var {name}={value}: {expected}") as err:
        Settings.from_variables({name: value}, base_dir=tmp_path)
    assert err.value.variable == name


def test_empty_values_keep_defaults(tmp_path: Path):
    s = Settings.from_variables({"root": str(tmp_path), "chunk_strategy": "", "spark_remote": "", "rrf_k": None})
    assert s.chunking.strategy == ChunkingConfig().strategy and s.index.rrf_k == IndexConfig().rrf_k


def test_specs_are_not_paths_and_relative_files_resolve_against_the_bundle(tmp_path: Path):
    s = Settings.from_variables({"root": str(tmp_path), "source_path": "delta:/data/docs_table",
                                 "eval_source": "beir:/data/scifact:test", "gates": "gates.yml"}, base_dir=tmp_path)
    assert s.source_path == "delta:/data/docs_table"
    assert s.evaluation.source == "beir:/data/scifact:test"
    assert s.evaluation.gates == str(tmp_path.resolve() / "gates.yml")
    defaults = Settings.from_variables({}, base_dir=tmp_path)
    assert defaults.evaluation.source == str(tmp_path.resolve() / "data/eval/questions.jsonl")
    assert defaults.root == tmp_path.resolve() / ".ragops"
    assert Settings.from_variables({"source_path": "s3://bucket/docs"}).source_path == "s3://bucket/docs"


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
    with pytest.raises(SettingsError, match=message):
        Settings.from_variables({"root": str(tmp_path), **variables})


def test_config_hash_is_stable_and_sensitive():
    a = ChunkingConfig(strategy="token", chunk_size=128)
    assert config_hash(a) == config_hash(ChunkingConfig(strategy="token", chunk_size=128))
    assert config_hash(a) != config_hash(ChunkingConfig(strategy="token", chunk_size=129))


def test_default_config_hashes_did_not_change():
    """Chunk ids and snapshot manifests carry these hashes: declaring settings must not change them.
    (EmbeddingConfig's is hashed nowhere; it changed when its unused ``normalize`` field went and when
    ``runtime`` came and when its default became onnx, then openvino: the vectors' identity is
    ``embedder_identity``, not this hash. LLMConfig's, and
    with it ChainConfig's, changed when ``gguf_type`` came: the default weights moved from Q4_1 to F16,
    so the answers differ and a logged chain must say so; and again when ``dtype`` (llm_dtype, the
    openvino backend's precision) came, which a logged chain records whatever its backend.)"""
    assert {cls.__name__: config_hash(cls()) for cls in (IngestConfig, ChunkingConfig, EmbeddingConfig, LLMConfig,
                                                         IndexConfig, ChainConfig)} == {
        "IngestConfig": "cabc81a72cce", "ChunkingConfig": "82647e9a1ad0", "EmbeddingConfig": "4deb091f88bb",
        "LLMConfig": "7eb2cddd8070", "IndexConfig": "7f13accc35c6", "ChainConfig": "ca2a99787ba0"}


def test_none_sets_a_location_to_nothing_while_empty_keeps_the_default(tmp_path: Path):
    assert Settings.from_variables({"eval_source": "none"}, base_dir=tmp_path).evaluation.source == ""
    default = Settings.from_variables({"eval_source": ""}, base_dir=tmp_path).evaluation.source
    assert default == str(tmp_path / "data/eval/questions.jsonl")
