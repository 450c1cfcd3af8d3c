"""``finetune_job``'s one task: build the datasets, train (SFT, DPO or both), merge, register ``rag_llm``.

Everything lands in one MLflow run of the settings' experiment: parameters, the device, per-step
losses and the final metrics of each trainer (``sft/…``, ``dpo/…``), the loss curve as a plot, the
dataset build (``datasets.json``), and the registered model with its lineage: base model, dataset
build and table versions, the source eval-set and index versions, the config hash, git commit.
The job's next task (``resources/finetune_job.yml``) logs a chain that answers with the new version
(``llm_model=models:/rag_llm@candidate``) and sends it through ``evaluate_job``'s gates.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ragops
from ragops.chain import RagChain
from ragops.config import Settings, config_hash
from ragops.evaluation.eval_sets import ensure_eval_set
from ragops.finetune.datasets import DatasetBuild, build_datasets, read_dpo, read_sft
from ragops.lakehouse.base import Lakehouse
from ragops.tracking import configure_mlflow

log = logging.getLogger(__name__)

#: Validation rows the trainers score (each evaluation is a forward pass over all of them, several
#: times per run): a fixed subset keeps eval_loss comparable across runs and cheap on a CPU.
MAX_VALIDATION_ROWS = 64


@dataclass
class FinetuneRun:
    run_id: str
    method: str
    datasets: dict[str, Any]
    device: dict[str, Any]
    trainers: dict[str, dict[str, Any]]  #: method → metrics
    model: dict[str, Any]  #: the registered rag_llm version
    seconds: float
    lineage: dict[str, Any] = field(default_factory=dict)
    loss_curves: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  #: method → [{step, loss | eval_loss}]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def loss_plot(curves: dict[str, list[dict[str, Any]]]):
    """Training (and validation) loss per step, one panel per trainer: a matplotlib ``Figure``
    (built without pyplot, so it changes no global backend)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5 * max(1, len(curves)), 3.2))
    axes = fig.subplots(1, max(1, len(curves)), squeeze=False)[0]
    for ax, (method, curve) in zip(axes, curves.items(), strict=False):
        train = [(p["step"], p["loss"]) for p in curve if "loss" in p]
        val = [(p["step"], p["eval_loss"]) for p in curve if "eval_loss" in p]
        if train:
            ax.plot(*zip(*train, strict=True), label="train", lw=1.2)
        if val:
            ax.plot(*zip(*val, strict=True), "o-", label="validation", lw=1.2)
        ax.set_title(f"{method.upper()} loss")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def _train_rows(lh: Lakehouse, build: DatasetBuild, method: str) -> tuple[list[dict], list[dict]]:
    reader, version = (read_sft, build.sft_table_version) if method == "sft" else (read_dpo, build.dpo_table_version)
    return (reader(lh, build.build_id, "train", version=version),
            reader(lh, build.build_id, "validation", version=version)[:MAX_VALIDATION_ROWS])


def run_finetune(lh: Lakehouse, settings: Settings) -> FinetuneRun:
    import mlflow

    from ragops.finetune.device import choose_device
    from ragops.finetune.register import register_llm
    from ragops.finetune.train import merge, train_dpo, train_sft
    from ragops.weights.llm import resolve_llm_path

    started = time.perf_counter()
    cfg = settings.finetune
    configure_mlflow(settings)
    if settings.evaluation.eval_set in cfg.eval_set_names:
        # the gates' eval set, registered from eval_source as evaluate_job does (a new version only if changed)
        ensure_eval_set(lh, settings.evaluation)
        if not cfg.holdout_eval_set:
            log.warning("fine-tuning on eval set %r, which evaluate_job's gates score: their numbers will be "
                        "optimistic (its train split is learned); set finetune_holdout_eval_set to a set the gates "
                        "use instead", settings.evaluation.eval_set)
    chain = RagChain.from_settings(settings)
    build = build_datasets(lh, settings, chain)
    base_name = cfg.base_model or settings.llm.model
    base = resolve_llm_path(base_name)
    device = choose_device(cfg)
    methods = cfg.method.split("+")
    log.info("fine-tuning %s from %s on %s (dataset build %s)", cfg.method, base_name, device.name,
             build.build_id)
    with mlflow.start_run(run_name=f"finetune {cfg.method} {build.build_id}") as run:
        mlflow.log_params({"method": cfg.method, "base_model": base_name, "max_steps": cfg.max_steps,
                           "epochs": cfg.epochs, "learning_rate": cfg.learning_rate,
                           "dpo_learning_rate": cfg.dpo_learning_rate, "dpo_beta": cfg.dpo_beta,
                           "lora_r": cfg.lora_r, "lora_alpha": cfg.lora_alpha, "lora_dropout": cfg.lora_dropout,
                           "max_length": cfg.max_length, "seed": cfg.seed, "dataset_build_id": build.build_id,
                           **{f"device_{k}": v for k, v in device.to_dict().items()}})
        mlflow.set_tags({"ragops.kind": "finetune", **{f"ragops.{k}": str(v) for k, v in build.lineage.items()}})
        mlflow.log_dict(build.to_dict(), "datasets.json")
        work = settings.root / "finetune" / run.info.run_id
        current, adapter, trainers, curves = base, None, {}, {}
        try:
            for method in methods:
                train, val = _train_rows(lh, build, method)
                trainer = train_sft if method == "sft" else train_dpo
                result = trainer(current, train, val, cfg, work / method, device)
                trainers[method] = {"rows": len(train), "validation_rows": len(val), **result.metrics}
                curves[method] = result.loss_curve
                current, adapter = merge(current, result.adapter_dir, work / f"{method}-merged"), result.adapter_dir
            mlflow.log_figure(loss_plot(curves), "loss_curve.png")
            lineage = {
                "base_model": base_name, "method": cfg.method, **build.lineage,
                "finetune_config_hash": config_hash(cfg), "git_commit": settings.git_commit,
                "ragops_version": ragops.__version__, "device": device.name,
                **{f"{m}_{k}": v for m, metrics in trainers.items() for k, v in metrics.items()
                   if k in ("train_loss", "eval_loss", "tokens_per_s", "steps")},
            }
            registered = register_llm(settings, Path(current), adapter, lineage)
        finally:
            shutil.rmtree(work, ignore_errors=True)  # the weights now live in the registry (or nowhere)
    seconds = round(time.perf_counter() - started, 1)
    log.info("registered %s (%s) in %.0fs", registered.uri, cfg.method, seconds)
    return FinetuneRun(run.info.run_id, cfg.method, build.to_dict(), device.to_dict(), trainers,
                       registered.to_dict(), seconds, lineage, curves)
