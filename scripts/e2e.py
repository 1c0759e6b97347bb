#!/usr/bin/env python3
"""End-to-end checks of the observability integrations against real components.

Needs the services of scripts/services.sh running (Prometheus, a Pushgateway, the OTLP
receiver) and the workspace's examples; scripts/test.sh runs it after the cargo tests.
Standard library only. Ends with a line `N passed, M failed`.
"""

import base64
import gzip
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.environ.get("GOSCOPE_WORK", os.path.join(ROOT, ".ci-work"))
PROMETHEUS = "http://" + os.environ.get("GOSCOPE_PROMETHEUS", "127.0.0.1:19090")
PUSHGATEWAY = "http://" + os.environ.get("GOSCOPE_PUSHGATEWAY", "127.0.0.1:19091")
OTLP = "http://" + os.environ.get("GOSCOPE_OTLP", "127.0.0.1:14318")
METRICS_ADDR = os.environ.get("GOSCOPE_METRICS_EXAMPLE", "127.0.0.1:9095")
FACADE_ADDR = os.environ.get("GOSCOPE_FACADE_EXAMPLE", "127.0.0.1:9097")
AXUM_ADDR = os.environ.get("GOSCOPE_AXUM_EXAMPLE", "127.0.0.1:9096")
PUSHGATEWAY_TLS = os.environ.get("GOSCOPE_PUSHGATEWAY_TLS", "127.0.0.1:19093")
OTLP_TLS = os.environ.get("GOSCOPE_OTLP_TLS", "127.0.0.1:14319")
PROPAGATION_ADDR = os.environ.get("GOSCOPE_PROPAGATION_EXAMPLE", "127.0.0.1:9098")
SPANS_FILE = os.path.join(WORK, "spans.jsonl")
OTLP_METRICS_FILE = os.path.join(WORK, "otlp-metrics.jsonl")

# The span attributes of the original library (plus scope.errors and goscope.task.wait_ms).
SCOPE_ATTRIBUTES = ["scope.timeout", "scope.has_parent_signal", "scope.has_parent_scope",
                    "scope.concurrency", "scope.duration_ms", "scope.errors"]
TASK_ATTRIBUTES = ["task.index", "task.has_retry", "task.has_timeout", "task.has_circuit_breaker",
                   "task.scope_concurrency", "task.duration_ms", "task.retry_attempts",
                   "goscope.task.wait_ms"]

# What the prometheus_metrics example reports after `--orders 8` (every fourth card declined:
# 6 orders x 3 tasks + 2 orders x 2 tasks, one provided connection per order).
ORDERS = 8
ORDER = '{job="goscope-example",scope="process-order"}'
EXPECTED_ORDERS = {
    f"goscope_tasks_spawned_total{ORDER}": 22,
    f"goscope_tasks_completed_total{ORDER}": 20,
    f"goscope_tasks_failed_total{ORDER}": 2,
    f"goscope_tasks_cancelled_total{ORDER}": 0,
    f"goscope_resources_registered_total{ORDER}": 8,
    f"goscope_resources_disposed_total{ORDER}": 8,
    # Every task that ran is in the run-time histogram, the declined charges too.
    f"sum(goscope_task_run_seconds_count{ORDER})": 22,
    f'goscope_task_run_seconds_count{{job="goscope-example",scope="process-order",outcome="error"}}': 2,
    f"goscope_tasks_running{ORDER}": 0,
    f"goscope_scopes_open{ORDER}": 0,
}
# What the metrics_facade and otel_metrics examples record after `--batches 5`: four records a
# batch, the second retried once, the fourth malformed.
BATCHES = 5
EXPECTED_IMPORTS = {"spawned": 20, "completed": 15, "failed": 5, "cancelled": 0, "retries": 5}
# Each order races three suppliers (two losers cancelled) and books shipping with a 50 ms timeout
# that every fourth order misses; then the example builds this many per-session scope names.
SESSIONS = 10_000
MAX_SCOPE_NAMES = 1_000
# The Python with PyPI's prometheus-client (scripts/services.sh installs it).
VENV_PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
# What the prometheus_push example reports: 20 records, every fifth malformed.
EXPECTED_BATCH = {"spawned": 20, "completed": 16, "failed": 4}


class CheckFailed(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def http(url, data=None, headers=None, method=None):
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def query(expr):
    url = PROMETHEUS + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    status, _, body = http(url)
    answer = json.loads(body)
    expect(status == 200 and answer.get("status") == "success", f"query {expr!r}: {body[:300]!r}")
    return answer["data"]["result"]


def wait_for_value(expr, expected, deadline_s=30):
    """Polls Prometheus until `expr` has one sample equal to `expected`."""
    last = None
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        result = query(expr)
        if result:
            last = float(result[0]["value"][1])
            if len(result) == 1 and last == expected:
                return
        time.sleep(0.25)
    raise CheckFailed(f"{expr} = {last}, expected {expected} (waited {deadline_s} s)")


def target_dir():
    out = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"],
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["target_directory"]


def example(name):
    return os.path.join(target_dir(), "debug", "examples", name)


def read_jsonl(path, start):
    with open(path, encoding="utf-8") as f:
        f.seek(start)
        return [json.loads(line) for line in f if line.strip()]


# ---------------------------------------------------------------------------------------------
# Checks


def scraped_value(text, series):
    """The value of `series` (name and labels, as written) in a Prometheus text page, or None."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def check_axum_service_scopes_every_request():
    """The axum example: each request runs in a scope named after its route; a request whose
    client hangs up has its tasks cancelled; Ctrl-C drains the server."""
    server = subprocess.Popen([example("axum_service"), "--addr", AXUM_ADDR],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = "http://" + AXUM_ADDR
    try:
        first = server.stdout.readline()
        expect("serving on" in first, f"axum_service did not start: {first!r}")
        status, _, body = http(base + "/orders/7")
        expect(status == 200 and body.startswith(b"order 7 for customer-7"), (status, body))
        # Order 13's lines never arrive: the lookup's own 300 ms timeout answers 504.
        status, _, body = http(base + "/orders/13")
        expect(status == 504 and b"timed out" in body, (status, body))

        # A client that asks for the slow report and hangs up after 300 ms.
        host, port = AXUM_ADDR.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as client:
            client.sendall(b"GET /report HTTP/1.1\r\nHost: e2e\r\n\r\n")
            client.settimeout(0.3)
            try:
                expect(not client.recv(1024), "the report answered before the client hung up")
            except socket.timeout:
                pass
            # Meanwhile the live tree shows the request's scope and its three waiting parts.
            status, _, tree = http(base + "/debug/scopes")
            tree = tree.decode()
            expect(status == 200 and "GET /report" in tree and tree.count("report part") == 3,
                   f"/debug/scopes during the report:\n{tree}")
        cancelled = 'goscope_tasks_cancelled_total{scope="GET /report"}'
        completed = 'goscope_tasks_completed_total{scope="GET /report"}'
        deadline = time.monotonic() + 10
        while True:
            _, _, page = http(base + "/metrics")
            page = page.decode()
            if scraped_value(page, cancelled) == 3:
                break
            expect(time.monotonic() < deadline,
                   f"the abandoned report's 3 tasks were not cancelled:\n{page}")
            time.sleep(0.1)
        expect(scraped_value(page, completed) in (None, 0), f"{completed} in\n{page}")
        # The `#[scoped(metrics)]` handler's own scope: two lookups per order.
        spawned = 'goscope_tasks_spawned_total{scope="order"}'
        expect(scraped_value(page, spawned) == 4, f"{spawned} in\n{page}")
    finally:
        server.send_signal(signal.SIGINT)
        try:
            code = server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            raise CheckFailed("axum_service did not drain on SIGINT within 10 s")
    expect(code == 0, f"axum_service exited with {code}")


def check_tracing_example_exports_the_span_tree():
    start = os.path.getsize(SPANS_FILE)
    env = dict(os.environ, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=OTLP + "/v1/traces")
    run = subprocess.run([example("jaeger_tracing")], env=env, capture_output=True, text=True,
                         timeout=60)
    expect(run.returncode == 0, f"jaeger_tracing failed:\n{run.stdout}\n{run.stderr}")
    spans = [s for s in read_jsonl(SPANS_FILE, start) if s["service"] == "order-service"]
    scopes = [s for s in spans if s["name"] == "process-order"]
    expect(len(scopes) == 1, f"one process-order span, got {[s['name'] for s in spans]}")
    scope = scopes[0]
    missing = [a for a in SCOPE_ATTRIBUTES if a not in scope["attributes"]]
    expect(not missing, f"scope span lacks {missing}: {scope['attributes']}")
    expect(scope["attributes"]["order.id"] == 1001, "the scope's own attribute order.id")
    expect(scope["parent_span_id"] == "", "the scope span is a root span")
    tasks = [s for s in spans if s["parent_span_id"] == scope["span_id"] and s["name"] == "scope.task"]
    expect(len(tasks) == 4, f"four task spans under the scope, got {len(tasks)}")
    for task in tasks:
        expect(task["trace_id"] == scope["trace_id"], "tasks share the scope's trace")
        missing = [a for a in TASK_ATTRIBUTES if a not in task["attributes"]]
        expect(not missing, f"task span lacks {missing}: {task['attributes']}")
        expect(scope["start_ns"] <= task["start_ns"] <= task["end_ns"] <= scope["end_ns"],
               "task spans lie within the scope span")
    steps = sorted(t["attributes"].get("step") for t in tasks)
    expect(steps == ["process-payment", "send-email", "send-sms", "validate-order"], f"steps {steps}")
    failed = [t for t in tasks if t["status"]["code"] == "ERROR"]
    expect(len(failed) == 1 and failed[0]["attributes"]["step"] == "send-sms",
           f"only send-sms fails: {[(t['attributes']['step'], t['status']) for t in tasks]}")
    sms = failed[0]
    expect(sms["status"]["message"] == "SMS provider unavailable", f"status {sms['status']}")
    expect(sms["attributes"]["task.error_reason"] == "exception", "task.error_reason")
    exceptions = [e for e in sms["events"] if e["name"] == "exception"]
    expect(exceptions and exceptions[0]["attributes"]["exception.message"] == "SMS provider unavailable",
           f"exception event: {sms['events']}")
    expect(scope["attributes"]["scope.errors"] == 1, "scope.errors counts the failed task")
    payment = next(t for t in tasks if t["attributes"]["step"] == "process-payment")
    attempts = [s for s in spans if s["parent_span_id"] == payment["span_id"]]
    expect(len(attempts) == 2 and all(a["name"] == "payment-attempt" for a in attempts),
           "the user's own spans nest under the task span")
    expect(payment["attributes"]["payment.attempts"] == 2, "attribute recorded from inside the task")
    retry = {k: v for k, v in payment["attributes"].items() if k.startswith("task.retry")}
    expect(retry.get("task.retry.max_retries") == 1 and retry.get("task.retry.has_delay") is True
           and retry.get("task.retry.has_condition") is False,
           f"the payment's retry policy on its span: {retry}")
    expect(retry.get("task.retry.succeeded_after") == 2 and retry.get("task.retry_attempts") == 1,
           f"the payment succeeded on its second attempt: {retry}")
    expect(payment["attributes"].get("task.concurrency.available_before") == 4,
           f"limit details: {payment['attributes']}")


def check_metrics_example_serves_valid_prometheus_text(state):
    status, headers, body = http(f"http://{METRICS_ADDR}/metrics")
    expect(status == 200, f"/metrics answered {status}")
    content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    expect(content_type.startswith("text/plain; version=0.0.4"), f"Content-Type {content_type!r}")
    text = body.decode()
    expect('goscope_tasks_spawned_total{scope="process-order"} 22' in text,
           "the example's own /metrics has the orders' counts")
    lint = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
    expect(lint.returncode == 0, f"promtool check metrics rc {lint.returncode}: {lint.stderr.decode()}")
    state["metrics_text"] = text


def check_debug_scopes_shows_the_live_tree():
    status, headers, body = http(f"http://{METRICS_ADDR}/debug/scopes")
    expect(status == 200, f"/debug/scopes answered {status}")
    text = body.decode()
    expect(text.startswith("scope http-server (#"), f"the server's scope heads the tree:\n{text}")
    expect("waiting on tcp accept" in text, f"the accept loop waits on a named wait:\n{text}")
    status, headers, body = http(f"http://{METRICS_ADDR}/debug/scopes?format=json")
    expect(status == 200, f"/debug/scopes?format=json answered {status}")
    content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    expect(content_type == "application/json", f"Content-Type {content_type!r}")
    scopes = json.loads(body)["scopes"]
    server = next((s for s in scopes if s["name"] == "http-server"), None)
    expect(server is not None, f"no http-server scope in {scopes}")
    expect(server["tracked"] and server["depth"] == 0, f"server scope {server}")
    accept = [t for t in server["tasks"] if t.get("on") == "tcp accept"]
    expect(len(accept) == 1 and accept[0]["state"] == "waiting", f"tasks {server['tasks']}")
    expect(accept[0]["spawned_at"]["file"].endswith("prometheus_metrics.rs"), f"task {accept[0]}")
    wait_for_value('goscope_tasks_by_state{job="goscope-example",scope="http-server",'
                   'state="tracked_wait"}', 1)


def check_prometheus_scrapes_the_expected_values():
    wait_for_value('up{job="goscope-example"}', 1)
    for expr, value in EXPECTED_ORDERS.items():
        wait_for_value(expr, value)
    result = query('goscope_scope_duration_seconds{job="goscope-example",scope="process-order"}')
    expect(result and float(result[0]["value"][1]) > 0, "scope lifetime gauge")


def check_pushed_groups_are_queryable():
    run = subprocess.run([example("prometheus_push"), "--gateway", PUSHGATEWAY,
                          "--job", "goscope_push_example", "--instance", "ci"],
                         capture_output=True, text=True, timeout=60)
    expect(run.returncode == 0, f"prometheus_push failed:\n{run.stdout}\n{run.stderr}")
    group = '{job="goscope_push_example",instance="ci",scope="nightly-batch"}'
    for kind, value in EXPECTED_BATCH.items():
        wait_for_value(f"goscope_tasks_{kind}_total{group}", value)
    live = '{job="goscope_push_example_live",instance="ci"}'
    wait_for_value(f"goscope_tasks_failed_total{live}", EXPECTED_BATCH["failed"])
    status, _, body = http(PUSHGATEWAY + "/api/v1/metrics")
    groups = json.loads(body)["data"]
    jobs = {g["labels"].get("job") for g in groups}
    expect({"goscope_push_example", "goscope_push_example_live"} <= jobs, f"groups {jobs}")


def check_prometheus_scrapes_the_metrics_facade_example():
    """metrics-exporter-prometheus serves the scope metrics that `metrics_facade(true)` recorded
    through the `metrics` crate, beside the application's own counter."""
    server = subprocess.Popen([example("metrics_facade"), "--batches", str(BATCHES),
                               "--addr", FACADE_ADDR],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output = []
        for line in server.stdout:
            output.append(line)
            if "batches done" in line:
                break
        expect(server.poll() is None, "metrics_facade exited early:\n" + "".join(output))
        job = 'job="goscope-facade",scope="import-batch"'
        wait_for_value(f'goscope_tasks_spawned_total{{{job}}}', EXPECTED_IMPORTS["spawned"])
        wait_for_value(f'goscope_tasks_completed_total{{{job}}}', EXPECTED_IMPORTS["completed"])
        wait_for_value(f'goscope_tasks_failed_total{{{job}}}', EXPECTED_IMPORTS["failed"])
        wait_for_value(f'goscope_task_retries_total{{{job}}}', EXPECTED_IMPORTS["retries"])
        wait_for_value(f'goscope_tasks_ended_total{{{job},outcome="error"}}',
                       EXPECTED_IMPORTS["failed"])
        wait_for_value(f'goscope_task_run_seconds_count{{{job},outcome="ok"}}',
                       EXPECTED_IMPORTS["completed"])
        wait_for_value(f'goscope_permit_wait_seconds_count{{{job}}}', EXPECTED_IMPORTS["spawned"])
        wait_for_value(f'goscope_scopes_open{{{job}}}', 0)
        wait_for_value(f'goscope_tasks_running{{{job}}}', 0)
        wait_for_value('app_batches_total{job="goscope-facade"}', BATCHES)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def otlp_points(records, name):
    """The data points of metric `name` among the receiver's records, by their attributes."""
    points = {}
    for record in records:
        if record["name"] != name:
            continue
        for point in record["data"]["dataPoints"]:
            attrs = tuple(sorted((a["key"], a["value"]["stringValue"])
                                 for a in point.get("attributes", [])))
            points[attrs] = point
    return points


def check_otel_meter_exports_protobuf_otlp():
    """The SDK's OTLP exporter sends the instruments recorded through `otel_meter` as a protobuf
    ExportMetricsServiceRequest; the receiver decodes it and the values are the batches'."""
    start = os.path.getsize(OTLP_METRICS_FILE)
    run = subprocess.run([example("otel_metrics"), "--batches", str(BATCHES),
                          "--endpoint", OTLP + "/v1/metrics"],
                         capture_output=True, text=True, timeout=60)
    expect(run.returncode == 0, f"otel_metrics failed:\n{run.stdout}\n{run.stderr}")
    records = [r for r in read_jsonl(OTLP_METRICS_FILE, start)
               if r["service"] == "otel-metrics-example"]
    expect(records, "the receiver got no metrics from otel_metrics")
    scope = (("scope", "import-batch"),)
    for name, kind in (("spawned", "spawned"), ("completed", "completed"),
                       ("failed", "failed"), ("retries", "retries")):
        metric = "goscope.task.retries" if name == "retries" else f"goscope.tasks.{name}"
        point = otlp_points(records, metric).get(scope)
        expect(point is not None, f"{metric}: no point for {scope}")
        expect(int(point["asInt"]) == EXPECTED_IMPORTS[kind], f"{metric} {point}")
    ended = otlp_points(records, "goscope.tasks.ended")
    for outcome, expected in (("ok", EXPECTED_IMPORTS["completed"]),
                              ("error", EXPECTED_IMPORTS["failed"])):
        point = ended.get(tuple(sorted(scope + (("outcome", outcome),))))
        expect(point is not None and int(point["asInt"]) == expected, f"ended {outcome}: {point}")
    run_time = [r for r in records if r["name"] == "goscope.task.run"]
    expect(run_time and run_time[-1]["type"] == "histogram" and run_time[-1]["unit"] == "s",
           f"goscope.task.run {run_time[-1:]}")
    ok = otlp_points(records, "goscope.task.run").get(tuple(sorted(scope + (("outcome", "ok"),))))
    expect(ok is not None and int(ok["count"]) == EXPECTED_IMPORTS["completed"], f"run {ok}")
    running = otlp_points(records, "goscope.tasks.running").get(scope)
    expect(running is not None and int(running.get("asInt", 0)) == 0, f"running {running}")


def check_receiver_decodes_gzip_and_rejects_undecodable_input():
    document = json.dumps({"resourceMetrics": [{"scopeMetrics": [{"metrics": [{
        "name": "e2e.gzip", "sum": {"dataPoints": [{"asInt": "1"}]}}]}]}]}).encode()
    start = os.path.getsize(OTLP_METRICS_FILE)
    status, _, body = http(OTLP + "/v1/metrics", data=gzip.compress(document),
                           headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    expect(status == 200, f"gzip body got {status} {body[:200]!r}")
    names = [r["name"] for r in read_jsonl(OTLP_METRICS_FILE, start)]
    expect(names == ["e2e.gzip"], f"decoded {names}")
    status, _, _ = http(OTLP + "/v1/traces", data=b"\xff\x00not protobuf",
                        headers={"Content-Type": "application/x-protobuf"})
    expect(status == 400, f"garbage got {status}")
    status, _, _ = http(OTLP + "/v1/traces", data=b"{not json",
                        headers={"Content-Type": "application/json"})
    expect(status == 400, f"bad JSON got {status}")


def check_race_losers_are_cancelled_not_failed():
    quote = '{job="goscope-example",scope="quote"}'
    wait_for_value(f"goscope_tasks_cancelled_total{quote}", 2 * ORDERS)
    wait_for_value(f"goscope_tasks_completed_total{quote}", ORDERS)
    wait_for_value(f"goscope_tasks_failed_total{quote}", 0)
    wait_for_value(f'goscope_tasks_ended_total{{job="goscope-example",scope="quote",outcome="cancelled"}}',
                   2 * ORDERS)
    # The error-rate alert's own expression finds nothing for the races. (It may well match
    # other scopes: the declined cards, the shipping timeouts and the pushed batch's malformed
    # records are real failures.)
    rule = next(r for r in loaded_rules() if r["name"] == "HighTaskErrorRate")
    matched = [r["metric"] for r in query(rule["query"]) if r["metric"].get("scope") == "quote"]
    expect(matched == [], f"HighTaskErrorRate's expression matches the races: {matched}")
    firing = query('ALERTS{alertname="HighTaskErrorRate",scope="quote"}')
    expect(firing == [], f"no error-rate alert for the races: {firing}")


def check_a_timeout_is_in_the_run_time_histogram():
    timeouts = ORDERS // 4
    shipping = 'job="goscope-example",scope="shipping",outcome="timeout"'
    wait_for_value(f"goscope_task_run_seconds_count{{{shipping}}}", timeouts)
    wait_for_value('goscope_tasks_failed_total{job="goscope-example",scope="shipping"}', timeouts)
    # Cut at the 50 ms timeout: above 25 ms, at most 100 ms.
    wait_for_value(f'goscope_task_run_seconds_bucket{{{shipping},le="0.025"}}', 0)
    wait_for_value(f'goscope_task_run_seconds_bucket{{{shipping},le="0.1"}}', timeouts)


def check_scope_names_stay_under_the_cap():
    example = '{job="goscope-example"}'
    wait_for_value(f'count(count by (scope) (goscope_tasks_spawned_total{example}))',
                   MAX_SCOPE_NAMES + 1)
    other = query('goscope_tasks_spawned_total{job="goscope-example",scope="__other__"}')
    expect(len(other) == 1, f"one __other__ series: {other}")
    named = query('count(goscope_tasks_spawned_total{job="goscope-example",scope=~"session-.*"})')
    sessions_named = int(float(named[0]["value"][1]))
    expect(float(other[0]["value"][1]) == SESSIONS - sessions_named,
           f"__other__ counts the sessions past the cap: {other} with {sessions_named} named")


PARSE_BOTH_FORMATS = """
import sys
from prometheus_client.parser import text_string_to_metric_families as classic
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
with open(sys.argv[1]) as f:
    families = list(classic(f.read()))
with open(sys.argv[2]) as f:
    om = list(openmetrics(f.read()))
print(len(families), len(om))
"""


def check_both_expositions_parse_with_the_reference_parser():
    expect(os.path.exists(VENV_PYTHON), f"{VENV_PYTHON} missing: run scripts/services.sh install")
    paths = []
    for path, name in (("/metrics", "classic.txt"), ("/metrics/openmetrics", "openmetrics.txt")):
        status, headers, body = http(f"http://{METRICS_ADDR}{path}")
        expect(status == 200, f"{path} answered {status}")
        out = os.path.join(WORK, name)
        with open(out, "wb") as f:
            f.write(body)
        paths.append(out)
    run = subprocess.run([VENV_PYTHON, "-c", PARSE_BOTH_FORMATS, *paths],
                         capture_output=True, text=True, timeout=120)
    expect(run.returncode == 0, f"the reference parser rejected an exposition:\n{run.stderr[-2000:]}")
    classic, om = (int(n) for n in run.stdout.split())
    expect(classic > 0 and om > 0, f"families parsed: {run.stdout}")


def loaded_rules():
    status, _, body = http(PROMETHEUS + "/api/v1/rules")
    expect(status == 200, f"/api/v1/rules answered {status}")
    return [r for g in json.loads(body)["data"]["groups"] for r in g["rules"]]


def exported_families(state):
    return {line.split(" ")[2] for line in state["metrics_text"].splitlines()
            if line.startswith("# TYPE ")}


def expect_exported(where, expr, exported):
    """Every goscope_ metric `expr` names is a family (or a histogram series) of the export."""
    words = expr
    for c in "(){}[],*/+-<>=!~\"'":
        words = words.replace(c, " ")
    for metric in {w for w in words.split() if w.startswith("goscope_")}:
        family = metric
        for suffix in ("_bucket", "_count", "_sum"):
            if metric.endswith(suffix) and metric[: -len(suffix)] in exported:
                family = metric[: -len(suffix)]
        expect(family in exported, f"{where} uses {metric}, which the code does not export")


def check_every_alert_expression_runs_on_exported_metrics(state):
    exported = exported_families(state)
    rules = loaded_rules()
    expect(rules, "Prometheus loaded rules")
    for rule in rules:
        query(rule["query"])  # a syntax or evaluation error fails here
        expect_exported(f"alert {rule['name']}", rule["query"], exported)
        runbook = rule.get("annotations", {}).get("runbook_url", "")
        anchor = runbook.rsplit("#", 1)[-1]
        expect(anchor == rule["name"].lower(), f"alert {rule['name']} runbook_url {runbook!r}")
        with open(os.path.join(ROOT, "docs", "runbook.md"), encoding="utf-8") as f:
            expect(f"\n## {rule['name']}\n" in f.read(), f"docs/runbook.md has no {rule['name']}")


def check_alert_rules_pass_promtool():
    rules = os.path.join(ROOT, "monitoring", "prometheus")
    for args in (["check", "rules", os.path.join(rules, "alerts.yml")],
                 ["test", "rules", os.path.join(rules, "alerts.test.yml")],
                 ["check", "config", os.path.join(rules, "prometheus.yml")]):
        run = subprocess.run(["promtool", *args], capture_output=True, text=True)
        expect(run.returncode == 0, f"promtool {' '.join(args)}:\n{run.stdout}{run.stderr}")


def check_prometheus_loaded_the_alert_rules():
    status, _, body = http(PROMETHEUS + "/api/v1/rules")
    groups = json.loads(body)["data"]["groups"]
    names = sorted(r["name"] for g in groups for r in g["rules"])
    expect(names == ["CircuitBreakerOpen", "HighTaskErrorRate", "PotentialResourceLeak",
                     "ResourceDisposalErrors", "SlowTasks"], f"rules {names}")
    unhealthy = [r["name"] for g in groups for r in g["rules"] if r.get("health") == "err"]
    expect(not unhealthy, f"rules failing to evaluate: {unhealthy}")


def check_dashboard_panels_and_queries(state):
    path = os.path.join(ROOT, "monitoring", "grafana", "dashboards", "go-go-scope.json")
    with open(path, encoding="utf-8") as f:
        dashboard = json.load(f)
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    kinds = {p["type"] for p in panels}
    expect(kinds <= {"timeseries", "stat"}, f"current panel types only: {kinds}")
    expect([i["name"] for i in dashboard.get("__inputs", [])] == ["DS_PROMETHEUS"],
           "a data source input")
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    expect({"DS_PROMETHEUS", "job", "instance", "scope"} <= variables, f"variables {variables}")
    titles = {p["title"] for p in panels}
    for wanted in ("Tasks ended by outcome", "Tasks spawned / completed / failed / cancelled",
                   "Task error rate", "Task run time (p50 / p95 / p99)",
                   "Task run time p95 by outcome", "Breaker state", "Breaker rejections",
                   "Outstanding resources", "Scope lifetime", "Running tasks and open scopes"):
        expect(wanted in titles, f"panel {wanted!r} missing")
    exported = exported_families(state)
    for panel in panels:
        expect(panel["datasource"]["uid"] == "${DS_PROMETHEUS}", f"{panel['title']} data source")
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "1m")
            for variable in ("$job", "$instance", "$scope"):
                expr = expr.replace(variable, ".*")
            query(expr)  # a syntax error fails here
            expect_exported(f"panel {panel['title']!r}", expr, exported)
    # A rate needs two scrapes of the series: wait for the second one.
    deadline = time.monotonic() + 20
    while not query('sum(rate(goscope_tasks_spawned_total{job="goscope-example"}[1m]))'):
        expect(time.monotonic() < deadline, "the dashboard's rate queries see data")
        time.sleep(0.25)


# ---------------------------------------------------------------------------------------------


def check_one_trace_across_two_processes():
    """trace_propagation: a client process calls a server process; both export to the receiver.
    One trace id across both, and the server's scope span is a child of the client's task span."""
    start = os.path.getsize(SPANS_FILE)
    env = dict(os.environ, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=OTLP + "/v1/traces")
    server = subprocess.Popen([example("trace_propagation"), "server", "--addr", PROPAGATION_ADDR],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = server.stdout.readline()
        expect("serving on" in first, f"trace_propagation server did not start: {first!r}")
        client = subprocess.run([example("trace_propagation"), "client", "--addr", PROPAGATION_ADDR],
                                env=env, capture_output=True, text=True, timeout=60)
        expect(client.returncode == 0, f"client failed:\n{client.stdout}\n{client.stderr}")
        expect("reserved 1 of 3" in client.stdout, f"client output {client.stdout!r}")
    finally:
        server.send_signal(signal.SIGINT)
        try:
            rest = server.communicate(timeout=20)[0]
        except subprocess.TimeoutExpired:
            server.kill()
            rest = server.communicate()[0]
    expect(server.returncode == 0 and "spans exported" in rest, f"server ended badly: {rest!r}")
    spans = read_jsonl(SPANS_FILE, start)
    by_name = {}
    for span in spans:
        if span["service"] in ("checkout-client", "inventory-server"):
            by_name.setdefault((span["service"], span["name"]), []).append(span)
    def only(service, name):
        found = by_name.get((service, name), [])
        expect(len(found) == 1, f"one {name} span from {service}, got {sorted(by_name)}")
        return found[0]
    client_scope = only("checkout-client", "place-order")
    client_task = only("checkout-client", "call-inventory")
    server_scope = only("inventory-server", "reserve-stock")
    server_tasks = [only("inventory-server", n) for n in ("check-stock", "look-up-price")]
    traces = {s["trace_id"] for s in [client_scope, client_task, server_scope, *server_tasks]}
    expect(len(traces) == 1, f"one trace across both processes, got {traces}")
    expect(client_scope["parent_span_id"] == "", "the client's scope starts the trace")
    expect(client_task["parent_span_id"] == client_scope["span_id"], "the call is the scope's task")
    expect(server_scope["parent_span_id"] == client_task["span_id"],
           "the server's scope span is a child of the client's task span")
    expect(all(t["parent_span_id"] == server_scope["span_id"] for t in server_tasks),
           "the server's tasks nest under its scope")


def tls_file(name):
    path = os.path.join(WORK, "tls", name)
    expect(os.path.exists(path), f"{path} is missing: the HTTPS services did not start "
           "(scripts/services.sh needs openssl and PyPI's bcrypt)")
    return path


def https(url, cafile, user=None, password=None):
    headers = {}
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = "Basic " + token
    request = urllib.request.Request(url, headers=headers)
    context = ssl.create_default_context(cafile=cafile)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def run_push(*args, password=None):
    env = dict(os.environ)
    if password is not None:
        env["PUSHGATEWAY_PASSWORD"] = password
    return subprocess.run([example("prometheus_push"), *args], env=env, capture_output=True,
                          text=True, timeout=60)


def check_grouping_values_dots_reach_the_gateway():
    """Values a URL path cannot carry go base64-encoded: `..` must not replace the job-only
    group, `.` must not leave a group that breaks the gateway's /metrics."""
    for instance in ["..", "."]:
        run = run_push("--gateway", PUSHGATEWAY, "--job", "goscope_dots", "--instance", instance)
        expect(run.returncode == 0, f"push with instance {instance!r} failed:\n{run.stderr}")
    status, _, body = http(PUSHGATEWAY + "/api/v1/metrics")
    expect(status == 200, f"/api/v1/metrics answered {status}")
    instances = sorted(g["labels"].get("instance") for g in json.loads(body)["data"]
                       if g["labels"].get("job") == "goscope_dots")
    expect(instances == [".", ".."], f"the gateway's goscope_dots groups: {instances}")
    status, _, _ = http(PUSHGATEWAY + "/metrics")
    expect(status == 200, f"the gateway's /metrics answered {status} after the pushes")


def check_push_over_tls_with_basic_auth():
    """A push over HTTPS to a gateway with a self-signed certificate and basic auth: the right
    password gets through, a wrong one is a 401 error, an untrusted certificate fails."""
    cert, password = tls_file("cert.pem"), open(tls_file("password"), encoding="utf-8").read()
    gateway = "https://" + PUSHGATEWAY_TLS
    common = ["--gateway", gateway, "--job", "goscope_tls_push", "--instance", "ci", "--user", "ci"]
    run = run_push(*common, "--ca-cert", cert, password=password)
    expect(run.returncode == 0, f"push over TLS failed:\n{run.stdout}\n{run.stderr}")
    status, body = https(gateway + "/api/v1/metrics", cert, "ci", password)
    expect(status == 200, f"the TLS gateway's API answered {status}")
    jobs = {g["labels"].get("job") for g in json.loads(body)["data"]}
    expect("goscope_tls_push" in jobs, f"groups on the TLS gateway: {jobs}")
    wrong = run_push(*common, "--ca-cert", cert, password=password + "x")
    expect(wrong.returncode != 0 and "status: 401" in wrong.stderr,
           f"a wrong password must fail with 401: rc {wrong.returncode}, {wrong.stderr[-300:]}")
    untrusted = run_push(*common, password=password)
    expect(untrusted.returncode != 0,
           "a push to a certificate nobody trusts must fail")
    plain = run_push("--gateway", gateway.replace("https://", "http://"), "--job", "x",
                     "--instance", "ci", "--user", "ci", password=password)
    expect(plain.returncode != 0, "plain HTTP to the TLS gateway must fail")


def check_span_export_over_tls_with_a_header():
    """The OTLP exporter over HTTPS to the receiver, which wants the header x-api-key: the
    spans arrive decoded; without the header the export fails with 401."""
    cert = tls_file("cert.pem")
    api_key = open(tls_file("otlp-api-key"), encoding="utf-8").read()
    spans_file = os.path.join(WORK, "spans-tls.jsonl")
    start = os.path.getsize(spans_file)
    env = dict(os.environ, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"https://{OTLP_TLS}/v1/traces",
               OTEL_EXPORTER_OTLP_CERTIFICATE=cert, OTEL_EXPORTER_OTLP_HEADERS=f"x-api-key={api_key}")
    run = subprocess.run([example("jaeger_tracing")], env=env, capture_output=True, text=True,
                         timeout=60)
    expect(run.returncode == 0, f"jaeger_tracing over TLS failed:\n{run.stdout}\n{run.stderr}")
    spans = read_jsonl(spans_file, start)
    scopes = [s for s in spans if s["name"] == "process-order"]
    expect(len(scopes) == 1, f"one process-order span over TLS, got {[s['name'] for s in spans]}")
    expect(scopes[0]["scope"] == "go-go-scope", f"instrumentation scope {scopes[0]['scope']!r}")
    del env["OTEL_EXPORTER_OTLP_HEADERS"]
    refused = subprocess.run([example("jaeger_tracing")], env=env, capture_output=True, text=True,
                             timeout=60)
    expect(refused.returncode != 0 and "401" in refused.stderr,
           f"without the header the export must fail with 401: {refused.stderr[-300:]}")


def main():
    for url in (PROMETHEUS + "/-/ready", PUSHGATEWAY + "/-/ready", OTLP + "/healthz"):
        try:
            http(url)
        except OSError as error:
            sys.exit(f"{url} is not answering ({error}): start scripts/services.sh first")
    began = time.monotonic()
    # The examples as `cargo test --workspace --all-features` builds them (same features, so
    # nothing is rebuilt after the test run).
    subprocess.run(["cargo", "test", "-q", "--workspace", "--all-features", "--no-run"],
                   cwd=ROOT, check=True)
    # The metrics example runs for the whole suite: Prometheus scrapes it meanwhile.
    server = subprocess.Popen([example("prometheus_metrics"), "--orders", str(ORDERS),
                               "--sessions", str(SESSIONS), "--addr", METRICS_ADDR],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    state = {}
    results = []
    try:
        output = []
        for line in server.stdout:
            output.append(line)
            if "orders handled" in line:
                break
        if server.poll() is not None:
            sys.exit("prometheus_metrics exited early:\n" + "".join(output))
        checks = [
            ("tracing example exports the span tree", check_tracing_example_exports_the_span_tree),
            ("axum example scopes every request", check_axum_service_scopes_every_request),
            ("one trace across two processes", check_one_trace_across_two_processes),
            ("metrics example serves valid Prometheus text",
             lambda: check_metrics_example_serves_valid_prometheus_text(state)),
            ("Prometheus scrapes the expected values", check_prometheus_scrapes_the_expected_values),
            ("/debug/scopes shows the live tree", check_debug_scopes_shows_the_live_tree),
            ("pushed groups are queryable", check_pushed_groups_are_queryable),
            ("Prometheus scrapes the metrics facade example",
             check_prometheus_scrapes_the_metrics_facade_example),
            ("OTel meter exports protobuf OTLP", check_otel_meter_exports_protobuf_otlp),
            ("grouping values ., .. reach the gateway",
             check_grouping_values_dots_reach_the_gateway),
            ("push over TLS with basic auth", check_push_over_tls_with_basic_auth),
            ("span export over TLS with a header", check_span_export_over_tls_with_a_header),
            ("receiver decodes gzip and rejects undecodable input",
             check_receiver_decodes_gzip_and_rejects_undecodable_input),
            ("alert rules pass promtool", check_alert_rules_pass_promtool),
            ("Prometheus loaded the alert rules", check_prometheus_loaded_the_alert_rules),
            ("a race's losers are cancelled, not failed, and no error-rate alert fires",
             check_race_losers_are_cancelled_not_failed),
            ("a timeout is in the run-time histogram", check_a_timeout_is_in_the_run_time_histogram),
            ("10 000 scope names stay under the cap with one __other__ series",
             check_scope_names_stay_under_the_cap),
            ("both expositions parse with the reference parser",
             check_both_expositions_parse_with_the_reference_parser),
            ("every alert expression runs on exported metrics",
             lambda: check_every_alert_expression_runs_on_exported_metrics(state)),
            ("dashboard panels and queries", lambda: check_dashboard_panels_and_queries(state)),
        ]
        for name, check in checks:
            started = time.monotonic()
            try:
                check()
                results.append(True)
                print(f"e2e {name} ... ok ({time.monotonic() - started:.1f} s)", flush=True)
            except (CheckFailed, KeyError, OSError, subprocess.SubprocessError) as error:
                results.append(False)
                print(f"e2e {name} ... FAILED: {error!r}", flush=True)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    failed = results.count(False)
    print(f"e2e finished in {time.monotonic() - began:.1f} s")
    print(f"{results.count(True)} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
