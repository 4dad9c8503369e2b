#!/usr/bin/env bash
# Runs every benchmark in test/bench/ (*.bench.ts) with tsx and prints its
# figures. Benchmarks measure, they never assert; record notable figures in
# docs/benchmarks.md together with the command and the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
benches=(test/bench/*.bench.ts)
if [[ ${#benches[@]} -eq 0 ]]; then
  echo "bench: no test/bench/*.bench.ts" >&2
  exit 1
fi
for bench in "${benches[@]}"; do
  echo "== ${bench}"
  npx tsx "${bench}"
done
