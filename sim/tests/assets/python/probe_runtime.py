"""A minimal custom runtime written against the Runtime API directly. It records what the API
answers (headers of invocation/next, answers to wrong calls) to $PROBE_OUT as JSON lines, answers
the first invocation with a response and every later one with an error."""
import json
import os
import urllib.error
import urllib.request

API = os.environ["AWS_LAMBDA_RUNTIME_API"]
OUT = os.environ["PROBE_OUT"]


def record(kind, data):
    with open(OUT, "a") as f:
        f.write(json.dumps({"kind": kind, "data": data}) + "\n")


def call(method, path, body=None, headers=None):
    req = urllib.request.Request(f"http://{API}{path}", method=method, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


record("env", dict(os.environ))
n = 0
while True:
    status, headers, body = call("GET", "/2018-06-01/runtime/invocation/next")
    rid = headers["Lambda-Runtime-Aws-Request-Id"]
    record("next", {"status": status, "headers": headers, "body": json.loads(body)})
    base = f"/2018-06-01/runtime/invocation/{rid}"
    if n == 0:
        s, _, b = call("POST", "/2018-06-01/runtime/invocation/not-a-request/response", b"{}")
        record("unknown_id", [s, json.loads(b).get("errorType")])
        s, _, b = call("POST", base + "/response", json.dumps({"ok": True}).encode())
        record("response", [s, json.loads(b)])
        s, _, b = call("POST", base + "/response", b"{}")
        record("second_response", [s, json.loads(b).get("errorType")])
        s, _, b = call("POST", "/2018-06-01/runtime/init/error", b"{}",
                       {"Lambda-Runtime-Function-Error-Type": "Runtime.Late"})
        record("late_init_error", [s, json.loads(b).get("errorType")])
    else:
        s, _, b = call("POST", base + "/error",
                       json.dumps({"errorMessage": "no", "errorType": "Probe.Error"}).encode(),
                       {"Lambda-Runtime-Function-Error-Type": "Probe.Error"})
        record("error", [s, json.loads(b)])
    n += 1
