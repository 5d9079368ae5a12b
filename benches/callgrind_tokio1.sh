#!/usr/bin/env bash
# Instructions per connection of the tokio 1 servers of benches/tokio1.rs
# (plain, axum_style, tk_listen) under `valgrind --tool=callgrind`, which
# machine load hardly changes. One server on a current_thread runtime, no
# client threads: each batch fills the backlog with 100 connected clients,
# then `turn_until_served` runs the runtime until all are answered. Counted:
# the instructions inside that function only (user space), for 50 and 100
# batches; the difference divided by 5000. Last, tk_listen without and with
# limit_per_peer(8), clients from 100 loopback addresses (Linux). About
# four minutes. Figures: benches/README.md, "tokio 1".
#
# Usage: bash benches/callgrind_tokio1.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bin=$(cargo bench --features tokio1 --bench tokio1 --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\/tokio1-[^"]*\)".*/\1/p' | tail -n 1)
[ -x "$bin" ] || { echo "could not find the tokio1 bench binary" >&2; exit 1; }

# Instructions inside `turn_until_served` for one variant and batch count.
count() {
    local out
    out=$(mktemp)
    TK_TOKIO1_BATCH=$1 TK_TOKIO1_BATCHES=$2 valgrind --tool=callgrind --collect-atstart=no \
        '--toggle-collect=*turn_until_served*' --callgrind-out-file="$out" "$bin" >/dev/null 2>&1
    awk '/^summary:/ { print $2 }' "$out"
    rm -f "$out"
}

# Instructions per connection of one variant: (100 batches - 50) / 5000.
count_per_conn() {
    local a b
    a=$(count "$1" 50)
    b=$(count "$1" 100)
    awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1f", (b - a) / 5000 }'
}

printf '%-12s %12s %12s\n' variant instr/conn "/plain"
plain=
for variant in plain axum_style tk_listen; do
    a=$(count "$variant" 50)
    b=$(count "$variant" 100)
    n=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1f", (b - a) / 5000 }')
    plain=${plain:-$n}
    awk -v v="$variant" -v n="$n" -v p="$plain" 'BEGIN { printf "%-12s %12.1f %12.3f\n", v, n, n / p }'
done

# limit_per_peer(8) before listen: tk_listen without and with it, clients
# from 100 loopback addresses (each connection its peer's only one).
echo
printf '%-26s %12s %12s %10s %8s\n' "limit_per_peer, 100 peers" without with extra ratio
without=$(TK_TOKIO1_PEERS=100 count_per_conn tk_listen)
with=$(TK_TOKIO1_PEERS=100 count_per_conn tk_listen_per_peer)
awk -v a="$without" -v b="$with" \
    'BEGIN { printf "%-26s %12.1f %12.1f %10.1f %8.3f\n", "batch of 100", a, b, b - a, b / a }'
