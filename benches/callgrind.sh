#!/usr/bin/env bash
# Instruction counts behind the overhead ratios, independent of machine load.
#
# Runs each workload of benches/overhead.rs under `valgrind --tool=callgrind`
# once with 1 and once with 3 repetitions of 100 000 items; the difference,
# divided by 200 000, is the cost per item without the program's start-up.
# Also prints conditional branches mispredicted per item (callgrind's branch
# simulator). Needs valgrind (Debian: apt-get install valgrind).
#
# Usage: bash benches/callgrind.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bin=$(cargo bench --bench overhead --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*overhead-[^"]*\)".*/\1/p' | tail -n 1)
[ -x "$bin" ] || { echo "could not find the overhead bench binary" >&2; exit 1; }

# Prints "<instructions> <mispredicted conditional branches>" for one run.
count() {
    local out
    out=$(mktemp)
    TK_OVERHEAD_ONCE=$1 TK_OVERHEAD_REPEAT=$2 valgrind --tool=callgrind --branch-sim=yes \
        --callgrind-out-file="$out" "$bin" >/dev/null 2>&1
    # events: Ir Bc Bcm Bi Bim
    awk '/^summary:/ { print $2, $4 }' "$out"
    rm -f "$out"
}

printf '%-28s %12s %20s\n' workload "instr/item" "mispredicts/item"
for workload in listen buffer_unordered buffer_unordered_swallowing sleep_on_error bare_stream; do
    read -r i1 m1 < <(count "$workload" 1)
    read -r i3 m3 < <(count "$workload" 3)
    awk -v w="$workload" -v i1="$i1" -v i3="$i3" -v m1="$m1" -v m3="$m3" \
        'BEGIN { printf "%-28s %12.1f %20.3f\n", w, (i3 - i1) / 200000, (m3 - m1) / 200000 }'
done
