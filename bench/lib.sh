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
