"""Champion/challenger through the evaluate job, as a user runs it: a passing gate promotes, a
failing one exits non-zero with a readable report and leaves @champion alone; rollback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ragops.cli.main import main as cli
from ragops.models.log import log_chain
from ragops.models.registry import PREVIOUS_CHAMPION_TAG, alias_version
from ragops.tracking import configure_mlflow
from tests.conftest import REPO

pytestmark = pytest.mark.slow

STRICT = "block:\n  - metric: precision@5\n    min: 0.5\n"


def job(variables: dict, **extra) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "ragops.cli.main", "bundle", "run", "evaluate_job"]
    for k, v in {**variables, "eval_answers": "false", **extra}.items():
        args += ["--var", f"{k}={v}"]
    return subprocess.run(args, capture_output=True, text=True, timeout=900, cwd=REPO)


def test_gate_promotes_blocks_and_rolls_back(small_state, tmp_path, capsys):
    settings, variables, _ = small_state
    v1 = log_chain(settings).version

    # 1. no champion yet: the floors pass, v1 becomes @champion
    first = job(variables)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "PASSED" in first.stdout and f"promoted version {v1} to @champion" in first.stdout
    assert alias_version(settings, "champion") == v1
    reports = sorted((settings.root / "reports").glob("evaluate-*"))
    assert (reports[-1] / "report.txt").is_file() and (reports[-1] / "comparison.png").stat().st_size > 5000

    # 2. a new challenger against strict gates: non-zero exit, readable report, champion unchanged
    v2 = log_chain(settings).version
    strict = tmp_path / "strict.yml"
    strict.write_text(STRICT)
    blocked = job(variables, gates=str(strict))
    assert blocked.returncode != 0
    report = blocked.stderr + blocked.stdout
    assert "BLOCKED" in report and "precision@5" in report and "short by" in report
    assert alias_version(settings, "champion") == v1 and alias_version(settings, "challenger") == v2

    # 3. default gates: v2 is compared with v1 question by question (v1's evaluation is reused) and promoted
    passed = job(variables)
    assert passed.returncode == 0, passed.stdout[-3000:] + passed.stderr[-3000:]
    summary = json.loads([line for line in passed.stdout.splitlines() if line.startswith('{"task"')][-1])["summary"]
    assert summary["champion_version"] == v1 and summary["promoted"]["version"] == v2
    assert "reusing evaluation run" in passed.stderr
    client = configure_mlflow(settings)
    assert client.get_registered_model(settings.registered_model_name).tags[PREVIOUS_CHAMPION_TAG] == v1
    assert client.get_model_version(settings.registered_model_name, v2).tags["gate_status"] == "passed"

    # 4. rollback puts v1 back; `ragops eval --json` reports metric names as keys and the run id
    root = f"root={settings.root}"
    assert cli(["model", "rollback", "--var", root, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == v1
    assert alias_version(settings, "champion") == v1
    assert cli(["eval", "--var", root, "--var", f"eval_source={variables['eval_source']}", "--retrieval-only",
                "--harness", "direct", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"recall@5", "ndcg@10", "mrr", "run_id"} <= out.keys() and out["model_version"] == v1


def test_rollback_without_history_is_a_clear_error(tmp_path, capsys):
    assert cli(["model", "rollback", "--var", f"root={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "rag_chain" in err and ("not registered" in err or "nothing to roll back" in err)


def test_rerun_of_an_unknown_run_is_a_clear_error(tmp_path, capsys):
    assert cli(["eval", "--var", f"root={tmp_path}", "--rerun", "no-such-run"]) == 2
    err = capsys.readouterr().err
    assert "no MLflow run 'no-such-run'" in err and "Traceback" not in err
