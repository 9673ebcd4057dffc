#!/usr/bin/env bash
# Where a proxied request's time goes at one connection: nginx's reverse proxy and llmux, each
# in front of the same static upstream (as in bench/gateway.sh), their system calls timed by
# the kernel's tracepoints (`perf record`, far lighter than strace's stops). For each request:
#
#   request read -> upstream write    the proxy's own work before the upstream call
#   upstream write -> answer read     the upstream's leg (its wake-up, its work, the loopback)
#   answer read -> client write       the proxy's own work after it
#
# The first and last are what a gateway controls; the middle one moves with where the kernel
# wakes the upstream, which on a two-core virtual machine decides most of target 2's figure
# (bench/gateway.sh). Tracing adds about a microsecond to each system call, to both paths.
#
#   bench/legs.sh                      # target/release/llmux
#   LLMUX=/tmp/llmux-before bench/legs.sh
#
# Needs: perf (with access to tracepoints: root), wrk, nginx.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in perf wrk nginx; do
    command -v "$tool" >/dev/null || { echo "$tool is needed (apt-get install linux-perf wrk nginx)"; exit 1; }
done
llmux="${LLMUX:-target/release/llmux}"
[ -x "$llmux" ] || { echo "$llmux is not an executable (cargo build --release)"; exit 1; }
source bench/lib.sh

static_port=18561; proxy_port=18562; llmux_port=18563
require_free_ports $static_port $proxy_port $llmux_port
start_static_upstream $static_port static
start_proxy_nginx $proxy_port $static_port
static_llmux_config "$work/llmux.toml" $llmux_port "sqlite://$work/llmux.db" "$work/data" $static_port
key=$(create_key "$llmux" legs "$work/llmux.toml")
LLMUX_LOG=warn "$llmux" serve --config "$work/llmux.toml" >/dev/null 2>"$work/llmux.log" &
llmux_pid=$!
pids+=($llmux_pid)
wait_for_ports $static_port $proxy_port $llmux_port
export WRK_KEY=$key WRK_MODEL=openai/gpt-4o-mini

# Per thread, the system calls in order; a request is a read from one socket, a write to
# another, a read from that one and a write back to the first. Prints each request's three
# legs in microseconds (perf's times are seconds, to the microsecond).
legs() { # perf script output, sorted by thread
    awk '
        $3 == "syscalls:sys_enter_recvfrom:" { fd[$1] = $5; next }
        $3 == "syscalls:sys_exit_recvfrom:" {
            if ($4 !~ /^0xf/ && $4 != "0x0") push($1, $2 + 0, "r", fd[$1]); next }
        $3 == "syscalls:sys_enter_writev:" { push($1, $2 + 0, "w", $5) }
        function push(tid, t, kind, f,    n) {
            n = ++count[tid]; T[tid, n] = t; K[tid, n] = kind; F[tid, n] = f
            if (n < 4) return
            if (K[tid, n-3] K[tid, n-2] K[tid, n-1] kind == "rwrw" && F[tid, n-3] == f &&
                F[tid, n-2] == F[tid, n-1] && F[tid, n-2] != f) {
                printf "%.0f %.0f %.0f\n", (T[tid, n-2] - T[tid, n-3]) * 1e6,
                    (T[tid, n-1] - T[tid, n-2]) * 1e6, (t - T[tid, n-1]) * 1e6
                count[tid] = 0
            }
        }' "$1"
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : "?") }'; }

for path in nginx llmux; do
    case $path in
        nginx) url="http://127.0.0.1:$proxy_port/v1/chat/completions"; procs=$(pgrep -P "$proxy_master" | paste -sd,) ;;
        llmux) url="http://127.0.0.1:$llmux_port/api/v1/chat/completions"; procs=$llmux_pid ;;
    esac
    wrk -t1 -c1 -d2s -s bench/gateway/post.lua "$url" >/dev/null
    perf record -q -e syscalls:sys_enter_recvfrom,syscalls:sys_exit_recvfrom,syscalls:sys_enter_writev \
        -p "$procs" -o "$work/perf.$path" >/dev/null 2>&1 &
    recording=$!
    sleep 0.5
    p50=$(wrk -t1 -c1 -d"${DURATION:-3}"s --latency -s bench/gateway/post.lua "$url" | awk '/ 50%/ {print $2}')
    kill -INT $recording; wait $recording 2>/dev/null || true
    echo "$path, one connection (wrk's p50 while traced: $p50)"
    perf script -i "$work/perf.$path" -F tid,time,event,trace 2>/dev/null | sort -s -k1,1n > "$work/calls.$path"
    legs "$work/calls.$path" > "$work/legs.$path"
    echo "  $(wc -l < "$work/legs.$path") requests; p50:" \
        "request read -> upstream write $(cut -d' ' -f1 "$work/legs.$path" | median) us," \
        "upstream write -> answer read $(cut -d' ' -f2 "$work/legs.$path" | median) us," \
        "answer read -> client write $(cut -d' ' -f3 "$work/legs.$path" | median) us"
done
