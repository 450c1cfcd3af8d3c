"""``ragops eval-set``: list, register and synthesize eval sets from a shell (in-process for speed)."""

from __future__ import annotations

import json
import re

from tests.cli.test_cli import run_cli
from tests.conftest import REPO, copy_corpus, run_pipeline

QUESTIONS = REPO / "data" / "eval" / "questions.jsonl"


def test_register_is_versioned_and_list_shows_every_version(capsys, tmp_path):
    root = f"root={tmp_path / 'state'}"
    code, out, _ = run_cli(capsys, "eval-set", "list", "--var", root)
    assert code == 0 and "no eval sets registered yet" in out

    code, out, _ = run_cli(capsys, "eval-set", "register", "mine", str(QUESTIONS), "--var", root)
    assert code == 0 and out.strip() == "eval set mine@v1: 36 questions (new version)"
    code, out, _ = run_cli(capsys, "eval-set", "register", "mine", f"jsonl:{QUESTIONS}", "--var", root, "--json")
    assert code == 0 and json.loads(out) == {"name": "mine", "version": 1, "rows": 36, "created": False,
                                             "table_version": 1}
    fewer = tmp_path / "fewer.jsonl"
    fewer.write_text("\n".join(QUESTIONS.read_text().splitlines()[:5]) + "\n")
    code, out, _ = run_cli(capsys, "eval-set", "register", "mine", str(fewer), "--var", root)
    assert code == 0 and "mine@v2: 5 questions (new version)" in out

    code, out, _ = run_cli(capsys, "eval-set", "list", "--var", root, "--json")
    rows = json.loads(out)
    assert [(r["eval_set"], r["version"], r["questions"]) for r in rows] == [("mine", 1, 36), ("mine", 2, 5)]
    assert all(r["origins"] and r["created_at"] for r in rows)
    code, out, _ = run_cli(capsys, "eval-set", "list", "--var", root)
    assert code == 0 and "mine" in out and "created_at" in out


def test_a_bad_source_is_one_line_naming_the_formats(capsys, tmp_path):
    code, _, err = run_cli(capsys, "eval-set", "register", "x", "questions.csv", "--var", f"root={tmp_path}")
    assert code == 2 and "not understood" in err and "beir:<folder>[:split]" in err and "Traceback" not in err


def test_synthesize_writes_questions_about_the_indexed_chunks(capsys, tmp_path, monkeypatch):
    """The real command and generator over a real index; the LLM is the echo model of
    tests/evaluation/test_synthetic.py (the packaged SmolLM2 is tested there on two chunks: on these
    longer ones it takes a minute and rarely replies in a parseable form)."""
    import ragops.llm
    from ragops.config import Settings
    from tests.evaluation.test_synthetic import EchoChatModel

    corpus = copy_corpus(tmp_path / "corpus", ["guides/retention.md", "guides/collector-setup.md"])
    variables = {"root": str(tmp_path / "state"), "source_path": str(corpus)}
    run_pipeline(Settings.from_variables(variables))
    asked_for = []
    monkeypatch.setattr(ragops.llm, "get_chat_model", lambda config: asked_for.append(config) or EchoChatModel())
    args = [a for k, v in variables.items() for a in ("--var", f"{k}={v}")]
    synthesize = ["eval-set", "synthesize", "syn", "--llm-backend", "openai", "--llm-model", "m1",
                  "--llm-endpoint", "http://llm:8000/v1", "--max-chunks", "3", "--per-chunk", "2", "--seed", "1", *args]
    code, out, err = run_cli(capsys, *synthesize)
    assert code == 0, err[-2000:]
    assert (asked_for[0].backend, asked_for[0].model, asked_for[0].endpoint) == ("openai", "m1", "http://llm:8000/v1")
    stats, version = out.splitlines()
    kept = int(re.fullmatch(r"generated from 3 chunks: 6 asked, (\d+) kept; dropped: .+", stats)[1])
    assert kept >= 1 and version == f"eval set syn@v1: {kept} questions (new version)"

    code, out, _ = run_cli(capsys, "eval-set", "list", "--json", *args)
    (row,) = json.loads(out)
    assert row["eval_set"] == "syn" and row["origins"] == "synthetic" and row["questions"] == kept
    from ragops.evaluation.eval_sets import read_eval_set
    from ragops.lakehouse import open_lakehouse

    with open_lakehouse(Settings.from_variables(variables)) as lh:
        expected = {d for docs in read_eval_set(lh, "syn").frame["expected_doc_ids"] for d in docs}
    assert expected <= {"guides/retention.md", "guides/collector-setup.md"}

    # the same LLM and seed over the same chunks asks the same questions: no new version
    code, out, _ = run_cli(capsys, *synthesize, "--json")
    payload = json.loads(out)
    assert code == 0 and payload["version"] == 1 and not payload["created"] and payload["generation"]["kept"] == kept
