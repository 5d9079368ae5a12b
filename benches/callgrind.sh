#!/usr/bin/env bash
# Instruction counts, which machine load hardly changes, for the workloads of
# benches/callgrind.rs under `valgrind --tool=callgrind` (Debian: apt-get
# install valgrind). About five minutes. What each section measures and the
# latest figures: benches/README.md.
#
# 1. overhead: each socket-free workload of benches/overhead.rs, run 1 and 3
#    times over 100 000 items; the difference divided by 200 000 is the cost
#    per item without the program's start-up. Also conditional branches
#    mispredicted per item (callgrind's branch simulator).
# 2. fresh: each accept server built anew for every batch of 100 connections
#    waiting in the backlog; instructions inside `serve_batch_<variant>` only
#    (user space: the system calls themselves are not counted), for 50 and
#    100 batches, the difference divided by 5000.
# 3. running: one server for all batches, counting only the turns of the
#    event loop (`turn_until_served`), for batches of 1, 4 and 100
#    connections, 50 and 100 batches: the cost per connection of a running
#    server; the median of three such measurements. These rows also go to
#    benches/data/callgrind.csv (variant,batch,instructions) for
#    benches/charts.rs.
# 4. limit_per_peer: the running server with and without limit_per_peer(8)
#    (tk_listen_per_peer and tk_listen), the median of five measurements
#    each. The clients of a batch come from 100 loopback addresses, so each
#    connection is its peer's only one: it takes the peer from holding
#    nothing to one connection and back. The same 100 peers come back batch
#    after batch, as clients do; in the last row every client has an address
#    never seen before, so each connection adds a peer to the table (the
#    dearest path). The extra instructions per connection and the ratio.
#
# Usage: bash benches/callgrind.sh [limit_per_peer]   (the argument: section 4 only)
set -euo pipefail
cd "$(dirname "$0")/.."
only=${1:-}

bin=$(cargo bench --bench callgrind --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\/callgrind-[^"]*\)".*/\1/p' | tail -n 1)
[ -x "$bin" ] || { echo "could not find the callgrind bench binary" >&2; exit 1; }

# Prints the summary line of one run of the binary under callgrind: the
# events counted (Ir, and with --branch-sim=yes also Bc Bcm Bi Bim).
# Arguments: valgrind options, then --, then the workload's arguments.
run() {
    local out opts=()
    while [ "$1" != -- ]; do opts+=("$1"); shift; done
    shift
    out=$(mktemp)
    valgrind --tool=callgrind "${opts[@]}" --callgrind-out-file="$out" "$bin" "$@" >/dev/null 2>&1
    awk '/^summary:/ { $1 = ""; print }' "$out"
    rm -f "$out"
}

if [ -z "$only" ]; then
printf '%-28s %12s %20s\n' workload "instr/item" "mispredicts/item"
for workload in listen buffer_unordered buffer_unordered_swallowing sleep_on_error bare_stream; do
    # events: Ir Bc Bcm Bi Bim
    read -r i1 _ m1 _ < <(run --branch-sim=yes -- overhead "$workload" 1)
    read -r i3 _ m3 _ < <(run --branch-sim=yes -- overhead "$workload" 3)
    awk -v w="$workload" -v i1="$i1" -v i3="$i3" -v m1="$m1" -v m3="$m3" \
        'BEGIN { printf "%-28s %12.1f %20.3f\n", w, (i3 - i1) / 200000, (m3 - m1) / 200000 }'
done

echo
printf '%-28s %12s\n' "accept server, fresh" "instr/conn"
for variant in raw_std raw_core tk_listen; do
    a=$(run --collect-atstart=no '--toggle-collect=*serve_batch_*' -- fresh "$variant" 50 100)
    b=$(run --collect-atstart=no '--toggle-collect=*serve_batch_*' -- fresh "$variant" 100 100)
    awk -v v="$variant" -v a="$a" -v b="$b" 'BEGIN { printf "%-28s %12.1f\n", v, (b - a) / 5000 }'
done
fi

# Instructions per connection of one running server: variant, batch size,
# peers, and how many measurements (3 if not given). Prints their median,
# then their minimum and maximum: the counts of a running server vary from
# run to run, usually by under 2% but now and then by much more
# (benches/README.md).
per_conn() {
    local a b i values=()
    for ((i = 0; i < ${4:-3}; i++)); do
        a=$(run --collect-atstart=no '--toggle-collect=*turn_until_served*' -- running "$1" 50 "$2" "$3")
        b=$(run --collect-atstart=no '--toggle-collect=*turn_until_served*' -- running "$1" 100 "$2" "$3")
        values+=("$(awk -v a="$a" -v b="$b" -v s="$2" 'BEGIN { print (b - a) / (50 * s) }')")
    done
    printf '%s\n' "${values[@]}" | sort -g |
        awk '{ v[NR] = $1 } END { printf "%.1f %.1f %.1f\n", v[int((NR + 1) / 2)], v[1], v[NR] }'
}

if [ -z "$only" ]; then
echo
printf '%-10s %17s %12s %18s\n' "running" "batch size" "instr/conn" "(min..max)"
csv="variant,batch,instructions"
for size in 1 4 100; do
    for variant in raw_core tk_listen; do
        read -r n lo hi < <(per_conn "$variant" "$size" 1)
        printf '%-10s %17d %12.1f %18s\n' "$variant" "$size" "$n" "($lo..$hi)"
        csv+=$'\n'"$variant,$size,$n"
    done
done
mkdir -p benches/data
printf '%s\n' "$csv" >benches/data/callgrind.csv
echo "wrote benches/data/callgrind.csv"
fi

echo
printf '%-26s %12s %12s %10s %8s   %s\n' "limit_per_peer, batch size" "without" "with" "extra" \
    "ratio" "(min..max without; with)"
for rows in "1 100" "4 100" "100 100" "100 0"; do
    read -r size peers <<<"$rows"
    read -r without wlo whi < <(per_conn tk_listen "$size" "$peers" 5)
    read -r with lo hi < <(per_conn tk_listen_per_peer "$size" "$peers" 5)
    label="$size"
    [ "$peers" = 0 ] && label="$size, all peers new"
    awk -v s="$label" -v a="$without" -v b="$with" -v r="($wlo..$whi; $lo..$hi)" \
        'BEGIN { printf "%-26s %12.1f %12.1f %10.1f %8.3f   %s\n", s, a, b, b - a, b / a, r }'
done
