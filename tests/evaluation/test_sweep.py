"""The sweep grid as the job parses it (the sweep itself runs in tests/notebooks 06_experiments)."""

from __future__ import annotations

import pytest

from ragops.evaluation.sweep import SweepGrid, index_settings


def test_grid_from_job_parameters_and_its_size():
    grid = SweepGrid.from_params({"sweep_chunk_strategies": "recursive, markdown", "sweep_chunk_sizes": "200,400",
                                  "sweep_search_modes": "vector,hybrid", "sweep_ks": "4",
                                  "sweep_prompts": "rag_answer,rag_answer_concise"})
    assert grid.chunk_sizes == (200, 400) and grid.chunk_strategies == ("recursive", "markdown")
    assert grid.size == 2 * 2 * 2 * 1 * 2
    assert len(grid.chain_configs(answers=False)) == 2  # prompts only change answers


@pytest.mark.parametrize("params, message", [
    ({"sweep_chunk_strategies": "paragraphs"}, "chunk strategies ['paragraphs']"),
    ({"sweep_search_modes": "semantic"}, "search modes ['semantic']"),
    ({"sweep_chunk_sizes": "0"}, "positive integers"),
])
def test_bad_grid_values_are_named(params, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        SweepGrid.from_params(params)


def test_each_index_configuration_has_its_own_root_and_shares_the_tracking_store(make_settings):
    settings = make_settings()
    child = index_settings(settings, "markdown", 400, "all-MiniLM-L6-v2")
    assert child.root == settings.root / "sweep" / "markdown-400-all-MiniLM-L6-v2"
    assert child.tracking_uri == settings.tracking_uri and child.chunking.chunk_size == 400
