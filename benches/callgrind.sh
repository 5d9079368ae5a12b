#!/usr/bin/env bash
# Instruction counts behind the overhead ratios, independent of machine load.
#
# Runs each workload of benches/overhead.rs under `valgrind --tool=callgrind`
# once with 1 and once with 3 repetitions of 100 000 items; the difference,
# divided by 200 000, is the cost per item without the program's start-up.
# Also prints conditional branches mispredicted per item (callgrind's branch
# simulator). Needs valgrind (Debian: apt-get install valgrind).
#
# Then the same for the accept servers of benches/accept.rs in batch mode:
# instructions per connection inside the `serve_batch_<variant>` function only
# (user space; the system calls themselves are not counted), for 50 and 100
# batches of 100 connections, the difference divided by 5000.
#
# Last, the price of limit_per_peer(8): the running server of the previous
# section with and without it (tk_listen_per_peer and tk_listen), both with
# their clients spread over 100 loopback addresses (TK_ACCEPT_PEERS=100), so
# that each connection of a batch comes from a peer with no other connection
# and adds and removes a table entry (the dearer path); then the extra
# instructions per connection and the ratio.
#
# Usage: bash benches/callgrind.sh [limit_per_peer]   (the argument: that section only)
set -euo pipefail
cd "$(dirname "$0")/.."
only=${1:-}

# The executable cargo built for bench target $1.
bench_binary() {
    local path
    path=$(cargo bench --bench "$1" --no-run --message-format=json 2>/dev/null |
        sed -n 's/.*"executable":"\([^"]*\/'"$1"'-[^"]*\)".*/\1/p' | tail -n 1)
    [ -x "$path" ] || { echo "could not find the $1 bench binary" >&2; exit 1; }
    echo "$path"
}
bin=$(bench_binary overhead)
accept_bin=$(bench_binary accept)

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

if [ -z "$only" ]; then
printf '%-28s %12s %20s\n' workload "instr/item" "mispredicts/item"
for workload in listen buffer_unordered buffer_unordered_swallowing sleep_on_error bare_stream; do
    read -r i1 m1 < <(count "$workload" 1)
    read -r i3 m3 < <(count "$workload" 3)
    awk -v w="$workload" -v i1="$i1" -v i3="$i3" -v m1="$m1" -v m3="$m3" \
        'BEGIN { printf "%-28s %12.1f %20.3f\n", w, (i3 - i1) / 200000, (m3 - m1) / 200000 }'
done
fi

# Prints the instructions inside serve_batch_* for one run.
count_accept() {
    local out
    out=$(mktemp)
    TK_ACCEPT_BATCH=$1 TK_ACCEPT_BATCHES=$2 valgrind --tool=callgrind --collect-atstart=no \
        --toggle-collect='*serve_batch_*' --callgrind-out-file="$out" "$accept_bin" >/dev/null 2>&1
    awk '/^summary:/ { print $2 }' "$out"
    rm -f "$out"
}

if [ -z "$only" ]; then
echo
printf '%-28s %12s\n' "accept server" "instr/conn"
for variant in raw_std raw_core tk_listen; do
    a=$(count_accept "$variant" 50)
    b=$(count_accept "$variant" 100)
    awk -v v="$variant" -v a="$a" -v b="$b" 'BEGIN { printf "%-28s %12.1f\n", v, (b - a) / 5000 }'
done
fi

# The same with one long-lived server (TK_ACCEPT_PERSISTENT=1), counting only
# the turns of the event loop, for batches of 1, 4 and 100 connections: the
# cost per connection of a running server, without building it per batch.
count_persistent() {
    local out
    out=$(mktemp)
    TK_ACCEPT_PEERS=${4:-1} TK_ACCEPT_PERSISTENT=1 TK_ACCEPT_BATCH=$1 TK_ACCEPT_BATCHES=$2 TK_ACCEPT_BATCH_SIZE=$3 \
        valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*turn_until_served*' \
        --callgrind-out-file="$out" "$accept_bin" >/dev/null 2>&1
    awk '/^summary:/ { print $2 }' "$out"
    rm -f "$out"
}

if [ -z "$only" ]; then
echo
printf '%-28s %12s\n' "running server, batch size" "instr/conn"
for size in 1 4 100; do
    for variant in raw_core tk_listen; do
        a=$(count_persistent "$variant" 50 "$size")
        b=$(count_persistent "$variant" 100 "$size")
        awk -v v="$variant" -v s="$size" -v a="$a" -v b="$b" \
            'BEGIN { printf "%-10s %17d %12.1f\n", v, s, (b - a) / (50 * s) }'
    done
done
fi

echo
printf '%-26s %12s %12s %10s %8s\n' "limit_per_peer, batch size" "without" "with" "extra" "ratio"
for size in 1 4 100; do
    a=$(count_persistent tk_listen 50 "$size" 100)
    b=$(count_persistent tk_listen 100 "$size" 100)
    c=$(count_persistent tk_listen_per_peer 50 "$size" 100)
    d=$(count_persistent tk_listen_per_peer 100 "$size" 100)
    awk -v s="$size" -v a="$a" -v b="$b" -v c="$c" -v d="$d" 'BEGIN {
        without = (b - a) / (50 * s); with = (d - c) / (50 * s)
        printf "%-26d %12.1f %12.1f %10.1f %8.3f\n", s, without, with, with - without, with / without
    }'
done
