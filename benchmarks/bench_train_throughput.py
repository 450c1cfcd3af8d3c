"""Training-throughput benchmark (issue 13): ragops' SFT fine-tune vs a plain TRL ``SFTTrainer``, back to back.

    .venv/bin/python benchmarks/bench_train_throughput.py [--steps 60] [--rows 2000] [--only a|b] [--out DIR]
    .venv/bin/python benchmarks/bench_train_throughput.py --steps 2 --rows 16 --max-length 512   # CPU smoke

1. Rows: ``--rows`` SQuAD v1.1 dev questions (seeded shuffle) as TRL conversational prompt-completion rows:
   system = ``rag_answer_concise``'s system prompt (read from ``src/ragops/chain/prompts.py`` without
   importing the chain), user = its template filled with a ``format_context``-style context (``[i] title``
   + paragraph: the gold paragraph and ``--context-paragraphs - 1`` other paragraphs of the same article,
   in a seeded order), completion = the first gold answer. No index is needed.
2. Model: ``--model`` (a packaged name for ``resolve_llm_path`` or a transformers folder). A folder with
   no weights (``--export-skeleton`` writes one: config + tokenizer, a few MiB, small enough to carry
   to a machine that lacks the weights) gets seeded random weights: throughput, memory and MFU depend
   only on the shapes; the loss curve is then not a fine-tuning curve (the JSON says ``random-init``).
3. Run A, ``plain_trl``: ``SFTTrainer`` + ``SFTConfig`` at TRL's defaults except what the comparison
   fixes: fp32 (``bf16=False``: TRL defaults to bf16), ``packing=False`` (the default), ``max_length``,
   ``max_steps``, ``per_device_train_batch_size`` (8, TRL's default), no saving / reporting, a log line
   each step. TRL's gradient checkpointing (on by default) and learning rate (2e-5) stay. The model is
   loaded in fp32 with transformers' default attention (SDPA) and gets the same LoRA adapter as
   ragops (r=16, alpha=32, dropout 0.05, all attention and MLP projections): the differences are
   precision, packing, checkpointing and batch geometry.
4. Run B, ``ragops``: ``ragops.finetune.train.train_sft`` with ``choose_device`` (bf16, packed
   padding-free batches, no checkpointing, automatic batch x accumulation on a GPU).
5. Both are measured by the same callback (ragops' ``MetricsCallback``, wrapped here to keep each
   step's time and token count): tokens = TRL's ``num_tokens`` (non-pad tokens fed to the model),
   time = inside optimizer steps (``on_step_begin`` → ``on_step_end``, CUDA-synchronised), peak memory
   = ``torch.cuda.max_memory_allocated`` (reset before each run) or the process's peak RSS on the CPU
   (cumulative there: run B's includes run A's). ``tokens_per_s`` counts every step;
   ``steady_tokens_per_s`` leaves out the first ``--warmup-steps``.
6. MFU = 6 x N x tokens/s / ``--peak-tflops`` (989: H200 dense bf16), N = the base model's parameters
   (tied embeddings once). Both runs against the same bf16 peak, the fp32 baseline too. 6N counts model
   FLOPs only: no attention term, no checkpointing recompute, and LoRA's frozen weights need no weight
   gradients, so the hardware does less than 6N per token.
7. ``--time-limit`` (480 s from start): a step that would end past its run's deadline is not started
   (run A gets half of what is left when it starts); the JSON reports the steps actually run.

Results: ``benchmarks/results/bench_train_throughput.json`` (and ``--out DIR``/bench_train_throughput.json).
"""

from __future__ import annotations

import argparse
import ast
import gc
import importlib.util
import json
import logging
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

T0 = time.perf_counter()
BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
if importlib.util.find_spec("ragops") is None:  # a machine without the project's venv: the source tree
    sys.path.insert(1, str(REPO_ROOT / "src"))
from _common import loadavg, machine_info, now_iso, write_result  # noqa: E402

NAME = "bench_train_throughput"
DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SQUAD_REL = Path("squad_v1.1") / "dev-v1.1.json"
PROMPT_NAME = "rag_answer_concise"
#: rag_answer_concise as in src/ragops/chain/prompts.py, when that file cannot be read
FALLBACK_PROMPT = (
    "Answer in one sentence from the context passages only, citing them like [1]. "
    "If they do not contain the answer, reply \"I don't know\".",
    "{{context}}\n\nQ: {{question}}\nA:",
)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
CURVE_HEAD = CURVE_TAIL = 5

log = logging.getLogger(NAME)


# --- rows --------------------------------------------------------------------------------------


def concise_prompt() -> tuple[tuple[str, str], str]:
    """(system, user template) of ``rag_answer_concise``, read from prompts.py with ``ast`` (importing
    ``ragops.chain`` pulls in LangChain, FAISS and more), and where it came from."""
    src = REPO_ROOT / "src" / "ragops" / "chain" / "prompts.py"
    try:
        for node in ast.parse(src.read_text(encoding="utf-8")).body:
            target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
            if isinstance(target, ast.Name) and target.id == "DEFAULT_PROMPTS" and node.value is not None:
                messages = {m["role"]: m["content"] for m in ast.literal_eval(node.value)[PROMPT_NAME]}
                return (messages["system"], messages["user"]), str(src.relative_to(REPO_ROOT))
    except (OSError, SyntaxError, ValueError, KeyError, TypeError):
        pass
    return FALLBACK_PROMPT, "fallback copy"


def find_squad(arg: str | None) -> Path:
    candidates = [Path(arg)] if arg else [DATASETS / SQUAD_REL, REPO_ROOT / "shared" / "datasets" / SQUAD_REL]
    for path in candidates:
        if path.is_file():
            return path
    sys.exit(f"SQuAD v1.1 dev not found at {', '.join(map(str, candidates))}: pass --squad PATH")


def build_rows(squad: Path, n: int, context_paragraphs: int, seed: int, prompt: tuple[str, str]) -> list[dict]:
    system, user_template = prompt
    items = []
    for article in json.loads(squad.read_text(encoding="utf-8"))["data"]:
        title = article["title"].replace("_", " ")
        paragraphs = [p["context"].strip() for p in article["paragraphs"]]
        for pi, para in enumerate(article["paragraphs"]):
            items.extend((title, paragraphs, pi, qa) for qa in para["qas"] if qa.get("answers"))
    rng = random.Random(seed)
    rng.shuffle(items)
    rows = []
    for title, paragraphs, pi, qa in items[:n]:
        others = [j for j in range(len(paragraphs)) if j != pi]
        picked = rng.sample(others, min(max(0, context_paragraphs - 1), len(others))) + [pi]
        rng.shuffle(picked)
        context = "\n\n".join(f"[{i}] {title}\n{paragraphs[j]}" for i, j in enumerate(picked, start=1))
        user = user_template.replace("{{context}}", context).replace("{{question}}", qa["question"].strip())
        rows.append({"prompt": [{"role": "system", "content": system}, {"role": "user", "content": user}],
                     "completion": [{"role": "assistant", "content": qa["answers"][0]["text"].strip()}]})
    return rows


def row_lengths(tokenizer, rows: list[dict], max_length: int) -> dict:
    lengths = [len(tokenizer(tokenizer.apply_chat_template(r["prompt"] + r["completion"], tokenize=False),
                             add_special_tokens=False).input_ids) for r in rows]
    return {"mean_tokens": round(statistics.fmean(lengths), 1), "median_tokens": statistics.median(lengths),
            "max_tokens": max(lengths), "total_tokens": sum(lengths),
            "longer_than_max_length": sum(n > max_length for n in lengths)}


# --- model -------------------------------------------------------------------------------------


def has_weights(folder: Path) -> bool:
    return any(p.name.endswith(WEIGHT_SUFFIXES) for p in folder.iterdir())


def model_folder(name: str) -> Path:
    path = Path(name).expanduser()
    if path.is_dir() and (path / "config.json").exists():
        return path
    from ragops.weights.llm import resolve_llm_path

    return resolve_llm_path(name)


def export_skeleton(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for p in source.iterdir():
        if p.is_file() and not p.name.endswith(WEIGHT_SUFFIXES):
            shutil.copy2(p, target / p.name)
    print(f"wrote {target} (config and tokenizer of {source}, no weights: "
          f"{sum(p.stat().st_size for p in target.iterdir()) / 2**20:.1f} MiB)")


def prepare_model(source: Path, work: Path, seed: int) -> tuple[Path, str]:
    """A folder both trainers can load: ``source`` itself, or a copy with seeded random fp32 weights."""
    if has_weights(source):
        return source, "pretrained"
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    target = work / "random-init"
    shutil.copytree(source, target)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(source)), dtype=torch.float32)
    model.save_pretrained(str(target))
    del model
    return target, "random-init"


def count_params(folder: Path) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(folder)))
    return sum(p.numel() for p in model.parameters())  # parameters() yields tied weights once


# --- measurement -------------------------------------------------------------------------------


class Deadline:
    """The wall-clock time (perf_counter) after which the current run starts no new step; None: no limit."""

    at: float | None = None


#: every TimedCallback made, newest last (train_sft builds its own: this is how its instance is found)
CALLBACKS: list = []
_ORIGINAL_METRICS_CALLBACK = None


def timed_callback(kind: str):
    """ragops' MetricsCallback (what train_sft reports from) plus each step's seconds and token count,
    and the deadline: no step is begun that would, at the slowest recent pace, end after it."""
    from ragops.finetune import train as train_mod

    make = _ORIGINAL_METRICS_CALLBACK or train_mod._metrics_callback
    base_cls = type(make("sft", kind))

    class TimedCallback(base_cls):
        def __init__(self) -> None:
            super().__init__()
            self.step_s: list[float] = []
            self.tokens_at: dict[int, int] = {0: 0}  # global step -> TRL's cumulative num_tokens
            self.stopped_early = False
            CALLBACKS.append(self)

        def on_step_end(self, args, state, control, **kwargs):
            started = self._step_started
            super().on_step_end(args, state, control, **kwargs)
            if started is None:
                return
            self.step_s.append(time.perf_counter() - started)
            pace = max(self.step_s[-3:])
            if Deadline.at is not None and state.global_step < state.max_steps \
                    and time.perf_counter() + pace > Deadline.at:
                control.should_training_stop = True
                self.stopped_early = True

        def on_log(self, args, state, control, logs=None, **kwargs):
            super().on_log(args, state, control, logs=logs, **kwargs)
            if logs and "num_tokens" in logs:
                self.tokens_at[state.global_step] = int(logs["num_tokens"])

    return TimedCallback()


def install_timed_callback() -> None:
    """train_sft builds its MetricsCallback through ``ragops.finetune.train._metrics_callback``: swap in
    the timed subclass (benchmark only; src/ is unchanged)."""
    global _ORIGINAL_METRICS_CALLBACK
    from ragops.finetune import train as train_mod

    if _ORIGINAL_METRICS_CALLBACK is None:
        _ORIGINAL_METRICS_CALLBACK = train_mod._metrics_callback
    train_mod._metrics_callback = lambda method, kind: timed_callback(kind)


def summarize(callback, warmup: int, n_params: int, peak_tflops: float) -> dict:
    steps = len(callback.step_s)
    tokens = callback.train_tokens
    out = {"steps": steps, "train_tokens": tokens, "train_s": round(callback.train_s, 3),
           "tokens_per_s": round(tokens / callback.train_s, 1) if callback.train_s > 0 else None,
           "step_s_median": round(statistics.median(callback.step_s), 4) if steps else None,
           "first_step_s": round(callback.step_s[0], 4) if steps else None,
           "stopped_by_time_limit": callback.stopped_early}
    steady = None
    if steps > warmup and warmup in callback.tokens_at and steps in callback.tokens_at:
        steady_s = sum(callback.step_s[warmup:])
        steady = (callback.tokens_at[steps] - callback.tokens_at[warmup]) / steady_s if steady_s > 0 else None
    out["steady_tokens_per_s"] = round(steady, 1) if steady else None
    out["steady_warmup_steps"] = warmup
    for key in ("tokens_per_s", "steady_tokens_per_s"):
        value = out[key]
        out[key.replace("tokens_per_s", "mfu")] = round(6 * n_params * value / (peak_tflops * 1e12), 5) \
            if value else None
    curve = [{"step": p["step"], "loss": round(p["loss"], 4)} for p in callback.loss_curve if "loss" in p]
    out["loss_first"] = curve[0]["loss"] if curve else None
    out["loss_last"] = curve[-1]["loss"] if curve else None
    out["loss_curve"] = curve
    return out


def peak_memory_mb(kind: str) -> float:
    from ragops.finetune.train import _peak_memory_mb

    return round(_peak_memory_mb(kind), 1)


def free_memory(kind: str) -> None:
    gc.collect()
    if kind == "cuda":
        import torch

        torch.cuda.empty_cache()


# --- the two runs ------------------------------------------------------------------------------


def run_plain(base: Path, rows: list[dict], args, work: Path, kind: str, n_params: int) -> dict:
    import torch
    import transformers
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from ragops.config import FinetuneConfig
    from ragops.finetune import train as train_mod

    started = time.perf_counter()
    transformers.set_seed(args.seed)
    if kind == "cuda":
        torch.cuda.reset_peak_memory_stats()
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    kwargs = dict(output_dir=str(work / "plain"), max_steps=args.steps, per_device_train_batch_size=args.plain_batch,
                  bf16=False, fp16=False, packing=False, max_length=args.max_length, logging_steps=1,
                  report_to="none", save_strategy="no", seed=args.seed, disable_tqdm=True)
    if args.plain_checkpointing == "off":
        kwargs[train_mod._checkpointing_arg()] = False
    config = SFTConfig(**kwargs)
    callback = timed_callback(kind)
    with train_mod._library_deprecations_ignored():
        trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                             peft_config=train_mod._lora(FinetuneConfig(seed=args.seed)), callbacks=[callback])
    trainer.remove_callback(PrinterCallback)
    checkpointing = bool(getattr(config, train_mod._checkpointing_arg()))
    log.info("run A (plain TRL): batch %d, fp32, no packing, checkpointing %s, lr %g, %d steps", args.plain_batch,
             checkpointing, config.learning_rate, args.steps)
    with train_mod._library_deprecations_ignored():
        trainer.train()
    out = summarize(callback, args.warmup_steps, n_params, args.peak_tflops)
    out.update(peak_memory_mb=peak_memory_mb(kind), wall_s=round(time.perf_counter() - started, 3),
               batch=args.plain_batch, grad_accum=config.gradient_accumulation_steps, packing=False,
               dtype="float32", gradient_checkpointing=checkpointing, learning_rate=config.learning_rate,
               max_steps=args.steps, attn_implementation=getattr(model.config, "_attn_implementation", None))
    del trainer, model, callback
    free_memory(kind)
    return out


def run_ragops(base: Path, rows: list[dict], args, work: Path, kind: str, n_params: int) -> dict:
    from ragops.config import FinetuneConfig
    from ragops.finetune.device import choose_device
    from ragops.finetune.train import train_sft

    cfg = FinetuneConfig(max_steps=args.steps, max_length=args.max_length, batch_size=args.ours_batch,
                         grad_accum=args.ours_grad_accum, seed=args.seed)
    device = choose_device(cfg)
    log.info("run B (ragops train_sft): %s", device.to_dict())
    install_timed_callback()
    result = train_sft(base, rows, [], cfg, work / "ragops", device=device)
    callback = CALLBACKS[-1]  # the instance train_sft made
    out = summarize(callback, args.warmup_steps, n_params, args.peak_tflops)
    m = result.metrics
    out.update(peak_memory_mb=m["peak_memory_mb"], wall_s=m["wall_s"], batch=device.batch_size,
               grad_accum=device.grad_accum, packing=device.packing, dtype="bfloat16" if device.bf16 else "float32",
               gradient_checkpointing=False, learning_rate=cfg.learning_rate, max_steps=args.steps,
               attn_implementation=device.attn_implementation, device=device.to_dict(),
               use_liger_kernel=kind == "cuda" and importlib.util.find_spec("liger_kernel") is not None,
               train_sft_metrics={k: m[k] for k in ("tokens_per_s", "train_tokens", "train_s", "steps", "train_loss",
                                                     "final_loss", "truncated_rows") if k in m})
    del result
    free_memory(kind)
    return out


# --- report ------------------------------------------------------------------------------------


def table(runs: dict) -> str:
    cols = [("steps", "steps"), ("batch", "batch"), ("grad_accum", "accum"), ("dtype", "dtype"),
            ("packing", "packed"), ("train_tokens", "tokens"), ("train_s", "train s"), ("tokens_per_s", "tok/s"),
            ("steady_tokens_per_s", "steady tok/s"), ("mfu", "MFU"), ("peak_memory_mb", "peak MiB"),
            ("wall_s", "wall s"), ("loss_first", "loss first"), ("loss_last", "loss last")]
    lines = ["| run | " + " | ".join(h for _, h in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, run in runs.items():
        cells = []
        for key, _ in cols:
            v = run.get(key)
            cells.append(f"{v:.2%}" if key == "mfu" and v is not None else str(v))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def versions() -> dict:
    out = {}
    for mod in ("torch", "transformers", "trl", "peft", "accelerate", "datasets"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            out[mod] = None
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=60, help="optimizer steps per run")
    p.add_argument("--rows", type=int, default=2000)
    p.add_argument("--only", choices=("a", "b"), help="a = plain TRL only, b = ragops only")
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--context-paragraphs", type=int, default=3, help="gold paragraph + others of its article")
    p.add_argument("--squad", help="SQuAD v1.1 dev json (default: ../shared/datasets/squad_v1.1/dev-v1.1.json)")
    p.add_argument("--model", default="SmolLM2-135M-Instruct",
                   help="packaged name or transformers folder (no weights in it: seeded random init)")
    p.add_argument("--export-skeleton", metavar="DIR", help="write --model's config + tokenizer (no weights) and exit")
    p.add_argument("--plain-batch", type=int, default=8, help="run A's per_device_train_batch_size (TRL default 8)")
    p.add_argument("--plain-checkpointing", choices=("default", "off"), default="default",
                   help="run A's gradient checkpointing: TRL's default (on) or off")
    p.add_argument("--ours-batch", type=int, default=0, help="run B's finetune_batch_size (0 = choose_device's)")
    p.add_argument("--ours-grad-accum", type=int, default=0, help="run B's finetune_grad_accum (0 = automatic)")
    p.add_argument("--warmup-steps", type=int, default=3, help="steps left out of steady_tokens_per_s")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="peak for MFU (989: H200 dense bf16)")
    p.add_argument("--time-limit", type=float, default=480.0, help="seconds from start for the whole script")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="also write the JSON into this folder (the GPU machine: $OUT)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    if args.export_skeleton:
        export_skeleton(model_folder(args.model), Path(args.export_skeleton))
        return {}

    import torch

    from ragops.finetune.train import _quiet_hf

    _quiet_hf()
    kind = "cuda" if torch.cuda.is_available() else "cpu"
    deadline = T0 + args.time_limit - 20  # the report and the clean-up
    work = Path(tempfile.mkdtemp(prefix="bench-train-throughput-"))
    try:
        squad = find_squad(args.squad)
        prompt, prompt_source = concise_prompt()
        rows = build_rows(squad, args.rows, args.context_paragraphs, args.seed, prompt)
        source = model_folder(args.model)
        base, weights = prepare_model(source, work, args.seed)
        n_params = count_params(base)
        from transformers import AutoTokenizer

        lengths = row_lengths(AutoTokenizer.from_pretrained(str(base)), rows, args.max_length)
        log.info("%d rows (%s), model %s (%s, %.1fM parameters), %s", len(rows), lengths, source, weights,
                 n_params / 1e6, kind)

        runs: dict[str, dict] = {}
        if args.only != "b":
            Deadline.at = time.perf_counter() + (deadline - time.perf_counter()) * (0.5 if args.only is None else 1.0)
            runs["plain_trl"] = run_plain(base, rows, args, work, kind, n_params)
        if args.only != "a":
            Deadline.at = deadline
            runs["ragops"] = run_ragops(base, rows, args, work, kind, n_params)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    a, b = runs.get("plain_trl", {}), runs.get("ragops", {})
    ratio = {key: round(b[key] / a[key], 3) if a.get(key) and b.get(key) else None
             for key in ("tokens_per_s", "steady_tokens_per_s")}
    result = {
        "benchmark": NAME, "date": now_iso(), "argv": sys.argv[1:] if argv is None else list(argv),
        "machine": machine_info(), "loadavg": loadavg(),
        "gpu": torch.cuda.get_device_name(0) if kind == "cuda" else None, "device_kind": kind,
        "versions": versions(),
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32) if kind == "cuda" else None,
        "model": {"source": str(source), "weights": weights, "n_params": n_params},
        "rows": {"n": len(rows), "source": str(squad), "context_paragraphs": args.context_paragraphs,
                 "prompt": f"{PROMPT_NAME} ({prompt_source})", "max_length": args.max_length, **lengths},
        "peak_tflops": args.peak_tflops,
        "mfu_note": "6 x n_params x tokens/s / peak_tflops, both runs against the same bf16 peak (also the fp32 "
                    "baseline); model FLOPs only (no attention, recompute or LoRA savings counted)",
        "baseline": "trl.SFTTrainer + SFTConfig defaults except bf16=False (fp32), packing=False, max_length, "
                    "max_steps, logging_steps=1, report_to=none, save_strategy=no; fp32 model, TRL's default "
                    "gradient checkpointing and lr; the same LoRA peft_config as ragops (r=16, alpha=32, dropout "
                    "0.05, q/k/v/o/gate/up/down_proj)",
        "runs": runs,
        "ratio_b_over_a": ratio, "target_ratio": 2.0,
        "meets_target": ratio["tokens_per_s"] >= 2.0 if ratio["tokens_per_s"] is not None else None,
        "total_wall_s": round(time.perf_counter() - T0, 1),
    }
    write_result(NAME, result)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{NAME}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print()
    print(table(runs))
    for name, run in runs.items():
        curve = run["loss_curve"]
        shown = curve if len(curve) <= CURVE_HEAD + CURVE_TAIL else curve[:CURVE_HEAD] + curve[-CURVE_TAIL:]
        print(f"{name} loss: " + ", ".join(f"{p['step']}:{p['loss']:.3f}" for p in shown))
    print(f"ratio B/A tokens/s: {ratio['tokens_per_s']} (steady {ratio['steady_tokens_per_s']}); target 2.0; "
          f"total {result['total_wall_s']}s")
    return result


if __name__ == "__main__":
    main()
