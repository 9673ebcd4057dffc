#!/usr/bin/env bash
# Time to first token, llmux binaries taking turns: each turn starts one binary in front of
# the same simulated provider (the first binary's `llmux sim`, over HTTP/1.1, answering 50
# tokens at once) and runs `llmux-bench streams`, which alternates samples through llmux and
# straight to the simulator. Prints each turn's p50s and what llmux added, with llmux's CPU
# time and context switches over the turn (perf stat, where it is installed).
#
#   bench/first-token.sh /tmp/llmux-before target/release/llmux
#   ROUNDS=5 SAMPLES=3000 bench/first-token.sh A B
#   EXTRA='poll_before_sleep_us = 0' bench/first-token.sh A      # a [server] setting for every turn
#
# bench/gateway.sh measures the same figure once per llmux state; a change to it is judged
# here, where binaries take turns within a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bench/first-token.sh BINARY [BINARY...]"; exit 2; }
for b in "$@"; do [ -x "$b" ] || { echo "$b is not an executable"; exit 1; }; done
cargo build --release --locked -p llmux-bench >/dev/null
bin=$PWD/target/release
source bench/lib.sh

llmux_port=18553; sim_port=18554
require_free_ports $llmux_port $sim_port
# The simulator answering deepseek/deepseek-v3.2 (the first-token samples) with 50 tokens at
# once. llmux-bench streams also makes its other measurements: their models are fast here, and
# only 10 streams are opened at once.
start_sim_upstream "$1" $sim_port 50
cat > "$work/llmux.toml" <<CONF
[server]
listen = "127.0.0.1:$llmux_port"
database = "sqlite://$work/llmux.db"
data_dir = "$work/data"
${EXTRA:-}
$sim_config

[[endpoints]]
model = "z-ai/glm-5"
provider = "sim"
upstream_model = "glm-5+tokens=40"
pricing = { prompt = "1", completion = "3.2" }

[[endpoints]]
model = "moonshotai/kimi-k2.5"
provider = "sim"
upstream_model = "kimi-k2.5+tokens=2"
pricing = { prompt = "0.5", completion = "2.5" }
CONF
key=$(create_key "$1" first-token "$work/llmux.toml")

for round in $(seq "${ROUNDS:-3}"); do
    for b in "$@"; do
        LLMUX_LOG=warn "$b" serve --config "$work/llmux.toml" >/dev/null 2>>"$work/llmux.log" &
        pid=$!
        pids+=($pid)
        wait_for_ports $llmux_port $sim_port
        stat=""
        if command -v perf >/dev/null; then
            perf stat -x, -e task-clock,context-switches -p "$pid" -o "$work/stat" &
            stat=$!
            sleep 0.3
        fi
        line=$("$bin/llmux-bench" streams --llmux "http://127.0.0.1:$llmux_port" \
            --direct "http://127.0.0.1:$sim_port" --key "$key" --pid "$pid" \
            --samples "${SAMPLES:-1500}" --streams 10 | grep "^time to first token")
        cost=""
        if [ -n "$stat" ]; then
            kill -INT "$stat"; wait "$stat" 2>/dev/null || true
            cost=$(awk -F, '$3 == "task-clock" { ms = $1 } $3 == "context-switches" { cs = $1 }
                END { printf "; llmux: %.0f ms of CPU, %d context switches", ms, cs }' "$work/stat")
        fi
        echo "turn $round, $b: ${line#time to first token, }$cost"
        kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    done
done
