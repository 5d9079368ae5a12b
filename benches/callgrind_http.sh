#!/usr/bin/env bash
# Instructions per request of the four HTTP servers of benches/http.rs
# (hyper_tk, hyper_plain, axum_tk, axum_plain) under `valgrind
# --tool=callgrind`, which machine load hardly changes. The server runs on a
# current_thread runtime (valgrind runs one thread at a time anyway) in
# `http count NAME MODE N`; its client is a child process that valgrind does
# not follow: `http client` over 4 connections (keep-alive: 4 connections
# for all requests; close: a new connection per request, `Connection:
# close`), or `h2load -n N -c 4 -m 1` (h2c, Debian: nghttp2-client).
# Counted: the instructions inside `serve_counted` (user space) for 1000
# and 5000 requests; the difference divided by 4000, the median of three
# such measurements, then the tk / plain ratio of each pair. About three
# minutes. Figures: benches/README.md, "HTTP instructions per request".
#
# Usage: bash benches/callgrind_http.sh [keep-alive|close|h2c ...]   (default: all three)
set -euo pipefail
cd "$(dirname "$0")/.."
modes=("$@")
[ ${#modes[@]} -gt 0 ] || modes=(keep-alive close h2c)
n1=1000
n2=5000
repeats=3

bin=$(cargo bench --features axum --bench http --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\/http-[^"]*\)".*/\1/p' | tail -n 1)
[ -x "$bin" ] || { echo "could not find the http bench binary" >&2; exit 1; }

# Instructions inside `serve_counted` for one server, mode and request count.
count() {
    local out log
    out=$(mktemp)
    log=$(mktemp)
    valgrind --tool=callgrind --collect-atstart=no '--toggle-collect=*serve_counted*' \
        --callgrind-out-file="$out" "$bin" count "$1" "$2" "$3" >/dev/null 2>"$log" ||
        { cat "$log" >&2; exit 1; }
    awk '/^summary:/ { print $2 }' "$out"
    rm -f "$out" "$log"
}

# Instructions per request of one server and mode: the median of
# `repeats` measurements of (Ir(n2) - Ir(n1)) / (n2 - n1), then their
# minimum and maximum.
per_request() {
    local a b i values=()
    for ((i = 0; i < repeats; i++)); do
        a=$(count "$1" "$2" "$n1")
        b=$(count "$1" "$2" "$n2")
        values+=("$(awk -v a="$a" -v b="$b" -v n="$((n2 - n1))" 'BEGIN { print (b - a) / n }')")
    done
    printf '%s\n' "${values[@]}" | sort -g |
        awk '{ v[NR] = $1 } END { printf "%.1f %.1f %.1f\n", v[int((NR + 1) / 2)], v[1], v[NR] }'
}

printf '%-12s %-12s %14s %20s %10s\n' mode server instr/request "(min..max)" "tk/plain"
for mode in "${modes[@]}"; do
    for pair in "hyper_tk hyper_plain" "axum_tk axum_plain"; do
        read -r tk plain <<<"$pair"
        # (assignments first, so that a failed count stops the script)
        tk_counts=$(per_request "$tk" "$mode")
        plain_counts=$(per_request "$plain" "$mode")
        read -r t tlo thi <<<"$tk_counts"
        read -r p plo phi <<<"$plain_counts"
        printf '%-12s %-12s %14.1f %20s\n' "$mode" "$tk" "$t" "($tlo..$thi)"
        awk -v m="$mode" -v s="$plain" -v p="$p" -v r="($plo..$phi)" -v t="$t" \
            'BEGIN { printf "%-12s %-12s %14.1f %20s %10.3f\n", m, s, p, r, t / p }'
    done
done
