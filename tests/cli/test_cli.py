"""The ``ragops`` command line, called as a user would (in-process for speed)."""

from __future__ import annotations

import json

import pytest

from ragops.cli.main import main


def run_cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_validate_ok(capsys):
    code, out, _ = run_cli(capsys, "bundle", "validate", "--target", "prod")
    assert code == 0 and "is valid for target 'prod'" in out


def test_search_json_and_batch(built, capsys, tmp_path):
    settings, _ = built
    root = f"root={settings.root}"
    code, out, _ = run_cli(capsys, "search", "default retention period", "--json", "--k", "3", "--var", root)
    assert code == 0
    payload = json.loads(out)
    assert payload["mode"] == "hybrid" and len(payload["results"]) == 3
    assert set(payload["results"][0]) >= {"chunk_id", "doc_id", "source_uri", "score", "text"}

    queries = tmp_path / "q.jsonl"
    queries.write_text('{"id": "a", "text": "collector port"}\n\n{"id": 7, "text": "retention"}\n')
    code, out, _ = run_cli(capsys, "search", "--queries", str(queries), "--k", "2", "--mode", "keyword", "--var", root)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [line["id"] for line in lines] == ["a", 7]
    assert all(len(line["results"]) == 2 for line in lines)


def test_search_human_output_and_filter(built, capsys):
    settings, _ = built
    code, out, _ = run_cli(capsys, "search", "port", "--filter", "source_uri=reference/*", "--var", f"root={settings.root}")
    assert code == 0 and "reference/" in out and "guides/" not in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["search", "--queries", "/nonexistent.jsonl"], "no such file"),
        (["search", "x", "--var", "nonsense"], "expected NAME=VALUE"),
        (["search", "x", "--var", "colour=red"], "no such variable"),
        (["bundle", "run", "nope_job"], "no job 'nope_job'"),
        (["search", "x", "--var", "chunk_size=abc"], "chunk_size"),
    ],
)
def test_errors_are_one_clear_line(capsys, args, message):
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and message in err


def test_a_filter_on_an_unknown_field_is_one_line(capsys, built):
    settings, _ = built
    code, _, err = run_cli(capsys, "search", "x", "--filter", "colour=red", "--var", f"root={settings.root}")
    assert code == 2 and "cannot filter on 'colour'" in err and "Traceback" not in err


def test_bad_queries_file_names_the_line(capsys, tmp_path, built):
    settings, _ = built
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "text": "ok"}\n{"id": 2}\n')
    code, _, err = run_cli(capsys, "search", "--queries", str(bad), "--var", f"root={settings.root}")
    assert code == 2 and "bad.jsonl:2" in err


def test_index_status_and_tables(built, capsys):
    settings, _ = built
    code, out, _ = run_cli(capsys, "index", "status", "--var", f"root={settings.root}")
    assert code == 0 and out.startswith("* v")
    code, out, _ = run_cli(capsys, "tables", "--json", "--var", f"root={settings.root}")
    tables = {t["table"]: t for t in json.loads(out)}
    assert tables["raw_documents"]["rows"] > 40 and tables["feedback"]["version"] is None


def _commands(parser, prefix=()):
    """Every command path of the parser: ("bundle", "run"), ("search",), …"""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*prefix, name))
            return
    yield prefix


def test_help_of_every_command_exits_0(capsys):
    from ragops.cli.main import build_parser

    commands = list(_commands(build_parser()))
    assert ("bundle", "run") in commands and ("eval",) in commands
    for path in [(), *commands]:
        for flag in ("--help", "-h"):
            with pytest.raises(SystemExit) as exc:
                main([*path, flag])
            assert exc.value.code == 0, (path, flag)
            assert "usage: ragops" in capsys.readouterr().out


def test_ragops_error_is_one_line_and_debug_shows_the_traceback(capsys, tmp_path):
    args = ["model", "rollback", "--var", f"root={tmp_path}"]
    code, out, err = run_cli(capsys, *args)
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("ragops: error: ") and "Traceback" not in err
    assert "rag_chain" in last  # names what is missing
    code, _, err = run_cli(capsys, *args, "--log-level", "DEBUG")
    assert code == 2 and "Traceback (most recent call last)" in err


def test_settings_lists_every_variable_with_its_value(capsys):
    code, out, _ = run_cli(capsys, "settings", "--json", "--var", "rrf_k=20")
    rows = {r["variable"]: r for r in json.loads(out)}
    assert code == 0 and rows["rrf_k"]["value"] == "20" and rows["rrf_k"]["default"] == "10"
    assert rows["rrf_k"]["field"] == "index.rrf_k" and rows["chunk_size"]["type"] == "int"


def test_settings_reference_doc_is_current(capsys):
    """docs/settings.md is generated from the field declarations: regenerate it when a setting changes."""
    from tests.conftest import REPO

    code, out, _ = run_cli(capsys, "settings", "--markdown")
    assert code == 0 and "| `rrf_k` | int | `10` |" in out
    assert (REPO / "docs" / "settings.md").read_text() == out, (
        "docs/settings.md is stale: run `ragops settings --markdown > docs/settings.md`")
