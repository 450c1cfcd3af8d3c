"""The options an evaluation runs with are the target's EvaluationConfig: checked where declared,
and recorded with the same hash as before, so past evaluations are still found and reused."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ragops.config import EvaluationConfig, SettingsError, config_hash
from ragops.evaluation.entities import options_from_record, options_hash, options_record


@pytest.mark.parametrize("changes, variable", [({"harness": "fast"}, "eval_harness"), ({"ks": (5, 0)}, "eval_ks"),
                                               ({"ks": ()}, "eval_ks"), ({"ndcg_k": 0}, "eval_ndcg_k")])
def test_evaluation_options_are_checked_where_they_are_declared(changes, variable):
    with pytest.raises(SettingsError, match=variable) as err:
        replace(EvaluationConfig(), **changes)
    assert err.value.variable == variable


def test_the_options_hash_is_what_runs_recorded_before():
    # the record EvalOptions wrote: ks, ndcg_k, answers, judge, n_boot, limit (harness left out of the hash)
    before = {"ks": [5, 10], "ndcg_k": 10, "answers": False, "judge": None, "n_boot": 1000, "limit": None}
    cfg = EvaluationConfig(answers=False, harness="direct")
    assert options_hash(cfg) == config_hash(before)
    assert options_hash(replace(cfg, harness="mlflow")) == options_hash(cfg)
    assert options_hash(replace(cfg, limit=3)) != options_hash(cfg)


def test_a_recorded_run_gives_back_its_options():
    cfg = EvaluationConfig(ks=(1, 3), ndcg_k=5, answers=False, harness="direct", limit=7,
                           judge_backend="openai", judge_model="judge-1", judge_endpoint="http://j/v1")
    again = options_from_record(options_record(cfg))
    assert options_hash(again) == options_hash(cfg)
    assert (again.ks, again.harness, again.limit, again.judge()) == ((1, 3), "direct", 7, cfg.judge())
