"""An OTLP/HTTP backend on 127.0.0.1 that checks the SigV4 signature of every request it
receives with botocore's own signer (botocore.auth.SigV4Auth), the way AWS's endpoints do.

    python sigv4_backend.py --key AKID=SECRET [--key ...] [--service xray] [--region us-east-1]
    python sigv4_backend.py --no-auth      (records what arrives, checks nothing)

For each request it rebuilds what the client signed (the headers named in SignedHeaders, the
path, the raw body as received, still gzipped, X-Amz-Date as the signing time), recomputes the
signature with the secret of the request's access key, and answers 200 (an empty OTLP
response) when it matches, 403 with AWS's message when it does not. GET /results answers every
request it saw as JSON: path, whether the signature matched, the signed headers, the credential
scope, the header values, the number of spans, log records and data points in the body.
The first line on stdout is the port.
"""
import argparse
import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from google.protobuf.json_format import Parse

RESULTS = []
LOCK = threading.Lock()


def count(path, body, content_type):
    kinds = {
        "/v1/traces": (ExportTraceServiceRequest, "resource_spans", "scope_spans", "spans"),
        "/v1/logs": (ExportLogsServiceRequest, "resource_logs", "scope_logs", "log_records"),
        "/v1/metrics": (ExportMetricsServiceRequest, "resource_metrics", "scope_metrics", "metrics"),
    }
    for suffix, (cls, res, scopes, records) in kinds.items():
        if path.endswith(suffix):
            msg = cls()
            if "json" in content_type:
                Parse(body.decode(), msg, ignore_unknown_fields=True)
            else:
                msg.ParseFromString(body)
            n = 0
            for r in getattr(msg, res):
                for s in getattr(r, scopes):
                    items = getattr(s, records)
                    if records == "metrics":
                        for m in items:
                            kind = m.WhichOneof("data")
                            n += len(getattr(m, kind).data_points) if kind else 0
                    else:
                        n += len(items)
            return n
    return 0


def verify(method, path, headers, body, keys, service, region):
    if keys is None:
        return True, "", "", []
    auth = headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return False, "no SigV4 Authorization header", "", []
    fields = dict(
        part.strip().split("=", 1) for part in auth[len("AWS4-HMAC-SHA256 "):].split(",")
    )
    credential = fields["Credential"]
    access_key, scope = credential.split("/", 1)
    signed = fields["SignedHeaders"].split(";")
    _, scope_region, scope_service, _ = scope.split("/")
    if (service and scope_service != service) or (region and scope_region != region):
        return False, f"scope {scope} is not for {service} in {region}", scope, signed
    secret = keys.get(access_key)
    if secret is None:
        return False, f"unknown access key {access_key}", scope, signed
    token = headers.get("x-amz-security-token")
    creds = Credentials(access_key, secret, token)
    signer = SigV4Auth(creds, scope_service, scope_region)
    only_signed = {name: headers[name] for name in signed if name in headers}
    host = headers.get("host", "localhost")
    request = AWSRequest(method=method, url=f"http://{host}{path}", data=body, headers=only_signed)
    request.context["timestamp"] = headers.get("x-amz-date", "")
    canonical = signer.canonical_request(request)
    string_to_sign = signer.string_to_sign(request, canonical)
    expected = signer.signature(string_to_sign, request)
    if expected != fields["Signature"]:
        return False, "The request signature we calculated does not match the signature you provided.", scope, signed
    return True, "", scope, signed


def make_handler(keys, service, region):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path != "/results":
                self.send_error(404)
                return
            with LOCK:
                data = json.dumps(RESULTS).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            ok, why, scope, signed = verify("POST", self.path, headers, body, keys, service, region)
            raw = gzip.decompress(body) if headers.get("content-encoding") == "gzip" else body
            try:
                records = count(self.path, raw, headers.get("content-type", ""))
            except Exception as e:  # noqa: BLE001 - reported, not hidden
                records, why = -1, f"{why} body does not decode: {e}"
            result = {
                "path": self.path,
                "matched": ok,
                "why": why,
                "scope": scope,
                "signed_headers": signed,
                "headers": {k: v for k, v in headers.items() if k != "authorization"},
                "gzip": headers.get("content-encoding") == "gzip",
                "records": records,
                "body": raw.decode("latin-1"),
            }
            with LOCK:
                RESULTS.append(result)
            if ok:
                status, out, ctype = 200, b"", "application/x-protobuf"
            else:
                status, out, ctype = 403, json.dumps({"message": why}).encode(), "application/json"
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--key", action="append", default=[], help="ACCESS_KEY_ID=SECRET")
    parser.add_argument("--service", default="")
    parser.add_argument("--region", default="")
    parser.add_argument("--no-auth", action="store_true", help="accept requests without checking")
    args = parser.parse_args()
    keys = None if args.no_auth else dict(k.split("=", 1) for k in args.key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(keys, args.service, args.region))
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
