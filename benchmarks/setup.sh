#!/usr/bin/env bash
# Tools the benchmarks need beyond the Python environment (not run by CI).
#   bash benchmarks/setup.sh
# wrk: the closed-loop HTTP load generator bench_gateway.py uses for its max-throughput phase
# (Debian package; the fixed-rate phases use the benchmark's own asyncio client).
set -euo pipefail
if ! command -v wrk >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update
  $SUDO apt-get install -y wrk
fi
wrk --version 2>&1 | head -1 || true
