#!/usr/bin/env bash
# Instructions per accepted connection of `BindMany` (futures 0.1 and tokio 1)
# against the plain accept stream of the same stack (`listener.incoming()`,
# `tk_listen::tokio1::incoming`), under `valgrind --tool=callgrind`: one
# running server, one address; each batch fills the backlog with 100 clients,
# then `serve_batch_*` accepts them all (user space only), for 20 and 40
# batches; the difference divided by 2000. About two minutes. Figures:
# benches/README.md, "BindMany on both stacks".
#
# Usage: bash benches/callgrind_bind_many.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bin=$(cargo bench --features tokio1 --bench bind_many --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\/bind_many-[^"]*\)".*/\1/p' | tail -n 1)
[ -x "$bin" ] || { echo "could not find the bind_many bench binary" >&2; exit 1; }

count() {
    local out
    out=$(mktemp)
    valgrind --tool=callgrind --collect-atstart=no '--toggle-collect=*serve_batch_*' \
        --callgrind-out-file="$out" "$bin" "$1" "$2" >/dev/null 2>&1
    awk '/^summary:/ { print $2 }' "$out"
    rm -f "$out"
}

printf '%-18s %12s %12s\n' variant instr/conn "/incoming"
for stack in core tokio1; do
    base=
    for variant in "${stack}_incoming" "${stack}_bind_many"; do
        a=$(count "$variant" 20)
        b=$(count "$variant" 40)
        n=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1f", (b - a) / 2000 }')
        base=${base:-$n}
        awk -v v="$variant" -v n="$n" -v p="$base" 'BEGIN { printf "%-18s %12.1f %12.3f\n", v, n, n / p }'
    done
done
