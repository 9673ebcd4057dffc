#!/usr/bin/env bash
# A/B: two (or more) llmux binaries against the same upstream, taking turns in one run, so
# that the machine's drift (on shared cores throughput moves by ±30% from one minute to the
# next) falls on every binary alike. Prints requests/s, p50 and llmux's CPU per request (all
# its threads, from /proc, and split: the serving threads, the metering writer's and SQLite's
# threads, the rest) for each turn; CPU per request is the steadier figure. Also the serving
# threads' page faults per thousand requests (kernel work that the clock barely shows).
#
#   bench/ab.sh /tmp/llmux-before target/release/llmux
#   CONNECTIONS=1 ROUNDS=5 DURATION=10 bench/ab.sh A B
#   SCRIPT=bench/gateway/post-long.lua bench/ab.sh A B    # a 37 KB prompt
#   SCRIPT=bench/gateway/post-anthropic-long.lua bench/ab.sh A B    # a 50 KB Anthropic request
#   STREAM=1 bench/ab.sh A B        # streamed answers, 64 tokens each
#   STREAM=1 STREAM_TOKENS=1 bench/ab.sh A B       # streams of one token (their opening)
#   PACE_MS=5 bench/ab.sh A B       # light load: a request every 5 ms (CPU per request when idle between)
#
# The upstream is nginx answering with a fixed OpenAI chat completion, as in bench/gateway.sh;
# streams come from the simulated provider (`llmux sim`, the first binary's). Each binary
# serves the same configuration and database (a real key, metering, the spool).
# Needs: wrk, nginx.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: bench/ab.sh BINARY BINARY [BINARY...]"; exit 2; }
for tool in wrk nginx; do
    command -v "$tool" >/dev/null || { echo "$tool is needed (apt-get install wrk nginx)"; exit 1; }
done
for b in "$@"; do [ -x "$b" ] || { echo "$b is not an executable"; exit 1; }; done
rounds="${ROUNDS:-3}"; conns="${CONNECTIONS:-32}"; duration="${DURATION:-5}"
script="${SCRIPT:-bench/gateway/post.lua}"

source bench/lib.sh

static_port=18521; llmux_port=18523; sim_port=18524
require_free_ports $static_port $llmux_port $sim_port

start_static_upstream $static_port nginx
choose_upstream "$1" $sim_port
wait_for_ports $static_port
static_llmux_config "$work/llmux.toml" $llmux_port "sqlite://$work/llmux.db" "$work/data" $static_port "$upstream_config"
key=$(create_key "$1" ab "$work/llmux.toml")
export WRK_KEY=$key
url="http://127.0.0.1:$llmux_port/api/v1/chat/completions"
# CPU ticks of a process, whole ("total T", exited threads included) and per live thread
# with its minor page faults and voluntary context switches ("TID GROUP T FAULTS SWITCHES"): serving threads, the metering writer's
# (llmux-meter) and SQLite's (sqlx's, one per pooled connection), the rest.
cpu_snapshot() {
    local t
    echo "total $(awk '{print $14 + $15}' "/proc/$1/stat")"
    for t in /proc/"$1"/task/*; do
        local comm; comm=$(cat "$t/comm" 2>/dev/null) || continue
        case "$comm" in llmux-serve*) comm=serving ;; llmux-meter|sqlx-sqlite*) comm=sqlite ;; *) comm=rest ;; esac
        echo "${t##*/} $comm $(awk '{print $14 + $15, $10}' "$t/stat" 2>/dev/null || echo 0 0)" \
            "$(awk '/^voluntary_ctxt_switches/ {print $2}' "$t/status" 2>/dev/null || echo 0)"
    done
}
# Microseconds per request between two snapshots, "all serving sqlite rest", then the serving
# threads' faults per thousand requests and context switches per hundred requests; a thread that exited in between counts under the rest.
cpu_per_request() { # BEFORE AFTER REQUESTS
    awk -v n="$3" -v us="$((1000000 / $(getconf CLK_TCK)))" '
        FNR == NR { before[$1] = ($1 == "total") ? $2 : $3; faults[$1] = $4; switches[$1] = $5; next }
        $1 == "total" { total = $2 - before["total"]; next }
        { d[$2] += $3 - before[$1]; if ($2 == "serving") { f += $4 - faults[$1]; s += $5 - switches[$1] } }
        END { rest = total - d["serving"] - d["sqlite"]
              printf "%d %d %d %d %d %.2f", total * us / n, d["serving"] * us / n, d["sqlite"] * us / n, rest * us / n, f * 1000 / n, s / n }
    ' <(echo "$1") <(echo "$2")
}

load=$conns; [ -z "${PACE_MS:-}" ] || load="1/${PACE_MS}ms"
printf '%-40s %6s %10s %12s %16s %26s %16s %13s\n' binary conns p50 requests/s "CPU µs/request" \
    "serving / writer+SQLite / rest" "faults/1000 req" "switches/req"
for _ in $(seq "$rounds"); do
    for b in "$@"; do
        LLMUX_LOG=warn "$b" serve --config "$work/llmux.toml" >/dev/null 2>>"$work/llmux.log" &
        pid=$!
        wait_for_ports $llmux_port >/dev/null || { echo "$b did not start"; cat "$work/llmux.log"; exit 1; }
        wrk -t1 -c"$conns" -d2s -s "$script" "$url" >/dev/null # warm-up
        before=$(cpu_snapshot "$pid")
        if [ -n "${PACE_MS:-}" ]; then
            out=$(python3 bench/gateway/paced.py "$url" "$key" "$WRK_MODEL" "$PACE_MS" "$duration")
        else
            out=$(wrk -t1 -c"$conns" -d"${duration}s" --latency -s "$script" "$url")
        fi
        after=$(cpu_snapshot "$pid")
        n=$(awk '/requests in/ {print $1}' <<<"$out")
        read -r all serving sqlite rest faults switches <<<"$(cpu_per_request "$before" "$after" "$n")"
        printf '%-40s %6s %10s %12s %16s %26s %16s %13s\n' "$b" "$load" "$(awk '/ 50%/ {print $2}' <<<"$out")" \
            "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" "$all" "$serving / $sqlite / $rest" "$faults" "$switches"
        kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    done
done
