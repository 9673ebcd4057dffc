#!/usr/bin/env bash
# Instructions per request: llmux binaries under valgrind's callgrind, each answering the same
# requests one at a time (non-streamed, or streamed with STREAM=1; configuration as in
# bench/ab.sh: a real key, metering, the spool, SQLite). Time moves by ±30% with this
# machine's other tenants; the count of instructions does not, so a change of 1% shows (user
# space only: the kernel's share, a third of the time at one connection, is not counted). A
# vector instruction counts as one, and valgrind hides the CPU's SHA instructions: where a
# change swaps one library's code for another's, time it too (llmux-bench json, bench/ab.sh).
#
#   bench/instructions.sh /tmp/llmux-before target/release/llmux
#   DURATION=30 TOP=25 bench/instructions.sh A B
#   SCRIPT=bench/gateway/post-long.lua bench/instructions.sh A B    # a 37 KB prompt
#   SCRIPT=bench/gateway/post-anthropic-long.lua bench/instructions.sh A B    # a 50 KB Anthropic request
#   STREAM=1 bench/instructions.sh A B      # streamed answers, 64 tokens each
#   STREAM=1 STREAM_TOKENS=1 bench/instructions.sh A B     # a stream's opening: one token
#
# Prints, per binary: instructions per request, in all threads and in the serving threads
# alone, then the heaviest of llmux's own functions on the serving threads, inclusive, per
# request. Compare the serving threads' figure: the rest (the metering writer and SQLite) does
# less per record in larger batches, so its share moves with how many requests valgrind let
# through (two runs of one binary differed by 2,000 in all threads and by 300 in the serving
# thread). Needs: valgrind, wrk, nginx.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bench/instructions.sh BINARY [BINARY...]"; exit 2; }
for tool in valgrind callgrind_annotate callgrind_control wrk nginx; do
    command -v "$tool" >/dev/null || { echo "$tool is needed (apt-get install valgrind wrk nginx)"; exit 1; }
done
for b in "$@"; do [ -x "$b" ] || { echo "$b is not an executable"; exit 1; }; done
duration="${DURATION:-15}"; top="${TOP:-15}"
script="${SCRIPT:-bench/gateway/post.lua}"

source bench/lib.sh

static_port=18541; llmux_port=18543; sim_port=18544
require_free_ports $static_port $llmux_port $sim_port

start_static_upstream $static_port nginx 1
choose_upstream "$1" $sim_port
wait_for_ports $static_port
static_llmux_config "$work/llmux.toml" $llmux_port "sqlite://$work/llmux.db" "$work/data" $static_port "$upstream_config"
key=$(create_key "$1" instructions "$work/llmux.toml")
export WRK_KEY=$key
url="http://127.0.0.1:$llmux_port/api/v1/chat/completions"

i=0
for b in "$@"; do
    i=$((i + 1))
    out="$work/callgrind.$i"
    LLMUX_LOG=warn valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$out" \
        "$b" serve --config "$work/llmux.toml" >/dev/null 2>>"$work/valgrind.log" &
    pid=$!
    # Under valgrind, starting takes seconds.
    for _ in $(seq 600); do listening $llmux_port && break; sleep 0.1; done
    listening $llmux_port || { echo "$b did not start under valgrind"; tail "$work/valgrind.log"; exit 1; }
    # Warm up (connections, caches, the first requests' one-time work), then count from zero.
    wrk -t1 -c1 -d3s -s "$script" "$url" >/dev/null
    callgrind_control -z "$pid" >/dev/null 2>&1
    result=$(wrk -t1 -c1 -d"${duration}s" -s "$script" "$url")
    n=$(awk '/requests in/ {print $1}' <<<"$result")
    callgrind_control -d "$pid" >/dev/null 2>&1
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    # The dump asked for above is numbered .1, a file per thread (.1-01, ...); the one written
    # at exit is the rest. The serving threads are those that ran the accept loop.
    total=0; serving=0; heaviest=""; most=0
    for profile in "$out".1-*; do
        t=$(callgrind_annotate "$profile" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
        [[ "$t" =~ ^[0-9]+$ ]] || continue
        total=$((total + t))
        if grep -q "workers::Thread::spawn" "$profile"; then
            serving=$((serving + t))
            if [ "$t" -gt "$most" ]; then most=$t; heaviest=$profile; fi
        fi
    done
    [ -n "$heaviest" ] || { echo "no profile of a serving thread from $b"; exit 1; }
    echo
    echo "$b: $n requests, $((total / n)) instructions per request in all threads, $((serving / n)) in the serving threads"
    echo "  llmux's heaviest functions on the busiest serving thread, inclusive, instructions per request:"
    callgrind_annotate --inclusive=yes "$heaviest" 2>/dev/null \
        | awk -v n="$n" -v top="$top" '
            /\/crates\/llmux(-protocol)?\/src\/.*:llmux/ && !/\{\{closure\}\}|=>|</ {
                gsub(",", "", $1); name = $0; sub(/^.*:llmux/, "llmux", name); sub(/ \[.*$/, "", name)
                if (!(name in seen) && shown < top) { seen[name] = 1; shown++; printf "  %9d  %s\n", $1 / n, name }
            }'
done
