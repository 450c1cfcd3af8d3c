"""The numbered notebooks run top to bottom, in lifecycle order, and show what they say they do.

``00_setup`` → ``01_ingest`` → ``02_chunk_embed`` → ``03_index_sync`` are executed with papermill
against a five-file corpus, sharing one lakehouse root (the way a user runs them one after the
other). Table state is checked through the ragops API; what a user would read is checked in the
executed notebooks' outputs. Every notebook in ``notebooks/`` is also held to the style rules:
a ``parameters`` cell, no function or class definitions, outputs stripped.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import nbformat
import papermill
import pytest

from ragops.bundle import settings_for
from ragops.index import SnapshotStore
from ragops.lakehouse import TABLES, open_lakehouse
from tests.conftest import copy_corpus

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = REPO / "notebooks"
PIPELINE = ["00_setup", "01_ingest", "02_chunk_embed", "03_index_sync", "04_rag_chain", "05_evaluate", "06_experiments"]
#: The bundle job that runs each notebook's step (default: ingest_job).
JOB_OF = {"04_rag_chain": "rag_chain_job", "05_evaluate": "evaluate_job", "06_experiments": "experiment_sweep_job"}
#: Extra parameters per notebook (short answers keep the LLM step quick).
EXTRA_PARAMETERS = {"04_rag_chain": {"llm_max_new_tokens": "16"},
                    "05_evaluate": {"eval_answers": "false"},
                    "06_experiments": {"sweep_chunk_strategies": "recursive", "sweep_search_modes": "vector,hybrid"},
                    "07_gateway": {"llm_max_new_tokens": "16", "port": "18765"},
                    "09_finetune": {"max_steps": "1", "finetune_grad_accum": "1"}}
ALL_NOTEBOOKS = sorted({*NOTEBOOK_DIR.glob("*.ipynb"), *(NOTEBOOK_DIR / f"{n}.ipynb" for n in PIPELINE)})

#: One file per loader the pipeline notebooks exercise, plus one that must be rejected.
CORPUS_FILES = [
    "guides/collector-setup.md",
    "reference/ports-and-protocols.html",
    "pricing/support-sla.pdf",
    "troubleshooting/clock-skew.txt",
    "broken/truncated.pdf",
]
EXPECTED_DOCS = set(CORPUS_FILES) - {"broken/truncated.pdf"}
#: The best match for the default ``query`` of 03_index_sync ("collector port") in every mode.
SAMPLE_QUERY_HIT = "reference/ports-and-protocols.html"

DEFINITION = re.compile(r"^\s*(async\s+def|def|class)\s", re.MULTILINE)


class NotebookRun:
    """Executes the pipeline notebooks in order, each at most once, into one shared state root."""

    def __init__(self, base: Path) -> None:
        self.corpus = copy_corpus(base / "corpus", CORPUS_FILES)
        self.root = base / "state"
        self.out = base / "executed"
        self.out.mkdir()
        self.executed: dict[str, nbformat.NotebookNode] = {}

    @property
    def settings(self):
        return settings_for("local", {"root": str(self.root), "source_path": str(self.corpus)}, root=REPO)

    def execute(self, name: str, output_name: str | None = None) -> nbformat.NotebookNode:
        output = self.out / f"{output_name or name}.ipynb"
        papermill.execute_notebook(
            str(NOTEBOOK_DIR / f"{name}.ipynb"),
            str(output),
            kernel_name="python3",
            parameters=dict(root=str(self.root), source_path=str(self.corpus), **EXTRA_PARAMETERS.get(name, {})),
            cwd=str(REPO),
            progress_bar=False,
            execution_timeout=300,
        )
        return nbformat.read(output, as_version=4)

    def upto(self, name: str) -> nbformat.NotebookNode:
        """Run every notebook up to and including ``name`` that has not run yet; ``name``'s result."""
        for step in PIPELINE[: PIPELINE.index(name) + 1]:
            if step not in self.executed:
                self.executed[step] = self.execute(step)
        return self.executed[name]


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory) -> NotebookRun:
    return NotebookRun(tmp_path_factory.mktemp("notebooks"))


def shown(nb: nbformat.NotebookNode, tag: str | None = None) -> str:
    """Everything the code cells (only those tagged ``tag``, if given) display as text."""
    parts: list[str] = []
    for cell in nb.cells:
        if cell.cell_type != "code" or (tag and tag not in cell.metadata.get("tags", [])):
            continue
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts += [str(v) for k, v in out.get("data", {}).items() if k.startswith("text/")]
    return "\n".join(parts)


def shown_mime_types(nb: nbformat.NotebookNode) -> set[str]:
    return {mime for cell in nb.cells for out in cell.get("outputs", []) for mime in out.get("data", {})}


# --- style: every notebook -------------------------------------------------------------------

@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_follows_the_notebook_style(path: Path):
    assert path.is_file(), f"{path.relative_to(REPO)} is missing"
    nb = nbformat.read(path, as_version=4)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]

    assert nb.cells[0].cell_type == "markdown", "the first cell should say what the notebook does and which job runs it"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code", "exactly one code cell must be tagged `parameters`"
    for cell in code_cells:
        assert not DEFINITION.search(cell.source), (
            f"{path.name}: notebooks hold no logic; move this definition into src/ragops:\n{cell.source}"
        )
        assert not cell.get("outputs") and cell.get("execution_count") is None, (
            f"{path.name}: outputs must be stripped before committing (cell: {cell.source[:60]!r})"
        )
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("name", PIPELINE)
def test_pipeline_notebook_parameters_default_to_the_bundle(name: str):
    nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    defaults = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in ast.parse(cell.source).body
        if isinstance(node, ast.Assign)
    }
    assert {"target": "local", "root": "", "source_path": ""}.items() <= defaults.items()
    job = JOB_OF.get(name, "ingest_job")
    assert job in nb.cells[0].source, "the first cell should name the bundle job that runs this step"


def test_python3_kernel_runs_this_environment():
    """papermill's ``python3`` kernel must be this interpreter, or the notebooks import another ragops."""
    from jupyter_client.kernelspec import KernelSpecManager

    exe = KernelSpecManager().get_kernel_spec("python3").argv[0]
    if exe not in {"python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}"}:  # else sys.executable
        assert Path(exe).absolute().parent == Path(sys.executable).absolute().parent, (
            f"the python3 kernel runs {exe}, not {sys.executable}; "
            "run `python -m ipykernel install --sys-prefix` with this environment's python"
        )


# --- execution, in lifecycle order ------------------------------------------------------------

def test_00_setup_shows_the_target_and_creates_every_table(notebooks: NotebookRun):
    nb = notebooks.upto("00_setup")

    assert str(notebooks.root) in shown(nb), "the resolved settings should show the root passed as a parameter"
    assert "raw_documents" in shown(nb) and "inference_log" in shown(nb)
    with open_lakehouse(notebooks.settings) as lh:
        missing = [t for t in TABLES if not lh.exists(t)]
    assert not missing, f"00_setup did not create {missing}"


def test_01_ingest_loads_the_documents_and_shows_the_rejected_file(notebooks: NotebookRun):
    nb = notebooks.upto("01_ingest")

    with open_lakehouse(notebooks.settings) as lh:
        docs = lh.read("raw_documents", ["doc_id"])
        rejected = lh.read("rejected_documents", ["source_uri", "reason_code"])
    assert set(docs["doc_id"]) == EXPECTED_DOCS
    assert rejected.to_dict("records") == [{"source_uri": "broken/truncated.pdf", "reason_code": "parse_error"}]
    assert "broken/truncated.pdf" in shown(nb) and "parse_error" in shown(nb)


def test_02_chunk_embed_embeds_every_chunk_and_plots_their_lengths(notebooks: NotebookRun):
    nb = notebooks.upto("02_chunk_embed")

    with open_lakehouse(notebooks.settings) as lh:
        chunks = lh.read("chunks", ["chunk_id", "doc_id"])
        embeddings = lh.read("embeddings", ["chunk_id"])
    assert set(chunks["doc_id"]) == EXPECTED_DOCS
    assert sorted(embeddings["chunk_id"]) == sorted(chunks["chunk_id"])
    assert "image/png" in shown_mime_types(nb), "the chunk length histogram is missing"


def test_03_index_sync_publishes_a_snapshot_and_finds_the_sample_query(notebooks: NotebookRun):
    nb = notebooks.upto("03_index_sync")

    settings = notebooks.settings
    manifest = SnapshotStore(settings.index_root).manifest()
    assert manifest is not None, "03_index_sync published no index snapshot"
    with open_lakehouse(settings) as lh:
        assert manifest.source_version == lh.version("embeddings")
        assert manifest.counts["chunks"] == len(lh.read("embeddings", ["chunk_id"]))
    assert manifest.snapshot_id in shown(nb)
    for mode in ("vector", "keyword", "hybrid"):
        assert SAMPLE_QUERY_HIT in shown(nb, tag=f"search_{mode}"), f"{mode} search results do not show {SAMPLE_QUERY_HIT}"


def test_rerunning_ingest_over_unchanged_documents_writes_nothing(notebooks: NotebookRun):
    notebooks.upto("03_index_sync")
    with open_lakehouse(notebooks.settings) as lh:
        before = lh.version("raw_documents")

    notebooks.execute("01_ingest", output_name="01_ingest-rerun")

    with open_lakehouse(notebooks.settings) as lh:
        assert lh.version("raw_documents") == before


def test_04_rag_chain_registers_a_challenger_and_answers_with_sources(notebooks: NotebookRun):
    from ragops.models.registry import alias_version, versions_frame

    nb = notebooks.upto("04_rag_chain")
    settings = notebooks.settings
    frame = versions_frame(settings)
    assert len(frame) == 1 and alias_version(settings, "challenger") == "1"
    assert frame["index_snapshot"].iloc[0] == SnapshotStore(settings.index_root).current_id()
    answer_output = shown(nb, "answer")
    assert "guides/collector-setup.md" in answer_output  # the sources table
    assert "retrieve" in shown(nb) and "generate" in shown(nb)  # the span table


def test_05_evaluate_shows_metrics_with_intervals_and_a_plot(notebooks: NotebookRun):
    nb = notebooks.upto("05_evaluate")
    metrics = shown(nb, "metrics")
    assert "recall@5" in metrics and "ci_low" in metrics and "ndcg@10" in metrics
    assert "image/png" in shown_mime_types(nb)
    with open_lakehouse(notebooks.settings) as lh:
        assert len(lh.read("eval_results")) > 0


def test_06_experiments_logs_one_run_per_configuration_and_a_plot(notebooks: NotebookRun):
    import mlflow

    from ragops.tracking import configure_mlflow

    nb = notebooks.upto("06_experiments")
    configure_mlflow(notebooks.settings)
    table = shown(nb, "sweep")
    assert "vector" in table and "hybrid" in table and "ndcg@10" in table
    assert "image/png" in shown_mime_types(nb)
    runs = mlflow.search_runs(experiment_names=["ragops"], filter_string="tags.`ragops.sweep.parent_run_id` != ''")
    assert len(runs) >= 2


def test_07_gateway_answers_the_openai_sdk_and_logs_every_request_and_the_feedback(notebooks: NotebookRun):
    notebooks.upto("04_rag_chain")  # 07 serves the chain 04 registered (@challenger)
    nb = notebooks.execute("07_gateway")

    assert "chatcmpl-" in shown(nb, "answer") and "model_version" in shown(nb, "answer")
    assert "chunks, usage" in shown(nb, "stream")
    assert 'ragops_gateway_requests_total{route="rag_chain",status="200",target="served"} 2.0' in shown(nb, "metrics")
    with open_lakehouse(notebooks.settings) as lh:
        log = lh.read("inference_log", ["request_id", "key_name", "status", "http_status"])
        feedback = lh.read("feedback", ["request_id", "key_name", "rating"])
    served = log[log["key_name"] == "notebook"]
    assert list(served["status"]) == ["ok", "ok"] and (log["http_status"] == 401).sum() == 1
    assert feedback.to_dict("records") == [{"request_id": feedback["request_id"][0], "key_name": "notebook",
                                            "rating": -1}]
    assert feedback["request_id"][0] in set(served["request_id"])
    assert "notebook" in shown(nb, "inference_log") and "missing the HTTP port" in shown(nb, "feedback_rows")


def test_08_monitoring_turns_the_gateway_traffic_into_metrics_alerts_and_a_dashboard(notebooks: NotebookRun):
    notebooks.upto("04_rag_chain")
    with open_lakehouse(notebooks.settings) as lh:
        served = lh.exists("inference_log") and not lh.read("inference_log", ["request_id"]).empty
    if not served:  # 07's requests and its down-vote are the traffic this notebook watches
        notebooks.execute("07_gateway")
    nb = notebooks.execute("08_monitoring")

    assert "monitor run" in shown(nb, "run") and "window(s) recomputed" in shown(nb, "run")
    svgs = [m for c in nb.cells if "traffic" in c.metadata.get("tags", []) for out in c.get("outputs", [])
            for m in out.get("data", {}) if m == "image/svg+xml"]
    assert len(svgs) >= 3, "the traffic plots should render inline"
    with open_lakehouse(notebooks.settings) as lh:
        metrics = lh.read("monitoring_metrics", ["route", "metric", "value"])
        candidates = lh.read("eval_sets", ["eval_set", "origin", "tags"])
    served_metrics = metrics[metrics["route"] == "rag_chain"]
    assert {"requests", "latency_p95_ms", "feedback_count"} <= set(served_metrics["metric"])
    assert served_metrics[served_metrics["metric"] == "requests"]["value"].sum() >= 2
    pending = candidates[candidates["eval_set"] == "feedback_candidates"]
    assert len(pending) >= 1 and set(pending["origin"]) == {"feedback"}  # 07's down-vote, back to evaluation
    assert shown(nb, "dashboard").strip().strip("'").endswith("monitor.html")


def test_09_finetune_trains_registers_and_compares_the_answers(notebooks: NotebookRun):
    notebooks.upto("03_index_sync")  # an index to retrieve the training contexts from
    nb = notebooks.execute("09_finetune")

    assert "train" in shown(nb, "datasets") and "dont_know" in shown(nb, "kinds")
    assert "tokens_per_s" in shown(nb, "trainers")
    assert "image/png" in {m for c in nb.cells if "loss" in c.metadata.get("tags", [])
                           for out in c.get("outputs", []) for m in out.get("data", {})}
    assert "models:/rag_llm/1" in shown(nb, "lineage") and "dataset_build_id" in shown(nb, "lineage")
    compare = shown(nb, "compare")
    assert "SmolLM2-135M-Instruct" in compare and "models:/rag_llm/1" in compare
