"""Local LLM backends side by side (issue 10): load time, time to first token, decode tokens/s, peak
memory and greedy-output agreement, on the chain's real prompts.

    .venv/bin/python benchmarks/bench_llm.py [--root /tmp/ragops-bench/llm] [--questions 8] \
        [--max-new-tokens 64] [--rounds 2]

The prompts are built by the chain's own code (``RagChain.retrieve`` + ``RagChain.messages``, the
shipped ``rag_answer`` template) over the sample corpus (data/corpus) for the first answerable
eval questions. Each backend runs in its own fresh process (so load time and peak RSS are its
own), through the public chat-model interface (``get_chat_model(...).invoke``) at temperature 0:

- ``transformers``: torch fp32 on the safetensors copy of the packaged GGUF;
- ``local``: what ``llm_backend=local`` runs by default: llama.cpp on the packaged Q4_1 rewritten
  to F16 (``llm_gguf_type=f16``), decode on half the cores, the prompt on all of them;
- ``local-2threads``: the same with ``n_threads=2`` for decode too;
- ``local-q8_0``: ``llm_gguf_type=q8_0``;
- ``local-q4_1``: ``llm_gguf_type=packaged``, the shipped Q4_1 as is (the default before F16);
- ``openvino`` / ``openvino-f32``: ``llm_backend=openvino`` with ``llm_dtype`` bfloat16 (the default;
  needs AVX512-BF16 or AMX) / float32.

Rounds alternate the backend order (this 2-core box is shared; see the load averages recorded).
TTFT = prompt evaluation + first token (``response_metadata["timings"]["ttft_s"]``); decode
tokens/s = (completion tokens − 1) / (total − TTFT). Agreement with transformers: exact match of
the answer text, and token-level = common-prefix tokens / the longer answer's tokens (one
tokenizer for both).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO_ROOT, loadavg, machine_info, now_iso, settings_for, write_result  # noqa: E402

#: name → (llm_backend, llm_gguf_type or, for openvino, llm_dtype, n_threads: 0 = the backend's default)
BACKENDS = {
    "transformers": ("transformers", "f16", 0),
    "local": ("local", "f16", 0),
    "local-2threads": ("local", "f16", 2),
    "local-q8_0": ("local", "q8_0", 0),
    "local-q4_1": ("local", "packaged", 0),
    "openvino": ("openvino", "bfloat16", 0),
    "openvino-f32": ("openvino", "float32", 0),
}


def questions(n: int) -> list[str]:
    rows = [json.loads(line) for line in (REPO_ROOT / "data" / "eval" / "questions.jsonl").read_text().splitlines()
            if line]
    return [r["question"] for r in rows if r["expected_doc_ids"]][:n]


def build_prompts(root: Path, n: int) -> list[list[dict[str, str]]]:
    """The chain's messages for ``n`` questions (index built once under ``root``)."""
    from ragops.chain.prompts import DEFAULT_PROMPTS, ResolvedPrompt
    from ragops.chain.rag import RagChain
    from ragops.index.build import build_index
    from ragops.index.search import Searcher
    from ragops.llm.messages import to_dicts

    settings = settings_for(root, REPO_ROOT / "data" / "corpus")
    if not (settings.index_root / "CURRENT").exists():
        build_index(settings)
    prompt = ResolvedPrompt("rag_answer", 0, "shipped", DEFAULT_PROMPTS["rag_answer"])
    chain = RagChain(Searcher.open(settings), llm=None, prompt=prompt, config=settings.chain)  # type: ignore[arg-type]
    out = []
    for q in questions(n):
        results = chain.retrieve(q)
        if results:
            out.append(to_dicts(chain.messages(q, [], results)))
    return out


def worker(backend: str, prompts_file: Path, max_new_tokens: int, gguf_dir: Path) -> dict:
    """One backend in this (fresh) process: import, load, warm up, then every prompt. Peak RSS is
    sampled every 5 ms (``ru_maxrss`` would report the parent's high-water mark across exec)."""
    import threading

    import psutil

    proc, peak, done = psutil.Process(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    threading.Thread(target=sample, daemon=True).start()
    t0 = time.perf_counter()
    from ragops.config import LLMConfig
    from ragops.llm import get_chat_model, llm_identity
    from ragops.llm.messages import from_dicts

    name, weights, threads = BACKENDS[backend]
    config = LLMConfig(backend=name, max_new_tokens=max_new_tokens, temperature=0.0,
                       **({"dtype": weights} if name == "openvino" else {"gguf_type": weights}))
    llm = get_chat_model(config)
    if threads:
        llm.n_threads = threads
    import_s = time.perf_counter() - t0
    rss_before = psutil.Process().memory_info().rss
    t = time.perf_counter()
    llm.warm()
    load_s = time.perf_counter() - t
    rss_loaded = psutil.Process().memory_info().rss
    llm.invoke("Say hi.", max_new_tokens=4)  # warm-up (first-call allocations)
    rows = []
    for msgs in json.loads(prompts_file.read_text()):
        reply = llm.invoke(from_dicts(msgs))
        tm = reply.response_metadata["timings"]
        n_out = reply.usage_metadata["output_tokens"]
        decode_s = tm["total_s"] - tm["ttft_s"]
        rows.append({"input_tokens": reply.usage_metadata["input_tokens"], "output_tokens": n_out,
                     "ttft_s": tm["ttft_s"], "total_s": tm["total_s"], "decode_s": round(decode_s, 4),
                     "decode_tps": round((n_out - 1) / decode_s, 2) if n_out > 1 and decode_s > 0 else None,
                     "answer": str(reply.content)})
    return {"backend": backend, "identity": llm_identity(config), "import_s": round(import_s, 3),
            "load_s": round(load_s, 3), "rss_before_load_mib": round(rss_before / 2**20, 1),
            "rss_after_load_mib": round(rss_loaded / 2**20, 1),
            "peak_rss_mib": round(max(peak[0], proc.memory_info().rss) / 2**20, 1), "rows": rows,
            "threads": _torch_threads() if name == "transformers" else
            llm.loaded().compiled.get_property("INFERENCE_NUM_THREADS") if name == "openvino" else
            llm.loaded().llama.context_params.n_threads}


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def run_worker(backend: str, prompts_file: Path, args: argparse.Namespace) -> dict:
    before = loadavg()
    proc = subprocess.run([sys.executable, __file__, "--worker", backend, "--prompts-file", str(prompts_file),
                           "--max-new-tokens", str(args.max_new_tokens), "--root", str(args.root)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"worker {backend} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["load_before"], out["load_after"] = before, loadavg()
    return out


def agreement(tokenizer, ref: list[str], other: list[str]) -> dict:
    exact, prefix_share, positional = 0, [], []
    for a, b in zip(ref, other, strict=True):
        exact += a == b
        ta, tb = tokenizer.encode(a, add_special_tokens=False), tokenizer.encode(b, add_special_tokens=False)
        common = next((i for i, (x, y) in enumerate(zip(ta, tb, strict=False)) if x != y), min(len(ta), len(tb)))
        longest = max(len(ta), len(tb)) or 1
        prefix_share.append(common / longest)
        positional.append(sum(x == y for x, y in zip(ta, tb, strict=False)) / longest)
    return {"exact_match_rate": round(exact / len(ref), 3),
            "token_prefix_agreement_mean": round(statistics.mean(prefix_share), 3),
            "token_positional_agreement_mean": round(statistics.mean(positional), 3)}


def summarise(runs: list[dict]) -> dict:
    rows = [r for run in runs for r in run["rows"]]
    decode_tokens = sum(r["output_tokens"] - 1 for r in rows if r["output_tokens"] > 1)
    decode_s = sum(r["decode_s"] for r in rows if r["output_tokens"] > 1)
    return {
        "identity": runs[0]["identity"],
        "load_s_median": round(statistics.median(r["load_s"] for r in runs), 3),
        "import_s_median": round(statistics.median(r["import_s"] for r in runs), 3),
        "ttft_s_median": round(statistics.median(r["ttft_s"] for r in rows), 4),
        "ttft_s_mean": round(statistics.mean(r["ttft_s"] for r in rows), 4),
        "decode_tokens_per_s": round(decode_tokens / decode_s, 2) if decode_s else None,
        "end_to_end_tokens_per_s": round(sum(r["output_tokens"] for r in rows) / sum(r["total_s"] for r in rows), 2),
        "answer_s_mean": round(statistics.mean(r["total_s"] for r in rows), 3),
        "output_tokens_mean": round(statistics.mean(r["output_tokens"] for r in rows), 1),
        "input_tokens_mean": round(statistics.mean(r["input_tokens"] for r in rows), 1),
        "peak_rss_mib_max": max(r["peak_rss_mib"] for r in runs),
        "rss_load_delta_mib_median": round(statistics.median(r["rss_after_load_mib"] - r["rss_before_load_mib"]
                                                             for r in runs), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=Path("/tmp/ragops-bench/llm"))
    ap.add_argument("--questions", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--backends", default=",".join(BACKENDS),
                    help="comma-separated subset (transformers is always run: the ratios are against it)")
    ap.add_argument("--out", type=Path, default=None,
                    help="result file (default benchmarks/results/bench_llm.json), e.g. one per machine")
    ap.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    ap.add_argument("--prompts-file", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.prompts_file, args.max_new_tokens, args.root)))
        return

    from transformers import AutoTokenizer

    from ragops.weights.llm import DEFAULT_LLM, resolve_gguf_path, resolve_llm_path

    result = {"benchmark": "bench_llm", "date": now_iso(), "argv": sys.argv, "load_before": loadavg(),
              "machine": machine_info(), "max_new_tokens": args.max_new_tokens, "rounds": args.rounds}
    args.root.mkdir(parents=True, exist_ok=True)
    prompts = build_prompts(args.root, args.questions)
    prompts_file = args.root / "prompts.json"
    prompts_file.write_text(json.dumps(prompts))
    folder = resolve_llm_path(DEFAULT_LLM)
    for gguf_type in ("f16", "q8_0"):  # converted once into the model cache; timed here
        t = time.perf_counter()
        resolve_gguf_path(DEFAULT_LLM, gguf_type)
        result[f"convert_{gguf_type}_s"] = round(time.perf_counter() - t, 2)

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    from ragops.llm.llamacpp import load_gguf, open_llama, render_chat
    from ragops.weights.llm import packaged_gguf

    vocab = open_llama(str(packaged_gguf(DEFAULT_LLM)), vocab_only=True, verbose=False)
    loaded = load_gguf(str(packaged_gguf(DEFAULT_LLM)))
    same_ids = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
                == vocab.tokenize(render_chat(loaded, p).encode(), add_bos=False, special=True) for p in prompts]
    result["prompt_token_ids_identical"] = f"{sum(same_ids)}/{len(same_ids)}"
    del loaded

    chosen = ["transformers"] + [b for b in args.backends.split(",") if b in BACKENDS and b != "transformers"]
    runs: dict[str, list[dict]] = {b: [] for b in chosen}
    for i in range(args.rounds):
        order = chosen if i % 2 == 0 else list(reversed(chosen))
        for backend in order:
            print(f"round {i + 1}: {backend}", file=sys.stderr)
            runs[backend].append(run_worker(backend, prompts_file, args))
    result["runs"] = runs
    summary = {b: summarise(r) for b, r in runs.items()}
    ref = [row["answer"] for row in runs["transformers"][0]["rows"]]
    for b in chosen:
        summary[b]["agreement_with_transformers"] = agreement(tokenizer, ref, [row["answer"] for row in runs[b][0]["rows"]])
        summary[b]["deterministic_across_rounds"] = all(
            [row["answer"] for row in run["rows"]] == [row["answer"] for row in runs[b][0]["rows"]] for run in runs[b])
    result["summary"] = summary
    tr = summary["transformers"]
    result["ratios"] = {
        f"{b}_vs_transformers": {
            "decode_tokens_per_s": round(summary[b]["decode_tokens_per_s"] / tr["decode_tokens_per_s"], 2),
            "ttft_median": round(summary[b]["ttft_s_median"] / tr["ttft_s_median"], 3),
            "load_s": round(summary[b]["load_s_median"] / tr["load_s_median"], 3),
            "peak_rss": round(summary[b]["peak_rss_mib_max"] / tr["peak_rss_mib_max"], 3),
        } for b in chosen if b != "transformers"}
    result["targets"] = {"decode_tokens_per_s": ">= 2.5", "ttft_median": "<= 0.15"}
    result["load_after"] = loadavg()
    write_result("bench_llm", result, args.out)


if __name__ == "__main__":
    main()
