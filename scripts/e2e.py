#!/usr/bin/env python3
"""End-to-end checks of the observability integrations against real components.

Needs the services of scripts/services.sh running (Prometheus, a Pushgateway, the OTLP
receiver) and the workspace's examples; scripts/test.sh runs it after the cargo tests.
Standard library only. Ends with a line `N passed, M failed`.
"""

import gzip
import json
import os
import signal
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
SPANS_FILE = os.path.join(WORK, "spans.jsonl")
OTLP_METRICS_FILE = os.path.join(WORK, "otlp-metrics.jsonl")

# The span attributes of the original library (plus scope.errors and task.wait_ms).
SCOPE_ATTRIBUTES = ["scope.timeout", "scope.has_parent_signal", "scope.has_parent_scope",
                    "scope.concurrency", "scope.duration_ms", "scope.errors"]
TASK_ATTRIBUTES = ["task.index", "task.has_retry", "task.has_timeout", "task.has_circuit_breaker",
                   "task.scope_concurrency", "task.duration_ms", "task.retry_attempts",
                   "task.wait_ms"]

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


def check_prometheus_scrapes_the_expected_values():
    wait_for_value('up{job="goscope-example"}', 1)
    for expr, value in EXPECTED_ORDERS.items():
        wait_for_value(expr, value)
    result = query('goscope_scope_duration_seconds{job="goscope-example",scope="process-order"}')
    expect(result and float(result[0]["value"][1]) > 0, "scope lifetime gauge")


def check_pushed_groups_are_queryable():
    otel_json = os.path.join(WORK, "batch-otel.json")
    run = subprocess.run([example("prometheus_push"), "--gateway", PUSHGATEWAY,
                          "--job", "goscope_push_example", "--instance", "ci",
                          "--otel-json", otel_json], capture_output=True, text=True, timeout=60)
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


def check_otel_metrics_export_is_valid_otlp_json():
    with open(os.path.join(WORK, "batch-otel.json"), "rb") as f:
        document = f.read()
    start = os.path.getsize(OTLP_METRICS_FILE)
    status, _, body = http(OTLP + "/v1/metrics", data=document,
                           headers={"Content-Type": "application/json"})
    expect(status == 200, f"the receiver rejected the OTel export: {status} {body[:300]!r}")
    metrics = {m["name"]: m for m in read_jsonl(OTLP_METRICS_FILE, start)}
    spawned = metrics.get("goscope.tasks.spawned")
    expect(spawned and spawned["type"] == "sum", f"metrics {sorted(metrics)}")
    point = spawned["data"]["dataPoints"][0]
    expect(int(point["asInt"]) == EXPECTED_BATCH["spawned"], f"spawned {point}")
    expect(metrics["goscope.task.duration.p95"]["unit"] == "ms", "p95 in ms")
    # Every task that ran is in the histogram, the malformed records' failures too.
    histogram = metrics["goscope.task.duration"]["data"]["dataPoints"][0]
    expect(int(histogram["count"]) == EXPECTED_BATCH["spawned"], f"histogram {histogram}")
    ended = {p["attributes"][-1]["value"]["stringValue"]: int(p["asInt"])
             for p in metrics["goscope.tasks.ended"]["data"]["dataPoints"]}
    expect(ended.get("ok") == EXPECTED_BATCH["completed"] and ended.get("error") == EXPECTED_BATCH["failed"],
           f"tasks.ended by outcome {ended}")


def check_receiver_decodes_gzip_and_rejects_undecodable_input():
    with open(os.path.join(WORK, "batch-otel.json"), "rb") as f:
        document = f.read()
    status, _, body = http(OTLP + "/v1/metrics", data=gzip.compress(document),
                           headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    expect(status == 200, f"gzip body got {status} {body[:200]!r}")
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
            ("metrics example serves valid Prometheus text",
             lambda: check_metrics_example_serves_valid_prometheus_text(state)),
            ("Prometheus scrapes the expected values", check_prometheus_scrapes_the_expected_values),
            ("pushed groups are queryable", check_pushed_groups_are_queryable),
            ("OTel metrics export is valid OTLP/JSON", check_otel_metrics_export_is_valid_otlp_json),
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
