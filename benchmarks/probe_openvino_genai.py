"""Probe: does OpenVINO GenAI's continuous batching serve chain-sized prompts faster than our own
stateful loop, one request at a time? (issue 10, served throughput; BENCHMARKS.md §9)

Eight ~780-token prompts built from the sample corpus, 64 new tokens each, greedy. Measures:
- ``sequential``: :class:`ragops.llm.openvino_llm.OpenVinoChatModel`'s loop, one prompt after another;
- ``batched-cN``: one ``ContinuousBatchingPipeline``, N requests in flight from N threads.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/probe_openvino_genai.py --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def prompts(n: int) -> list[list]:
    from langchain_core.messages import HumanMessage, SystemMessage

    docs = sorted((ROOT / "data" / "corpus").rglob("*.md"))
    out = []
    for i in range(n):
        context = "\n\n".join(f"[{j + 1}] " + docs[(i * 3 + j) % len(docs)].read_text()[:900] for j in range(4))
        out.append([SystemMessage("You are a documentation assistant. Answer from the context only, citing [n]."),
                    HumanMessage(f"Context:\n{context}\n\nQuestion: What does document [{i % 4 + 1}] say? "
                                 "Answer in two sentences.")])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--concurrency", default="1,4")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "probe_openvino_genai.json"))
    args = ap.parse_args()

    from ragops.llm.openvino_llm import OpenVinoChatModel
    from ragops.weights.llm import DEFAULT_LLM

    chats = prompts(args.requests)
    model = OpenVinoChatModel(model_name=DEFAULT_LLM, dtype=args.dtype, max_new_tokens=args.max_new_tokens,
                              temperature=0.0)
    model.invoke(chats[0])  # export + compile, once
    ids = [model.prompt_tokens(c) for c in chats]
    result: dict = {"load_1m": os.getloadavg()[0], "prompt_tokens": [len(i) for i in ids], "runs": {}}

    t = time.perf_counter()
    seq = [model.invoke(c) for c in chats]
    wall = time.perf_counter() - t
    result["runs"]["sequential"] = {"wall_s": wall, "req_s": len(chats) / wall,
                                    "completion_tokens": [m.usage_metadata["output_tokens"] for m in seq]}
    print("sequential", result["runs"]["sequential"], flush=True)

    import numpy as np
    import openvino as ov
    import openvino_genai as og

    from ragops.openvino_cpu import PRECISIONS

    folder = model._export()
    if not (Path(folder) / "openvino_tokenizer.xml").exists():
        from openvino_tokenizers import convert_tokenizer
        from transformers import AutoTokenizer

        tok, detok = convert_tokenizer(AutoTokenizer.from_pretrained(folder), with_detokenizer=True)
        ov.save_model(tok, str(Path(folder) / "openvino_tokenizer.xml"))
        ov.save_model(detok, str(Path(folder) / "openvino_detokenizer.xml"))
    scheduler = og.SchedulerConfig()
    scheduler.cache_size = 1
    scheduler.max_num_batched_tokens = 2048
    scheduler.dynamic_split_fuse = True
    t = time.perf_counter()
    pipe = og.ContinuousBatchingPipeline(folder, scheduler, "CPU", {
        "INFERENCE_PRECISION_HINT": PRECISIONS[args.dtype], "INFERENCE_NUM_THREADS": 2,
        "ENABLE_CPU_PINNING": False})
    result["cb_load_s"] = time.perf_counter() - t
    loaded = model.prompting()

    def config():
        c = og.GenerationConfig()
        c.max_new_tokens = args.max_new_tokens
        c.do_sample = False
        c.stop_token_ids = set(loaded.eos_ids)
        return c

    # the scheduler thread steps the pipeline and moves new tokens to each request's queue: a blocking
    # GenerationHandle.read() holds the GIL, so only this thread touches the handles
    import queue as queues

    stop = threading.Event()
    wake = threading.Event()
    lock = threading.Lock()
    active: dict[int, tuple] = {}

    def loop():
        while not stop.is_set():
            if pipe.has_non_finished_requests():
                pipe.step()
            else:
                wake.wait(0.05)
                wake.clear()
            with lock:
                items = list(active.items())
            for rid, (handle, q) in items:
                while handle.can_read():
                    for o in handle.read().values():
                        q.put(list(o.generated_ids))
                if handle.get_status() != og.GenerationStatus.RUNNING and not handle.can_read():
                    q.put(None)
                    with lock:
                        active.pop(rid)

    threading.Thread(target=loop, daemon=True).start()
    counter = iter(range(10**9))

    def generate(tokens: list[int]) -> list[int]:
        q: queues.Queue = queues.Queue()
        with lock:
            rid = next(counter)
            handle = pipe.add_request(rid, ov.Tensor(np.asarray([tokens], dtype=np.int64)), config())
            active[rid] = (handle, q)
        wake.set()
        out: list[int] = []
        while (piece := q.get()) is not None:
            out.extend(piece)
        return out

    generate(ids[0])  # warm-up
    for c in [int(x) for x in args.concurrency.split(",")]:
        outs: dict[int, list[int]] = {}
        queue = list(range(len(ids)))
        qlock = threading.Lock()

        def worker():
            while True:
                with qlock:
                    if not queue:
                        return
                    i = queue.pop(0)
                outs[i] = generate(ids[i])

        t = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(c)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t
        texts = [loaded.tokenizer.decode(outs[i], skip_special_tokens=True) for i in range(len(ids))]
        same = sum(a.content.strip() == b.strip() for a, b in zip(seq, texts, strict=True))
        result["runs"][f"batched-c{c}"] = {"wall_s": wall, "req_s": len(ids) / wall,
                                          "completion_tokens": [len(outs[i]) for i in range(len(ids))],
                                          "same_answer_as_sequential": same}
        print(f"batched-c{c}", result["runs"][f"batched-c{c}"], flush=True)
    stop.set()
    result["load_1m_end"] = os.getloadavg()[0]
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
