#!/usr/bin/env bash
# What sharing through Redis costs a request: one llmux node on PostgreSQL alone, and one on
# the same PostgreSQL with `[cluster] redis` (credits reserved and settled by a Redis script,
# rate limit checked there, endpoint health exchanged), side by side in one run, against the
# same static upstream (nginx). The key is prepaid and has a rate limit, so every request takes
# the cluster's money path.
#
#   bench/cluster.sh             # 10 s per measurement
#   DURATION=30 bench/cluster.sh
#
# Needs: wrk, nginx, redis-server, psql, and PostgreSQL on 127.0.0.1:5432 (PGURL overrides).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
for tool in wrk nginx redis-server psql; do
    command -v "$tool" >/dev/null || { echo "$tool is needed (apt-get install wrk nginx redis-server postgresql-client)"; exit 1; }
done
duration="${DURATION:-10}"
pg="${PGURL:-postgres://postgres@127.0.0.1:5432}"

cargo build --release --locked --quiet -p llmux
bin=$root/target/release
extra_cleanup() {
    for db in llmux_bench_alone llmux_bench_cluster; do
        psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    done
}
source bench/lib.sh
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

static_port=18511; alone_port=18512; cluster_port=18513; redis_port=18519
require_free_ports $static_port $alone_port $cluster_port $redis_port

start_static_upstream $static_port nginx 1
redis-server --port $redis_port --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
pids+=($!)

for db in llmux_bench_alone llmux_bench_cluster; do
    psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
    psql -q "$pg/postgres" -c "CREATE DATABASE $db" >/dev/null
done

config() { # name port database [cluster section]
    static_llmux_config "$work/$1.toml" "$2" "$3" "$work/$1" $static_port "${4:-}"
}
config alone $alone_port "$pg/llmux_bench_alone" ""
config cluster $cluster_port "$pg/llmux_bench_cluster" "[cluster]
redis = \"redis://127.0.0.1:$redis_port\""

declare -A key
for name in alone cluster; do
    key[$name]=$("$bin/llmux" keys create --name bench --credits 100000 --rpm 10000000 \
        --config "$work/$name.toml" --json | sed -n 's/^ *"key": *"\([^"]*\)".*/\1/p')
    [ -n "${key[$name]}" ] || { echo "could not create a key"; exit 1; }
    LLMUX_LOG=warn "$bin/llmux" serve --config "$work/$name.toml" >/dev/null 2>"$work/$name.log" &
    pids+=($!)
done
wait_for_ports $static_port $alone_port $cluster_port $redis_port

declare -A p50 p99 rps
run() { # name connections
    local port out
    port=$alone_port; [ "$1" = cluster ] && port=$cluster_port
    out=$(WRK_KEY=${key[$1]} WRK_MODEL=openai/gpt-4o-mini \
        wrk -t1 -c"$2" -d"${duration}s" --latency -s bench/gateway/post.lua "http://127.0.0.1:$port/api/v1/chat/completions")
    if grep -q "Non-2xx" <<<"$out"; then echo "$1 c=$2: errors"; grep -E "Non-2xx|Socket" <<<"$out"; fi
    p50[$1,$2]=$(awk '/ 50%/ {print $2}' <<<"$out")
    p99[$1,$2]=$(awk '/ 99%/ {print $2}' <<<"$out")
    rps[$1,$2]=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
}
echo "warming up"
for name in alone cluster; do run "$name" 8; done
for c in 1 32; do
    for name in alone cluster; do run "$name" "$c"; done
done
echo
echo "Non-streaming chat completions, prepaid key with a rate limit, wrk -t1, ${duration}s each, $(nproc) cores"
printf '%-36s %6s %10s %10s %12s\n' node conns p50 p99 requests/s
for c in 1 32; do
    printf '%-36s %6s %10s %10s %12s\n' "PostgreSQL alone" "$c" "${p50[alone,$c]}" "${p99[alone,$c]}" "${rps[alone,$c]}"
    printf '%-36s %6s %10s %10s %12s\n' "PostgreSQL + Redis ([cluster])" "$c" "${p50[cluster,$c]}" "${p99[cluster,$c]}" "${rps[cluster,$c]}"
done
