# Shell functions shared by scripts/bench and its parts; sourced, not run.

step() { printf '\n==> %s\n' "$*" >&2; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits up to 30 s for a TCP listener on 127.0.0.1:PORT: wait_for_port PORT WHAT [LOG].
# On failure prints the server's LOG, which the caller's cleanup is about to delete.
wait_for_port() {
    local port=$1 what=$2 log=${3:-}
    for _ in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "error: $what did not listen on 127.0.0.1:$port within 30 s" >&2
    if [ -n "$log" ] && [ -s "$log" ]; then
        echo "its log:" >&2
        tail -n 20 "$log" >&2
    fi
    exit 1
}

# Exits with an error unless an option has its value: require_value OPTION ARGUMENT_COUNT.
require_value() {
    if [ "$2" -lt 2 ]; then
        echo "error: $1 needs a value; see the usage at the top of $0" >&2
        exit 2
    fi
}

# Exits with an error unless VALUE is a positive whole number: require_count OPTION VALUE.
require_count() {
    if ! [[ "$2" =~ ^[1-9][0-9]*$ ]]; then
        echo "error: $1 is '$2'; use a positive whole number" >&2
        exit 2
    fi
}

# Starts `sluice serve` on a free loopback port: start_sluice BINARY LOGPREFIX ARGS...
# Sets sluice_pid and sluice_url, and adds the process to pids for the caller's cleanup.
start_sluice() {
    local binary=$1 log=$2
    shift 2
    "$binary" serve --listen 127.0.0.1:0 "$@" >"$log.out" 2>"$log.err" &
    sluice_pid=$!
    pids+=("$sluice_pid")
    for _ in $(seq 1 600); do
        [ -s "$log.out" ] && break
        kill -0 "$sluice_pid" 2>/dev/null || break
        sleep 0.1
    done
    sluice_url=$(sed -n 's/^sluice listening on //p' "$log.out")
    if [ -z "$sluice_url" ]; then
        echo "error: sluice did not start; its log:" >&2
        cat "$log.err" >&2
        exit 1
    fi
}

# Stops a process this script started, by its id, and waits for it to exit.
stop_pid() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# Resident memory of a process in KiB, from /proc: rss_kib PID [VmRSS|VmHWM].
rss_kib() {
    awk -v field="${2:-VmRSS}:" '$1 == field { print $2 }' "/proc/$1/status"
}

# Installs the Debian packages that provide the given commands or files, when missing:
# install_missing COMMAND_OR_PATH=PACKAGE... Needs root.
install_missing() {
    local wanted packages=()
    for wanted in "$@"; do
        local what=${wanted%%=*} package=${wanted#*=}
        if [[ "$what" == /* ]]; then
            [ -e "$what" ] && continue
        else
            command -v "$what" >/dev/null 2>&1 && continue
        fi
        packages+=("$package")
    done
    if [ ${#packages[@]} -gt 0 ]; then
        step "installing ${packages[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
    fi
}
