#!/usr/bin/env bash
# Regenerates every chart of benches/README.md: runs the benchmarks that write
# benches/data/*.csv, then draws benches/data/*.svg from them. About eight
# minutes (callgrind.sh is most of it); needs valgrind.
#
# The TK_BENCH_* settings of benches/README.md apply; accept runs 9 rounds
# unless TK_BENCH_ROUNDS says otherwise.
#
# Usage: bash benches/charts.sh
set -euo pipefail
cd "$(dirname "$0")/.."

cargo bench --bench emfile                                 # emfile_cpu.csv
TK_BENCH_ROUNDS="${TK_BENCH_ROUNDS:-9}" cargo bench --bench accept   # accept.csv
bash benches/callgrind.sh                                  # callgrind.csv
cargo bench --bench charts                                 # the .svg files
