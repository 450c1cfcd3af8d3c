"""Training the chain's LLM: TRL ``SFTTrainer`` / ``DPOTrainer`` with a LoRA adapter, and merging it.

- :func:`train_sft`: conversational prompt-completion rows (``{"prompt": [system, user], "completion":
  [assistant]}``); the loss is on the completion only (TRL's default for prompt-completion data).
- :func:`train_dpo`: ``{"prompt", "chosen", "rejected"}`` rows. The reference model is ``base_dir``
  itself: TRL computes it with the LoRA adapter disabled, so there is no second copy of the model.
  For ``sft+dpo``, ``base_dir`` is the merged SFT model and DPO trains a fresh adapter on it.
- :func:`merge`: base + adapter → a plain transformers folder (safetensors, tokenizer, chat template),
  what the registry stores and llama.cpp converts.

Both trainers load the model themselves (``AutoModelForCausalLM``, SDPA attention) and take their
geometry from a :class:`~ragops.finetune.device.TrainDevice` (``choose_device`` when not given): bf16
on a GPU, fp32 on the CPU; ``use_cpu=True`` and no gradient checkpointing there.

Packing (SFT on a GPU): TRL's default ``packing_strategy="bfd"`` (best-fit decreasing) is the correct
one with SDPA. It turns on padding-free batches: the rows of a micro-batch are flattened into one
row with ``position_ids`` restarting at 0 for each example and no ``attention_mask``, and
transformers (``masking_utils.find_packed_sequence_indices``, with ``use_cache=False`` as TRL sets it
for training) builds a block-diagonal causal mask from those ``position_ids``, so packed examples
never attend to each other (TRL's docs say padding-free needs FlashAttention; that predates the
mask from ``position_ids``; ``tests/finetune/test_train.py`` checks the equivalence). The
``"wrapped"`` strategy would keep a plain all-ones mask and let examples attend across their
boundaries. The price with SDPA: the mask is dense, so attention costs ``(batch x max_length)^2``
per micro-batch, which is why :func:`~ragops.finetune.device.choose_device` keeps a packed
micro-batch at 8,192 tokens or fewer. DPO never packs (TRL 1.x disabled padding-free DPO).

Metrics (:class:`TrainResult`): ``train_loss`` (mean over the run, TRL's ``training_loss``),
``final_loss`` (the last step's), ``eval_loss`` (after training, when there are validation rows;
also ``rewards/accuracies`` and ``rewards/margins`` for DPO, from that evaluation or else the last
step), ``steps``, ``train_tokens`` (non-pad tokens the trainer fed the model, TRL's ``num_tokens``;
DPO counts the prompt with both answers), ``train_s`` (time inside optimizer steps: no evaluation,
no loading), ``tokens_per_s`` (= train_tokens / train_s), ``wall_s`` (the whole call) and
``peak_memory_mb`` (``torch.cuda.max_memory_allocated`` on a GPU, else the process's peak RSS), and
``truncated_rows`` (training rows longer than ``max_length`` tokens, whose answers TRL cuts: a warning).
While an MLflow run is active, every logged step goes to it as ``<method>/<key>`` (``sft/loss``,
``dpo/rewards/margins``...), and the final metrics too. No run is started here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import math
import os
import resource
import shutil
import sys
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragops.config import FinetuneConfig
from ragops.errors import RagopsError
from ragops.finetune.device import TrainDevice, choose_device
from ragops.progress import progress_enabled

log = logging.getLogger(__name__)

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ROW_KEYS = {"sft": ("prompt", "completion"), "dpo": ("prompt", "chosen", "rejected")}
#: DPO's logged metrics that TrainResult.metrics keeps (from the final evaluation when there is one)
DPO_METRICS = ("rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected")
#: share of the total steps between evaluations while training (when there are validation rows)
EVAL_EVERY = 0.25
MERGE_DTYPES = ("float16", "bfloat16", "float32")
ADAPTER_DIR, RESULT_FILE = "adapter", "train_result.json"


def _checkpointing_arg() -> str:
    """transformers 5.2x renamed ``gradient_checkpointing`` (now a deprecated alias that warns)."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


class TrainingError(RagopsError, RuntimeError):
    """Training could not run: no rows, rows of the wrong shape, or a missing adapter."""


@dataclass
class TrainResult:
    method: str  # "sft" | "dpo"
    adapter_dir: Path  # PEFT LoRA adapter (adapter_config.json, adapter_model.safetensors) + tokenizer
    metrics: dict[str, float]
    loss_curve: list[dict] = field(default_factory=list)  # {"step", "loss"} and {"step", "eval_loss"}
    device: TrainDevice | None = None

    def to_dict(self) -> dict:
        return {"method": self.method, "adapter_dir": str(self.adapter_dir), "metrics": dict(self.metrics),
                "loss_curve": list(self.loss_curve), "device": self.device.to_dict() if self.device else None}


# --- metrics -------------------------------------------------------------------------------------


def _active_mlflow_run():
    """The active MLflow run, without importing mlflow where nothing did (then there is none)."""
    mlflow = sys.modules.get("mlflow")
    return mlflow.active_run() if mlflow is not None else None


def _peak_memory_mb(kind: str) -> float:
    if kind == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def _metrics_callback(method: str, kind: str):
    from transformers import TrainerCallback

    class MetricsCallback(TrainerCallback):
        """Loss curve, token count, time inside optimizer steps; each log line to an active MLflow run."""

        def __init__(self) -> None:
            self.loss_curve: list[dict] = []
            self.last: dict[str, float] = {}
            self.eval_metrics: dict[str, float] = {}
            self.train_tokens = 0
            self.train_s = 0.0
            self._step_started: float | None = None

        def _sync(self) -> None:
            if kind == "cuda":
                import torch

                torch.cuda.synchronize()

        def on_step_begin(self, args, state, control, **kwargs):
            self._sync()
            self._step_started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if self._step_started is not None:
                self._sync()
                self.train_s += time.perf_counter() - self._step_started
                self._step_started = None

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            self.eval_metrics = {k.removeprefix("eval_"): float(v) for k, v in (metrics or {}).items()
                                 if isinstance(v, int | float)}
            self.eval_metrics["step"] = state.global_step

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, int | float) and math.isfinite(v)}
            step = state.global_step
            if "num_tokens" in logs:
                self.train_tokens = max(self.train_tokens, int(logs["num_tokens"]))
            if "loss" in logs:
                self.loss_curve.append({"step": step, "loss": logs["loss"]})
                self.last = logs
                log.debug("%s step %d: loss %.4f", method, step, logs["loss"])
            if "eval_loss" in logs:
                self.loss_curve.append({"step": step, "eval_loss": logs["eval_loss"]})
                log.info("%s step %d: eval_loss %.4f", method, step, logs["eval_loss"])
            if _active_mlflow_run() is not None:
                import mlflow

                per_step = {f"{method}/{k}": v for k, v in logs.items()
                            if k not in {"epoch", "total_flos"} and not k.startswith("train_")
                            and not k.endswith(("_runtime", "_per_second"))}
                if per_step:
                    mlflow.log_metrics(per_step, step=step)

    return MetricsCallback()


# --- the trainers --------------------------------------------------------------------------------


def _check_rows(method: str, rows: list[dict], which: str) -> list[dict]:
    keys = ROW_KEYS[method]
    out = []
    for i, row in enumerate(rows):
        missing = [k for k in keys if not isinstance(row.get(k), list) or not row.get(k)]
        if missing:
            raise TrainingError(
                f"{which} row {i} for {method} lacks {', '.join(missing)}: {method} rows are "
                f"{{{', '.join(repr(k) for k in keys)}}} lists of {{role, content}} messages (TRL's conversational "
                "format)")
        out.append({k: row[k] for k in keys})
    return out


@contextlib.contextmanager
def _library_deprecations_ignored():
    """peft and TRL read transformers 5.2x's deprecated ``is_gradient_checkpointing`` alias on every step:
    a warning no caller can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def _too_long(tokenizer, method: str, rows: list[dict], max_length: int) -> int:
    """Rows whose conversation is longer than ``max_length`` tokens: TRL cuts them at the end (keep_start),
    so the answer loses tokens (or all of them: no loss at all from that row)."""
    answers = ("completion",) if method == "sft" else ("chosen", "rejected")
    n = 0
    for row in rows:
        for key in answers:
            text = tokenizer.apply_chat_template(row["prompt"] + row[key], tokenize=False)
            if len(tokenizer(text, add_special_tokens=False).input_ids) > max_length:
                n += 1
                break
    return n


def _quiet_hf() -> None:
    if not progress_enabled():
        import datasets
        import transformers

        transformers.utils.logging.disable_progress_bar()
        datasets.disable_progress_bars()


def _load(base_dir: Path, device: TrainDevice):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    if tokenizer.pad_token is None:  # SmolLM2 has one (<|im_end|>, its eos); others may not
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=device.torch_dtype,
                                                 attn_implementation=device.attn_implementation)
    return model, tokenizer


def _lora(cfg: FinetuneConfig):
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(LORA_TARGETS))


def _common_args(method: str, cfg: FinetuneConfig, device: TrainDevice, work: Path, has_eval: bool,
                 learning_rate: float) -> dict[str, Any]:
    use_liger = device.kind == "cuda" and importlib.util.find_spec("liger_kernel") is not None
    checkpointing = _checkpointing_arg()
    return dict(
        output_dir=str(work), run_name=f"ragops-{method}",
        max_steps=cfg.max_steps if cfg.max_steps > 0 else -1, num_train_epochs=cfg.epochs,
        learning_rate=learning_rate, warmup_steps=0.1, lr_scheduler_type="linear",
        per_device_train_batch_size=device.batch_size, per_device_eval_batch_size=device.batch_size,
        gradient_accumulation_steps=device.grad_accum,
        bf16=device.bf16, fp16=False, use_cpu=device.kind == "cpu",
        # 135M parameters with LoRA: activations fit without recomputation (TRL's default is True)
        **{checkpointing: False},
        use_liger_kernel=use_liger,
        max_length=cfg.max_length, dataset_num_proc=None,
        logging_steps=1, report_to="none", save_strategy="no",
        eval_strategy="steps" if has_eval else "no", eval_steps=EVAL_EVERY if has_eval else None,
        seed=cfg.seed, data_seed=cfg.seed,
        disable_tqdm=not progress_enabled(), dataloader_num_workers=0,
        dataloader_pin_memory=device.kind == "cuda",
    )


def _run(method: str, base_dir: Path, train_rows: list[dict], val_rows: list[dict], cfg: FinetuneConfig,
         out_dir: Path, device: TrainDevice | None) -> TrainResult:
    started = time.perf_counter()
    if not train_rows:
        raise TrainingError(f"no training rows for {method}: build the {method} examples first "
                            f"(finetune_{method} table) or widen finetune_eval_sets / finetune_feedback")
    train_rows = _check_rows(method, train_rows, "train")
    val_rows = _check_rows(method, val_rows or [], "validation")
    base_dir, out_dir = Path(base_dir), Path(out_dir)
    device = device or choose_device(cfg)
    _quiet_hf()

    import torch
    import transformers
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback

    transformers.set_seed(cfg.seed)
    if device.kind == "cuda":
        torch.cuda.reset_peak_memory_stats()
    model, tokenizer = _load(base_dir, device)
    truncated = _too_long(tokenizer, method, train_rows, cfg.max_length)
    if truncated:
        log.warning("%s: %d of %d training rows are longer than finetune_max_length=%d tokens and lose the end of "
                    "their answer", method, truncated, len(train_rows), cfg.max_length)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / f".trainer-{uuid.uuid4().hex[:8]}"
    args = _common_args(method, cfg, device, work, bool(val_rows),
                        cfg.learning_rate if method == "sft" else cfg.dpo_learning_rate)
    train_ds = Dataset.from_list(train_rows)
    eval_ds = Dataset.from_list(val_rows) if val_rows else None
    callback = _metrics_callback(method, device.kind)
    if method == "sft":
        from trl import SFTConfig, SFTTrainer

        config = SFTConfig(**args, packing=device.packing, completion_only_loss=None)
        trainer_cls = SFTTrainer
    else:
        from trl import DPOConfig, DPOTrainer

        config = DPOConfig(**args, beta=cfg.dpo_beta)
        trainer_cls = DPOTrainer
    with _library_deprecations_ignored():
        trainer = trainer_cls(model=model, args=config, train_dataset=train_ds, eval_dataset=eval_ds,
                              processing_class=tokenizer, peft_config=_lora(cfg), callbacks=[callback])
    trainer.remove_callback(PrinterCallback)  # prints each log dict to stdout when bars are off
    log.info("%s: %d train / %d validation rows on %s (%s), batch %d x accum %d%s, %s, lr %g", method,
             len(train_rows), len(val_rows), device.name, "bf16" if device.bf16 else "fp32", device.batch_size,
             device.grad_accum, ", packed" if method == "sft" and device.packing else "",
             f"{cfg.max_steps} steps" if cfg.max_steps > 0 else f"{cfg.epochs:g} epochs", config.learning_rate)
    try:
        with _library_deprecations_ignored():
            output = trainer.train()
            if val_rows and callback.eval_metrics.get("step") != trainer.state.global_step:
                trainer.evaluate()
        adapter_dir = _save_adapter(trainer.model, tokenizer, out_dir / ADAPTER_DIR)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    metrics: dict[str, float] = {
        "train_loss": float(output.training_loss),
        "final_loss": float(callback.last.get("loss", output.training_loss)),
        "steps": float(trainer.state.global_step),
        "train_tokens": float(callback.train_tokens or trainer.state.num_input_tokens_seen or 0),
        "train_s": round(callback.train_s, 3),
        "truncated_rows": float(truncated),
    }
    metrics["tokens_per_s"] = round(metrics["train_tokens"] / callback.train_s, 1) if callback.train_s > 0 else 0.0
    if val_rows and "loss" in callback.eval_metrics:
        metrics["eval_loss"] = callback.eval_metrics["loss"]
    if method == "dpo":
        source = callback.eval_metrics if val_rows else callback.last
        metrics.update({k: float(source[k]) for k in DPO_METRICS if k in source})
    metrics["peak_memory_mb"] = round(_peak_memory_mb(device.kind), 1)
    metrics["wall_s"] = round(time.perf_counter() - started, 3)
    result = TrainResult(method=method, adapter_dir=adapter_dir, metrics=metrics, loss_curve=callback.loss_curve,
                         device=device)
    (out_dir / RESULT_FILE).write_text(json.dumps(result.to_dict(), indent=2))
    if _active_mlflow_run() is not None:
        import mlflow

        mlflow.log_metrics({f"{method}/{k}": v for k, v in metrics.items()})
    log.info("%s done: %d steps, loss %.4f (last %.4f)%s, %.0f tokens/s, %.1fs", method, metrics["steps"],
             metrics["train_loss"], metrics["final_loss"],
             f", eval_loss {metrics['eval_loss']:.4f}" if "eval_loss" in metrics else "", metrics["tokens_per_s"],
             metrics["wall_s"])
    return result


def _save_adapter(model, tokenizer, target: Path) -> Path:
    tmp = target.with_name(f".{target.name}-{uuid.uuid4().hex[:8]}")
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    _swap_into_place(tmp, target)
    return target


def _swap_into_place(tmp: Path, target: Path) -> None:
    """``os.replace`` a finished folder onto ``target``; an older ``target`` is moved aside first."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}-old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def train_sft(base_dir: Path, train_rows: list[dict], val_rows: list[dict], cfg: FinetuneConfig, out_dir: Path,
              device: TrainDevice | None = None) -> TrainResult:
    """A LoRA adapter on ``base_dir`` from prompt-completion rows; written to ``out_dir/adapter``."""
    return _run("sft", base_dir, train_rows, val_rows, cfg, out_dir, device)


def train_dpo(base_dir: Path, train_rows: list[dict], val_rows: list[dict], cfg: FinetuneConfig, out_dir: Path,
              device: TrainDevice | None = None) -> TrainResult:
    """A LoRA adapter on ``base_dir`` from preference pairs (reference: ``base_dir``, adapter disabled)."""
    return _run("dpo", base_dir, train_rows, val_rows, cfg, out_dir, device)


def merge(base_dir: Path, adapter_dir: Path, out_dir: Path, dtype: str = "float16") -> Path:
    """``base_dir`` with the LoRA adapter folded in, as a transformers folder at ``out_dir`` (atomically)."""
    if dtype not in MERGE_DTYPES:
        raise TrainingError(f"merge dtype={dtype!r}: use one of {', '.join(MERGE_DTYPES)}")
    base_dir, adapter_dir, out_dir = Path(base_dir), Path(adapter_dir), Path(out_dir)
    if not (adapter_dir / "adapter_config.json").exists():
        raise TrainingError(f"{adapter_dir} is not a PEFT adapter folder (no adapter_config.json)")
    _quiet_hf()
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    with _library_deprecations_ignored():
        merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged = merged.to(getattr(torch, dtype))
    tok_dir = adapter_dir if (adapter_dir / "tokenizer_config.json").exists() else base_dir
    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}-{uuid.uuid4().hex[:8]}")
    try:
        merged.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        _swap_into_place(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("merged %s into %s (%s) in %.1fs", adapter_dir, out_dir, dtype, time.perf_counter() - started)
    return out_dir


__all__ = ["TrainResult", "TrainingError", "merge", "train_dpo", "train_sft"]
