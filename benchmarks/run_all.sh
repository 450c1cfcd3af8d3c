#!/usr/bin/env bash
# Runs every benchmark in order (about 1.5–2 h on 2 cores). Logs go to /tmp/ragops-bench/logs/.
# Usage: bash benchmarks/run_all.sh   (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
mkdir -p /tmp/ragops-bench/logs
run() { local name=$1; shift; echo "== $name: $*"; "$PY" "$@" > "/tmp/ragops-bench/logs/$name.log" 2>&1; }

# 1. full build (pipeline first, then the plain encode), root kept for 2–4
run indexing benchmarks/bench_indexing.py
# 2. incremental: 1% of documents changed
run incremental benchmarks/bench_incremental.py
# 3. roots for other chunk configurations (train-split study only), then retrieval
run build_c512_title   benchmarks/bench_indexing.py --skip-plain --root /tmp/ragops-bench/c512_title   --name build_c512_title   --chunk-size 512
run build_c1024_title  benchmarks/bench_indexing.py --skip-plain --root /tmp/ragops-bench/c1024_title  --name build_c1024_title  --chunk-size 1024
run build_c256_notitle benchmarks/bench_indexing.py --skip-plain --root /tmp/ragops-bench/c256_notitle --name build_c256_notitle --include-title false
run build_c200_title   benchmarks/bench_indexing.py --skip-plain --root /tmp/ragops-bench/c200_title   --name build_c200_title   --chunk-size 200
run retrieval benchmarks/bench_retrieval.py --tune \
    --tune-root c512_title=/tmp/ragops-bench/c512_title --tune-root c1024_title=/tmp/ragops-bench/c1024_title \
    --tune-root c256_notitle=/tmp/ragops-bench/c256_notitle --tune-root c200_title=/tmp/ragops-bench/c200_title
# 4. latency (SciFact index + 1M synthetic vectors)
run latency benchmarks/bench_latency.py --hnsw-remove
# 1b. the full build again with the plain encode first (warm-up check), on its own root
run indexing_plain_first benchmarks/bench_indexing.py --order plain-first --root /tmp/ragops-bench/scifact-pf \
    --name bench_indexing_plain_first
