#!/usr/bin/env bash
# The rankings benchmark: fill a database with N synthetic generation records (the
# generator is `llmux-bench records`, see bench/README.md), start llmux on it, and measure the
# rankings API and pages with wrk, one connection then eight.
#
#   bench/rankings.sh 10000000                  # records and rollups (about 6 GB of SQLite)
#   bench/rankings.sh 100000000 --rollups-only  # the rollups of 100 million records
#
# Databases are kept in bench/data/ and reused by later runs.
set -euo pipefail
cd "$(dirname "$0")/.."

records="${1:-10000000}"
shift || true
extra=("$@")
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)"; exit 1; }

cargo build --release --locked -p llmux -p llmux-bench >/dev/null
bin=target/release
mkdir -p bench/data
suffix=""
[[ " ${extra[*]-} " == *" --rollups-only "* ]] && suffix="-rollups"
db="bench/data/rankings-${records}${suffix}.db"
if [ ! -f "$db" ]; then
    "$bin/llmux-bench" records --database "sqlite://$db" --records "$records" --end-date 2026-02-22 "${extra[@]}"
fi

port=18471
# Two servers on the same database: one computing every answer (the cost of a query), one
# with the default short-lived answer cache (what repeated reads cost).
printf '[rankings]\ncache_secs = 0\n' > bench/data/uncached.toml
LLMUX_DATA_DIR=bench/data/uncached LLMUX_LOG=warn "$bin/llmux" serve --config bench/data/uncached.toml --database "sqlite://$PWD/$db" --listen "127.0.0.1:$port" >/dev/null &
uncached=$!
LLMUX_DATA_DIR=bench/data/cached LLMUX_LOG=warn "$bin/llmux" serve --database "sqlite://$PWD/$db" --listen "127.0.0.1:$((port + 1))" >/dev/null &
cached=$!
trap 'kill $uncached $cached 2>/dev/null || true' EXIT
for p in $port $((port + 1)); do
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$p/healthz" >/dev/null && break; sleep 0.1; done
done

urls=(
    "/api/v1/rankings?period=week&by=model&weeks=4"
    "/api/v1/rankings?period=week&by=origin&weeks=12"
    "/api/v1/rankings?period=month&by=author&weeks=6"
    "/api/v1/rankings?period=day&by=app&weeks=30"
    "/api/v1/datasets/rankings-daily?start_date=2026-01-23&end_date=2026-02-22"
    "/api/v1/datasets/app-rankings?start_date=2026-02-16&end_date=2026-02-22"
    "/rankings?period=week&weeks=8"
)
size=$(du -h "$db" | cut -f1)
echo
echo "rankings over $records generated records${suffix:+ (rollups only)}, SQLite $size, $(nproc) cores"
echo "every answer computed (cache off): wrk 1 connection; with the answer cache: 8 connections"
printf '%-72s %10s %10s %10s %12s\n' "request" "p50" "p99" "req/s" "cached req/s"
for u in "${urls[@]}"; do
    cold=$(wrk -t1 -c1 -d5s --latency "http://127.0.0.1:$port$u")
    warm=$(wrk -t2 -c8 -d5s --latency "http://127.0.0.1:$((port + 1))$u")
    p50=$(awk '/ 50%/ {print $2}' <<<"$cold")
    p99=$(awk '/ 99%/ {print $2}' <<<"$cold")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$cold")
    rps_warm=$(awk '/Requests\/sec/ {print $2}' <<<"$warm")
    printf '%-72s %10s %10s %10s %12s\n' "$u" "$p50" "$p99" "$rps" "$rps_warm"
done
