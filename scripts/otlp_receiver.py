#!/usr/bin/env python3
"""A small OTLP/HTTP receiver for tests: decodes with the OpenTelemetry project's protobuf
definitions (PyPI `opentelemetry-proto`) and writes what it receives as JSON lines.

  POST /v1/traces   protobuf (optionally gzip) or JSON  -> one line per span in --spans
  POST /v1/metrics  protobuf (optionally gzip) or JSON  -> one line per metric in --metrics
  GET  /healthz     200 once listening

A body that does not decode gets HTTP 400 with the parser's message. With --tls-cert and
--tls-key it serves HTTPS; with --require-header NAME=VALUE a POST without that header gets
HTTP 401.
"""

import argparse
import gzip
import json
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

STATUS_CODES = {0: "UNSET", 1: "OK", 2: "ERROR"}


def any_value(value):
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def attributes(key_values):
    return {kv.key: any_value(kv.value) for kv in key_values}


def span_record(resource, scope, span):
    return {
        "service": attributes(resource.attributes).get("service.name"),
        "scope": scope.name,
        "name": span.name,
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex(),
        "start_ns": span.start_time_unix_nano,
        "end_ns": span.end_time_unix_nano,
        "status": {"code": STATUS_CODES.get(span.status.code, span.status.code),
                   "message": span.status.message},
        "attributes": attributes(span.attributes),
        "events": [{"name": e.name, "attributes": attributes(e.attributes)} for e in span.events],
    }


def metric_record(resource, scope, metric):
    data = metric.WhichOneof("data")
    return {
        "service": attributes(resource.attributes).get("service.name"),
        "scope": scope.name,
        "name": metric.name,
        "unit": metric.unit,
        "type": data,
        "data": json_format.MessageToDict(getattr(metric, data)) if data else None,
    }


class Sink:
    def __init__(self, spans_path, metrics_path):
        self.lock = threading.Lock()
        self.spans_path = spans_path
        self.metrics_path = metrics_path

    def write(self, path, records):
        with self.lock, open(path, "a", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(record, sort_keys=True) + "\n")


def decode(message, body, content_type):
    if "json" in content_type:
        json_format.Parse(body.decode("utf-8"), message)
    else:
        message.ParseFromString(body)
    return message


class Handler(BaseHTTPRequestHandler):
    sink = None
    required_header = None

    def log_message(self, fmt, *args):  # keep test output quiet
        pass

    def reply(self, status, body=b"", content_type="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/healthz":
            self.reply(200, b"ok\n")
        else:
            self.reply(404, b"not found\n")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.required_header is not None:
            name, value = self.required_header
            if self.headers.get(name) != value:
                self.reply(401, f"the header {name} is missing or wrong\n".encode())
                return
        content_type = self.headers.get("Content-Type", "application/x-protobuf")
        try:
            if self.headers.get("Content-Encoding", "").lower() == "gzip":
                body = gzip.decompress(body)
            if self.path == "/v1/traces":
                request = decode(trace_service_pb2.ExportTraceServiceRequest(), body, content_type)
                records = [span_record(rs.resource, ss.scope, span)
                           for rs in request.resource_spans
                           for ss in rs.scope_spans
                           for span in ss.spans]
                self.sink.write(self.sink.spans_path, records)
                response = trace_service_pb2.ExportTraceServiceResponse()
            elif self.path == "/v1/metrics":
                request = decode(metrics_service_pb2.ExportMetricsServiceRequest(), body, content_type)
                records = [metric_record(rm.resource, sm.scope, metric)
                           for rm in request.resource_metrics
                           for sm in rm.scope_metrics
                           for metric in sm.metrics]
                self.sink.write(self.sink.metrics_path, records)
                response = metrics_service_pb2.ExportMetricsServiceResponse()
            else:
                self.reply(404, b"not found\n")
                return
        except Exception as error:  # any decoding failure is the client's fault
            self.reply(400, f"cannot decode the request: {error}\n".encode())
            return
        if "json" in content_type:
            self.reply(200, json_format.MessageToJson(response).encode(), "application/json")
        else:
            self.reply(200, response.SerializeToString(), "application/x-protobuf")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4318)
    parser.add_argument("--spans", required=True, help="JSON-lines file for received spans")
    parser.add_argument("--metrics", required=True, help="JSON-lines file for received metrics")
    parser.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate")
    parser.add_argument("--tls-key", help="the certificate's PEM private key")
    parser.add_argument("--require-header", metavar="NAME=VALUE",
                        help="answer 401 to a POST without this header")
    args = parser.parse_args()
    if args.require_header:
        name, _, value = args.require_header.partition("=")
        Handler.required_header = (name, value)
    for path in (args.spans, args.metrics):
        open(path, "a", encoding="utf-8").close()
    Handler.sink = Sink(args.spans, args.metrics)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    scheme = "http"
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    print(f"OTLP receiver on {scheme}://{args.host}:{args.port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
