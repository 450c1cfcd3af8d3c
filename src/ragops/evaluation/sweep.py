"""Experiment sweep: chunking strategy × chunk size (× embedding model) × search mode × k × prompt.

Every index configuration gets its own lakehouse and index under ``<root>/sweep/<config>/``,
built incrementally — re-running a sweep re-embeds nothing that is already embedded. Every
chain configuration is one nested MLflow run in the target's experiment (params, metrics with
intervals, the index manifest), under a parent run that holds the comparison table and plot.
Prompt variants only change answers, so a retrieval-only sweep collapses that axis.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from ragops.config import CHUNK_STRATEGIES, SEARCH_MODES, EvaluationConfig, Settings
from ragops.evaluation.base import evaluate
from ragops.evaluation.entities import EvalTarget, options_record
from ragops.evaluation.eval_sets import read_eval_set
from ragops.lakehouse import Lakehouse

log = logging.getLogger(__name__)


def _split(value: Any, cast=str) -> tuple:
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return tuple(cast(str(x).strip()) for x in items if str(x).strip())


@dataclass(frozen=True)
class SweepGrid:
    chunk_strategies: tuple[str, ...] = ("recursive",)
    chunk_sizes: tuple[int, ...] = (200,)
    embedding_models: tuple[str, ...] = ("all-MiniLM-L6-v2",)
    search_modes: tuple[str, ...] = SEARCH_MODES
    ks: tuple[int, ...] = (4,)
    prompts: tuple[str, ...] = ("rag_answer",)
    metric: str = "ndcg@10"  # what "best" means

    def __post_init__(self) -> None:
        bad = [s for s in self.chunk_strategies if s not in CHUNK_STRATEGIES]
        if bad:
            raise ValueError(f"sweep chunk strategies {bad} are not among {', '.join(CHUNK_STRATEGIES)}")
        bad = [m for m in self.search_modes if m not in SEARCH_MODES]
        if bad:
            raise ValueError(f"sweep search modes {bad} are not among {', '.join(SEARCH_MODES)}")
        if not all(self.chunk_sizes) or not all(self.ks) or min(self.chunk_sizes + self.ks) < 1:
            raise ValueError("sweep chunk sizes and ks must be positive integers")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> SweepGrid:
        """``sweep_chunk_strategies=recursive,markdown`` style job parameters (comma lists)."""
        d: dict[str, Any] = {}
        casts = {"chunk_sizes": int, "ks": int}
        for name in ("chunk_strategies", "chunk_sizes", "embedding_models", "search_modes", "ks", "prompts"):
            value = params.get(f"sweep_{name}")
            if value not in (None, ""):
                d[name] = _split(value, casts.get(name, str))
        if params.get("sweep_metric"):
            d["metric"] = str(params["sweep_metric"])
        return cls(**d)

    def index_configs(self) -> list[tuple[str, int, str]]:
        return list(itertools.product(self.chunk_strategies, self.chunk_sizes, self.embedding_models))

    def chain_configs(self, answers: bool) -> list[tuple[str, int, str]]:
        prompts = self.prompts if answers else self.prompts[:1]
        return list(itertools.product(self.search_modes, self.ks, prompts))

    @property
    def size(self) -> int:
        return len(self.index_configs()) * len(self.chain_configs(True))


@dataclass
class SweepResult:
    parent_run_id: str
    table: pd.DataFrame  # one row per configuration: params, metric means and intervals, run_id
    best: dict[str, Any]
    plot: Path | None

    def to_dict(self) -> dict[str, Any]:
        return {"parent_run_id": self.parent_run_id, "configurations": len(self.table), "best": self.best,
                "plot": str(self.plot) if self.plot else None}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def index_settings(settings: Settings, strategy: str, size: int, embedding_model: str) -> Settings:
    """The settings of one index configuration: its own root, the same tracking store."""
    root = settings.root / "sweep" / f"{strategy}-{size}-{_slug(embedding_model)}"
    return replace(
        settings, root=root, mlflow_tracking_uri=settings.tracking_uri,
        chunking=replace(settings.chunking, strategy=strategy, chunk_size=size,
                         chunk_overlap=min(settings.chunking.chunk_overlap, size // 4)),
        embedding=replace(settings.embedding, model=embedding_model))


def run_sweep(settings: Settings, lh: Lakehouse, grid: SweepGrid, *, eval_set: str = "sample",
              options: EvaluationConfig | None = None) -> SweepResult:
    import mlflow

    from ragops.chain.prompts import ensure_prompts, resolve_prompt
    from ragops.chain.rag import RagChain
    from ragops.evaluation.report import format_table
    from ragops.index.build import build_index
    from ragops.index.search import Searcher
    from ragops.llm import get_chat_model
    from ragops.tracking import configure_mlflow

    options = options or EvaluationConfig()
    es = read_eval_set(lh, eval_set)
    configure_mlflow(settings)
    ensure_prompts(settings.chain.prompt_alias)
    prompts = {p: resolve_prompt(p, settings.chain.prompt_alias) for p in grid.prompts}
    llm = get_chat_model(settings.llm) if options.answers else None
    rows = []
    with mlflow.start_run(run_name=f"sweep on {es.name}@v{es.version}") as parent:
        mlflow.set_tags({"ragops.kind": "sweep", "ragops.eval.eval_set": es.name,
                         "ragops.eval.eval_set_version": str(es.version)})
        mlflow.log_params({f"grid_{k}": ",".join(map(str, v)) if isinstance(v, tuple) else v
                           for k, v in asdict(grid).items()})
        mlflow.log_params({"eval_options": str(options_record(options)), "configurations": grid.size if options.answers
                           else len(grid.index_configs()) * len(grid.chain_configs(False))})
        for strategy, size, emb in grid.index_configs():
            child = index_settings(settings, strategy, size, emb)
            log.info("sweep: index %s/%s/%s under %s", strategy, size, emb, child.root)
            build_index(child)
            searcher = Searcher.open(child)
            for mode, k, prompt in grid.chain_configs(options.answers):
                chain_cfg = replace(settings.chain, search_mode=mode, k=k, prompt_name=prompt)
                chain = RagChain(searcher, llm, prompts[prompt], chain_cfg,
                                 lineage={"chunk_strategy": strategy, "chunk_size": size, "embedding_model": emb})
                params = {"chunk_strategy": strategy, "chunk_size": size, "embedding_model": emb,
                          "search_mode": mode, "k": k, "prompt": prompt}
                result = evaluate(settings, lh, EvalTarget(chain), es, options=options, nested=True,
                                  run_name=f"{strategy}/{size}/{mode}/k{k}/{prompt}",
                                  extra_params={kk: v for kk, v in params.items() if kk not in ("search_mode", "k")},
                                  extra_tags={"ragops.sweep.parent_run_id": parent.info.run_id})
                row = {**params, "chunks": len(searcher._rows), "index_snapshot": searcher.manifest.snapshot_id,
                       "index_source_version": searcher.manifest.source_version, "run_id": result.run_id}
                for name, s in result.summaries.items():
                    row[name] = s.mean
                    row[f"{name}_ci"] = None if s.ci_low is None else f"[{s.ci_low:.3f}, {s.ci_high:.3f}]"
                rows.append(row)
        table = pd.DataFrame(rows)
        metric = grid.metric if grid.metric in table.columns else next(
            c for c in table.columns if "@" in c and not c.endswith("_ci"))
        table = table.sort_values(metric, ascending=False, na_position="last").reset_index(drop=True)
        best = {k: (v.item() if hasattr(v, "item") else v) for k, v in table.iloc[0].items()
                if not str(k).endswith("_ci")}
        mlflow.log_params({f"best_{k}": best[k] for k in ("chunk_strategy", "chunk_size", "embedding_model",
                                                          "search_mode", "k", "prompt")})
        mlflow.log_metric(f"best_{metric.replace('@', '_at_')}", float(best[metric]))
        mlflow.log_table(table, "sweep_results.json")
        out_dir = settings.root / "reports" / f"sweep-{parent.info.run_id[:8]}"
        out_dir.mkdir(parents=True, exist_ok=True)
        table.to_csv(out_dir / "sweep_results.csv", index=False)
        shown = [c for c in ("chunk_strategy", "chunk_size", "search_mode", "k", "prompt", metric) if c in table]
        (out_dir / "sweep_results.txt").write_text(format_table(table[shown]) + "\n")
        plot = plot_sweep(table, metric, out_dir / "sweep.png")
        mlflow.log_artifacts(str(out_dir), artifact_path="sweep")
    log.info("sweep: %d configurations; best %s=%.4f with %s", len(table), metric, best[metric],
             {k: best[k] for k in ("chunk_strategy", "chunk_size", "search_mode", "k", "prompt")})
    return SweepResult(parent.info.run_id, table, best, plot)


def plot_sweep(table: pd.DataFrame, metric: str, path: Path, top: int = 30) -> Path:
    """Horizontal bars of ``metric`` per configuration, best first, with 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = table.head(top).iloc[::-1]
    labels = [f"{r.chunk_strategy}/{r.chunk_size} {r.search_mode} k{r.k} {r.prompt}" for r in t.itertuples()]
    means = t[metric].astype(float).tolist()
    lo, hi = [], []
    for m, ci in zip(means, t.get(f"{metric}_ci", [None] * len(t)), strict=True):
        if isinstance(ci, str):
            a, b = (float(x) for x in ci.strip("[]").split(","))
            lo.append(m - a)
            hi.append(b - m)
        else:
            lo.append(0.0)
            hi.append(0.0)
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.35 * len(t) + 1)))
    ax.barh(labels, means, xerr=[lo, hi], capsize=3, color="#2f6fdf")
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"{metric} (mean, 95% bootstrap CI)")
    ax.set_title("experiment sweep")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def sweep_summary(result: SweepResult, metrics: Sequence[str] = ("ndcg@10", "recall@5", "answer_f1")) -> str:
    from ragops.evaluation.report import format_table

    cols = [c for c in ("chunk_strategy", "chunk_size", "search_mode", "k", "prompt", *metrics)
            if c in result.table.columns]
    return format_table(result.table[cols])
