#!/usr/bin/env bash
# The real components the end-to-end checks (scripts/e2e.py) talk to, all on 127.0.0.1:
#   Prometheus     :19090  scrapes the prometheus_metrics example (:9095), the metrics_facade
#                          example (:9097) and the Pushgateway every second, and loads
#                          monitoring/prometheus/alerts.yml
#   Pushgateway    :19091
#   OTLP receiver  :14318  scripts/otlp_receiver.py (spans and metrics as JSON lines)
#   and, optional (a failure to start them leaves the others running; their e2e checks fail):
#   Pushgateway    :19093  over HTTPS with basic auth (a self-signed certificate and a random
#                          password made at start, in $GOSCOPE_WORK/tls/)
#   OTLP receiver  :14319  over HTTPS, requiring the header x-api-key (spans-tls.jsonl)
#
#   scripts/services.sh install   install what is missing (Debian packages, a Python venv)
#   scripts/services.sh start     start all three and wait until they answer
#   scripts/services.sh stop      stop what `start` started, by PID
#   scripts/services.sh status
#
# Sourced (scripts/test.sh, .ci/run), it defines the same commands as functions, so the servers
# are children of the calling shell, which stops them by PID (also on failure, from a trap).

GOSCOPE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GOSCOPE_WORK=${GOSCOPE_WORK:-$GOSCOPE_ROOT/.ci-work}
GOSCOPE_VENV=$GOSCOPE_ROOT/.venv
export GOSCOPE_WORK
# The addresses below are defaults: set them to run a second set of services beside the first.
export GOSCOPE_PROMETHEUS=${GOSCOPE_PROMETHEUS:-127.0.0.1:19090}
export GOSCOPE_PUSHGATEWAY=${GOSCOPE_PUSHGATEWAY:-127.0.0.1:19091}
export GOSCOPE_OTLP=${GOSCOPE_OTLP:-127.0.0.1:14318}
export GOSCOPE_METRICS_EXAMPLE=${GOSCOPE_METRICS_EXAMPLE:-127.0.0.1:9095}
export GOSCOPE_FACADE_EXAMPLE=${GOSCOPE_FACADE_EXAMPLE:-127.0.0.1:9097}
export GOSCOPE_PUSHGATEWAY_TLS=${GOSCOPE_PUSHGATEWAY_TLS:-127.0.0.1:19093}
export GOSCOPE_OTLP_TLS=${GOSCOPE_OTLP_TLS:-127.0.0.1:14319}

services_missing() {
    local missing=()
    command -v prometheus >/dev/null || missing+=(prometheus)
    command -v promtool >/dev/null || missing+=(promtool)
    command -v prometheus-pushgateway >/dev/null || missing+=(prometheus-pushgateway)
    # Makes the self-signed certificate of the HTTPS services.
    command -v openssl >/dev/null || missing+=(openssl)
    "$GOSCOPE_VENV/bin/python" -c 'import opentelemetry.proto' 2>/dev/null || missing+=(opentelemetry-proto)
    "$GOSCOPE_VENV/bin/python" -c 'import bcrypt' 2>/dev/null || missing+=(bcrypt)
    "$GOSCOPE_VENV/bin/python" -c 'import prometheus_client' 2>/dev/null || missing+=(prometheus-client)
    echo "${missing[*]}"
}

services_install() {
    local missing
    missing=$(services_missing)
    if [[ -z $missing ]]; then
        return 0
    fi
    echo "installing: $missing"
    if [[ $missing == *prom* || $missing == *openssl* ]]; then
        if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
            echo "error: Prometheus, promtool and the Pushgateway are missing; install Debian's" \
                "packages (sudo apt-get install --no-install-recommends prometheus" \
                "prometheus-pushgateway), or run GOSCOPE_SKIP_E2E=1 scripts/test.sh for the" \
                "cargo tests alone" >&2
            return 1
        fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            prometheus prometheus-pushgateway openssl >/dev/null
    fi
    if [[ $missing == *opentelemetry-proto* || $missing == *bcrypt* || $missing == *prometheus-client* ]]; then
        if ! { { [[ -x $GOSCOPE_VENV/bin/pip ]] || python3 -m venv "$GOSCOPE_VENV"; } &&
            "$GOSCOPE_VENV/bin/pip" install -q opentelemetry-proto bcrypt prometheus-client; }; then
            echo "error: could not create $GOSCOPE_VENV with PyPI's opentelemetry-proto, bcrypt and prometheus-client" \
                "(python3 with the venv module and access to PyPI are needed)" >&2
            return 1
        fi
    fi
}

# True when every component answers.
# True when the services answer and are this checkout's (started from here, so their output
# files are in this checkout's work folder); another checkout's services on the same ports are
# not used.
services_ready() {
    _services_started_here &&
        curl -sf -o /dev/null "http://$GOSCOPE_PROMETHEUS/-/ready" &&
        curl -sf -o /dev/null "http://$GOSCOPE_PUSHGATEWAY/-/ready" &&
        curl -sf -o /dev/null "http://$GOSCOPE_OTLP/healthz"
}

_services_started_here() {
    local pid count=0
    [[ -f $GOSCOPE_WORK/pids ]] || return 1
    while read -r pid; do
        [[ -n $pid ]] || continue
        _services_alive "$pid" && _services_ours "$pid" || return 1
        count=$((count + 1))
    done <"$GOSCOPE_WORK/pids"
    ((count > 0))
}

services_status() {
    local name url
    for name in prometheus pushgateway otlp; do
        case $name in
        prometheus) url="http://$GOSCOPE_PROMETHEUS/-/ready" ;;
        pushgateway) url="http://$GOSCOPE_PUSHGATEWAY/-/ready" ;;
        otlp) url="http://$GOSCOPE_OTLP/healthz" ;;
        esac
        if curl -sf -o /dev/null "$url"; then echo "$name: up"; else echo "$name: down"; fi
    done
}

_services_write_config() {
    cat >"$GOSCOPE_WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $GOSCOPE_ROOT/monitoring/prometheus/alerts.yml
scrape_configs:
  - job_name: goscope-example
    static_configs:
      - targets: ["$GOSCOPE_METRICS_EXAMPLE"]
  - job_name: goscope-facade
    static_configs:
      - targets: ["$GOSCOPE_FACADE_EXAMPLE"]
  - job_name: pushgateway
    honor_labels: true
    static_configs:
      - targets: ["$GOSCOPE_PUSHGATEWAY"]
EOF
}

services_start() {
    if services_ready; then
        echo "services already running"
        return 0
    fi
    local missing
    missing=$(services_missing)
    # bcrypt is needed only by the optional HTTPS services.
    if [[ -n ${missing/bcrypt/} ]]; then
        echo "error: missing $missing: run scripts/services.sh install first" >&2
        return 1
    fi
    local address
    for address in "$GOSCOPE_PROMETHEUS" "$GOSCOPE_PUSHGATEWAY" "$GOSCOPE_OTLP"; do
        if curl -s -o /dev/null "http://$address/"; then
            echo "error: $address is taken by another program (or another checkout's services);" \
                "stop it and retry" >&2
            return 1
        fi
    done
    mkdir -p "$GOSCOPE_WORK"
    rm -rf "$GOSCOPE_WORK/prometheus-data"
    : >"$GOSCOPE_WORK/pids"
    : >"$GOSCOPE_WORK/spans.jsonl"
    : >"$GOSCOPE_WORK/otlp-metrics.jsonl"
    _services_write_config
    # Plain `cmd &` lines: `$!` is then the server itself, not a subshell.
    prometheus --config.file="$GOSCOPE_WORK/prometheus.yml" \
        --storage.tsdb.path="$GOSCOPE_WORK/prometheus-data" \
        --web.listen-address="$GOSCOPE_PROMETHEUS" >"$GOSCOPE_WORK/prometheus.log" 2>&1 &
    echo $! >>"$GOSCOPE_WORK/pids"
    prometheus-pushgateway --web.listen-address="$GOSCOPE_PUSHGATEWAY" \
        >"$GOSCOPE_WORK/pushgateway.log" 2>&1 &
    echo $! >>"$GOSCOPE_WORK/pids"
    "$GOSCOPE_VENV/bin/python" "$GOSCOPE_ROOT/scripts/otlp_receiver.py" \
        --host "${GOSCOPE_OTLP%:*}" --port "${GOSCOPE_OTLP##*:}" \
        --spans "$GOSCOPE_WORK/spans.jsonl" --metrics "$GOSCOPE_WORK/otlp-metrics.jsonl" \
        >"$GOSCOPE_WORK/otlp.log" 2>&1 &
    echo $! >>"$GOSCOPE_WORK/pids"
    local waited=0
    until services_ready; do
        if ((waited >= 200)); then
            echo "error: the services did not become ready within 20 s; logs:" >&2
            tail -n 20 "$GOSCOPE_WORK"/*.log >&2
            services_stop
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    echo "services ready in $((waited / 10)).$((waited % 10)) s (pids $(tr '\n' ' ' <"$GOSCOPE_WORK/pids"))"
    _services_start_secure || echo "warning: the HTTPS Pushgateway and OTLP receiver did not" \
        "start (see $GOSCOPE_WORK/pushgateway-tls.log, otlp-tls.log); their e2e checks will fail" >&2
}

# The HTTPS services: a self-signed certificate for 127.0.0.1, a Pushgateway that wants basic
# auth (user `ci`, a random password in tls/password) and an OTLP receiver that wants the header
# x-api-key (a random value in tls/otlp-api-key). Their PIDs join the pids file once both
# answer; if they do not, they are stopped and the other services run on without them.
_services_start_secure() {
    local tls=$GOSCOPE_WORK/tls password hash waited=0 gateway receiver
    command -v openssl >/dev/null || { echo "openssl is missing" >&2; return 1; }
    "$GOSCOPE_VENV/bin/python" -c 'import bcrypt' 2>/dev/null ||
        { echo "PyPI's bcrypt is missing from $GOSCOPE_VENV" >&2; return 1; }
    rm -rf "$tls"
    mkdir -p "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
        -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
        -addext "basicConstraints=critical,CA:FALSE" \
        -addext "extendedKeyUsage=serverAuth" \
        -keyout "$tls/key.pem" -out "$tls/cert.pem" 2>"$tls/openssl.log" || return 1
    password=$("$GOSCOPE_VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(18))')
    printf '%s' "$password" >"$tls/password"
    "$GOSCOPE_VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(18), end="")' \
        >"$tls/otlp-api-key"
    hash=$(PASSWORD=$password "$GOSCOPE_VENV/bin/python" -c \
        'import bcrypt, os; print(bcrypt.hashpw(os.environ["PASSWORD"].encode(), bcrypt.gensalt(rounds=10)).decode())')
    printf 'tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  ci: %s\n' \
        "$tls/cert.pem" "$tls/key.pem" "'$hash'" >"$tls/web-config.yml"
    prometheus-pushgateway --web.listen-address="$GOSCOPE_PUSHGATEWAY_TLS" \
        --web.config.file="$tls/web-config.yml" >"$GOSCOPE_WORK/pushgateway-tls.log" 2>&1 &
    gateway=$!
    : >"$GOSCOPE_WORK/spans-tls.jsonl"
    "$GOSCOPE_VENV/bin/python" "$GOSCOPE_ROOT/scripts/otlp_receiver.py" \
        --host "${GOSCOPE_OTLP_TLS%:*}" --port "${GOSCOPE_OTLP_TLS##*:}" \
        --tls-cert "$tls/cert.pem" --tls-key "$tls/key.pem" \
        --require-header "x-api-key=$(cat "$tls/otlp-api-key")" \
        --spans "$GOSCOPE_WORK/spans-tls.jsonl" --metrics "$GOSCOPE_WORK/otlp-metrics-tls.jsonl" \
        >"$GOSCOPE_WORK/otlp-tls.log" 2>&1 &
    receiver=$!
    until curl -sf -o /dev/null --cacert "$tls/cert.pem" -u "ci:$password" \
        "https://$GOSCOPE_PUSHGATEWAY_TLS/-/ready" &&
        curl -sf -o /dev/null --cacert "$tls/cert.pem" "https://$GOSCOPE_OTLP_TLS/healthz"; do
        if ((waited >= 100)); then
            kill -TERM "$gateway" "$receiver" 2>/dev/null
            wait "$gateway" "$receiver" 2>/dev/null
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    printf '%s\n%s\n' "$gateway" "$receiver" >>"$GOSCOPE_WORK/pids"
    echo "HTTPS services ready: Pushgateway https://$GOSCOPE_PUSHGATEWAY_TLS," \
        "OTLP receiver https://$GOSCOPE_OTLP_TLS"
}

# Alive and not a zombie.
_services_alive() {
    local state
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    [[ -n $state && $state != Z ]]
}

# A recorded PID is only signalled while it still runs one of our servers (PIDs get reused).
_services_ours() {
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qE 'prometheus|pushgateway|otlp_receiver'
}

services_stop() {
    local pids_file="$GOSCOPE_WORK/pids" pid pids=() waited=0
    [[ -f $pids_file ]] || return 0
    while read -r pid; do
        if [[ -n $pid ]] && _services_ours "$pid"; then
            pids+=("$pid")
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done <"$pids_file"
    for pid in "${pids[@]}"; do
        while _services_alive "$pid" && ((waited < 50)); do
            sleep 0.1
            waited=$((waited + 1))
        done
        if _services_alive "$pid"; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    rm -f "$pids_file"
    echo "services stopped"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -euo pipefail
    case ${1:-} in
    install) services_install ;;
    start) services_start ;;
    stop) services_stop ;;
    status) services_status ;;
    *)
        echo "usage: $0 install|start|stop|status" >&2
        exit 2
        ;;
    esac
fi
