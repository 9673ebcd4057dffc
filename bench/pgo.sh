#!/usr/bin/env bash
# A profile-guided build of llmux: an instrumented build serves a training load (non-streamed
# requests with short and long prompts, and streams, through the same kind of upstreams as
# bench/gateway.sh), then the release build is made again with the profile it wrote.
#
#   bench/pgo.sh                  # → target/pgo/<host>/release/llmux
#   bench/ab.sh target/release/llmux target/pgo/*/release/llmux    # what it changed
#
# Optional: the README's plain release build is the supported one. This one spends about
# a seventh less CPU per request (PERFORMANCE.md, ninth session), at the price of three release
# builds (5 to 7 minutes each on 2 cores). Needs: wrk, nginx, and llvm-profdata of the LLVM
# that rustc uses (Debian: apt-get install llvm-NN, NN as in `rustc -vV`).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
duration="${DURATION:-10}"
host=$(rustc -vV | sed -n 's/^host: //p')
llvm=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
profdata=""
for candidate in "llvm-profdata-$llvm" llvm-profdata; do
    if command -v "$candidate" >/dev/null && "$candidate" --version | grep -q "LLVM version $llvm\."; then
        profdata=$candidate; break
    fi
done
[ -n "$profdata" ] || { echo "llvm-profdata of LLVM $llvm is needed (Debian: apt-get install llvm-$llvm)"; exit 1; }
for tool in wrk nginx; do
    command -v "$tool" >/dev/null || { echo "$tool is needed (apt-get install wrk nginx)"; exit 1; }
done

profiles="$root/target/pgo-profiles"
rm -rf "$profiles"; mkdir -p "$profiles"
# `--target`: RUSTFLAGS then apply to llmux and its dependencies, not to build scripts and
# procedural macros (which are not what serves requests).
echo "1/3 building the plain and the instrumented llmux"
cargo build --release --locked --quiet -p llmux --bin llmux
RUSTFLAGS="-Cprofile-generate=$profiles" cargo build --release --locked --quiet -p llmux --bin llmux \
    --target "$host" --target-dir target/pgo-generate
plain=$root/target/release/llmux
instrumented=$root/target/pgo-generate/$host/release/llmux

source bench/lib.sh
static_port=18591; llmux_port=18593; sim_port=18594
require_free_ports $static_port $llmux_port $sim_port
start_static_upstream $static_port static
start_sim_upstream "$plain" $sim_port 50
static_llmux_config "$work/llmux.toml" $llmux_port "sqlite://$work/llmux.db" "$work/data" $static_port "$sim_config"
key=$(create_key "$plain" pgo "$work/llmux.toml")
export WRK_KEY=$key
wait_for_ports $static_port $sim_port

echo "2/3 training the instrumented llmux (${duration} s per load)"
LLVM_PROFILE_FILE="$profiles/llmux-%p-%m.profraw" LLMUX_LOG=warn \
    "$instrumented" serve --config "$work/llmux.toml" >/dev/null 2>"$work/llmux.log" &
llmux_pid=$!
pids+=($llmux_pid)
wait_for_ports $llmux_port
url="http://127.0.0.1:$llmux_port/api/v1/chat/completions"
train() { # connections script model
    local out
    out=$(WRK_MODEL=$3 wrk -t1 -c"$1" -d"${duration}s" -s "bench/gateway/$2" "$url")
    ! grep -q "Non-2xx" <<<"$out" || { echo "failed requests while training ($2):"; echo "$out"; exit 1; }
    echo "  $2${WRK_STREAM:+ streamed}, $1 connections: $(awk '/requests in/ {print $1}' <<<"$out") requests"
}
train 32 post.lua openai/gpt-4o-mini
train 1 post.lua openai/gpt-4o-mini
train 8 post-long.lua openai/gpt-4o-mini
WRK_STREAM=1 train 16 post.lua deepseek/deepseek-v3.2
# A graceful stop: the profile is written as the process exits.
kill -TERM "$llmux_pid"; wait "$llmux_pid" 2>/dev/null || true
ls "$profiles"/*.profraw >/dev/null 2>&1 || { echo "the instrumented llmux wrote no profile"; exit 1; }
"$profdata" merge -o "$profiles/merged.profdata" "$profiles"/*.profraw
# Named by its content: Cargo rebuilds what RUSTFLAGS name, not what a file they name holds,
# so a new profile under the same name would leave the dependencies built with the old one.
profile="$profiles/llmux-$(sha256sum "$profiles/merged.profdata" | cut -c1-16).profdata"
mv "$profiles/merged.profdata" "$profile"

echo "3/3 building llmux with the profile"
RUSTFLAGS="-Cprofile-use=$profile" \
    cargo build --release --locked --quiet -p llmux --bin llmux --target "$host" --target-dir target/pgo
echo "built: target/pgo/$host/release/llmux"
