# Shared by the benchmark scripts (sourced, from the repository root): a scratch folder, the
# processes started (stopped on exit), free ports and waiting for a listener.

work=$(mktemp -d)
pids=()
# Scripts may define `extra_cleanup` for what else they leave behind (databases, ...).
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if declare -F extra_cleanup >/dev/null; then extra_cleanup; fi
    rm -rf "$work"
}
trap cleanup EXIT

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Fail if any of the ports is taken.
require_free_ports() {
    for port in "$@"; do
        if listening "$port"; then
            echo "port $port is in use: stop what listens there first"; exit 1
        fi
    done
}

# Wait (up to 10 s each) until something listens on each port.
wait_for_ports() {
    for port in "$@"; do
        for _ in $(seq 100); do listening "$port" && break; sleep 0.1; done
        listening "$port" || { echo "nothing listens on port $port"; return 1; }
    done
}

# nginx in a process of its own, from $work/NAME, serving the http block's SERVERS; its master
# process's id is kept in NAME_master (its workers are that process's children).
start_nginx() { # name servers [worker_processes]
    mkdir -p "$work/$1"
    cat > "$work/$1/nginx.conf" <<CONF
worker_processes ${3:-auto};
daemon off;
pid $work/$1/nginx.pid;
error_log $work/$1/error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    client_body_temp_path $work/$1;
    proxy_temp_path $work/$1;
    $2
}
CONF
    nginx -c "$work/$1/nginx.conf" -p "$work/$1" &
    pids+=($!)
    declare -g "${1}_master=$!"
}

# nginx answering every request with bench/gateway/upstream.json (a fixed OpenAI chat
# completion) on 127.0.0.1:PORT, from $work/NAME: the upstream the benchmarks measure against.
start_static_upstream() { # port name [worker_processes]
    local body
    body=$(tr -d '\n' < bench/gateway/upstream.json)
    start_nginx "$2" "server {
        listen 127.0.0.1:$1;
        location / { default_type application/json; return 200 '$body'; }
    }" "${3:-auto}"
}

# nginx as a reverse proxy on 127.0.0.1:PORT in front of the upstream on UPSTREAM_PORT (kept
# alive), from $work/proxy, its master's id in proxy_master.
start_proxy_nginx() { # port upstream_port
    start_nginx proxy "upstream static { server 127.0.0.1:$2; keepalive 256; }
    server {
        listen 127.0.0.1:$1;
        location / {
            proxy_pass http://static;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"
}

# A new key's secret, made by llmux BIN with CONFIG; fails (so the script stops) without one.
create_key() { # bin name config
    local key
    key=$("$1" keys create --name "$2" --config "$3" --json | sed -n 's/^ *"key": *"\([^"]*\)".*/\1/p')
    [ -n "$key" ] || { echo "could not create a key" >&2; return 1; }
    echo "$key"
}

# An llmux configuration serving openai/gpt-4o-mini from that upstream (TOML in EXTRA, a
# [cluster] section, goes after [server]).
static_llmux_config() { # file listen_port database data_dir upstream_port [extra]
    cat > "$1" <<CONF
[server]
listen = "127.0.0.1:$2"
database = "$3"
data_dir = "$4"

${6:-}

[[providers]]
slug = "static"
api = "openai"
base_url = "http://127.0.0.1:$5/v1"

[[endpoints]]
model = "openai/gpt-4o-mini"
provider = "static"
upstream_model = "gpt-4o-mini"
pricing = { prompt = "0.15", completion = "0.6" }
CONF
}

# The simulated provider (BIN's `llmux sim`) on PORT, and in `sim_config` the configuration
# that routes deepseek/deepseek-v3.2 to it, answering TOKENS tokens.
start_sim_upstream() { # bin port tokens
    LLMUX_LOG=warn "$1" sim --listen "127.0.0.1:$2" >/dev/null 2>&1 &
    pids+=($!)
    sim_config="
[[providers]]
slug = \"sim\"
api = \"openai\"
base_url = \"http://127.0.0.1:$2/v1\"

[[endpoints]]
model = \"deepseek/deepseek-v3.2\"
provider = \"sim\"
upstream_model = \"deepseek-v3.2+tokens=$3\"
pricing = { prompt = \"0.28\", completion = \"0.42\" }"
}

# The upstream wrk's requests go to (sets `upstream_config`, exports WRK_MODEL): the static
# one of static_llmux_config, or with STREAM=1 the simulated provider (started here on
# SIM_PORT) answering in streams of 64 tokens (STREAM_TOKENS to change; WRK_STREAM=1).
choose_upstream() { # bin sim_port
    upstream_config=""
    export WRK_MODEL=openai/gpt-4o-mini
    if [ "${STREAM:-}" = 1 ]; then
        start_sim_upstream "$1" "$2" "${STREAM_TOKENS:-64}"
        upstream_config=$sim_config
        export WRK_MODEL=deepseek/deepseek-v3.2 WRK_STREAM=1
        wait_for_ports "$2"
    fi
}
