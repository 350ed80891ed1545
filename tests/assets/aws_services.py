"""Secrets Manager and SSM Parameter Store on 127.0.0.1, served by moto in server mode, with a
small WSGI layer in front of it for what moto cannot do: throttling.

    python aws_services.py SPEC.json

SPEC: {"secrets": {"NAME": "VALUE"}, "parameters": {"/NAME": "VALUE"},
       "throttle": {"X-Amz-Target": N}, "iam": {"allow": ["secretsmanager:GetSecretValue"]}}

Secrets are created as given; parameters as SecureString. "throttle" answers the first N calls
of a target as AWS does when throttling (400, ThrottlingException). With "iam", moto checks
every later request's signature and an IAM policy: a user with a policy allowing only the
listed actions is created, and its access key is printed. The first line on stdout is JSON:
{"port", "arns": {NAME: ARN}, "key": {"id", "secret"} | null}; GET /_calls answers the
X-Amz-Target of every call received, in order.
"""
import json
import sys
import threading

import boto3
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

CALLS = []
LOCK = threading.Lock()


class Front:
    def __init__(self, app, throttle):
        self.app = app
        self.throttle = dict(throttle)

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == "/_calls":
            with LOCK:
                body = json.dumps(CALLS).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        with LOCK:
            CALLS.append(target)
            left = self.throttle.get(target, 0)
            if left > 0:
                self.throttle[target] = left - 1
        if left > 0:
            body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
            start_response(
                "400 Bad Request",
                [
                    ("Content-Type", "application/x-amz-json-1.1"),
                    ("Content-Length", str(len(body))),
                    ("x-amzn-ErrorType", "ThrottlingException"),
                ],
            )
            return [body]
        return self.app(environ, start_response)


def main():
    spec = json.load(open(sys.argv[1]))
    moto_app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", 0, Front(moto_app, spec.get("throttle", {})), threaded=True)
    port = server.server_port
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    common = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup")
    arns = {}
    sm = boto3.client("secretsmanager", **common)
    for name, value in spec.get("secrets", {}).items():
        arns[name] = sm.create_secret(Name=name, SecretString=value)["ARN"]
    ssm = boto3.client("ssm", **common)
    for name, value in spec.get("parameters", {}).items():
        ssm.put_parameter(Name=name, Value=value, Type="SecureString")
        arns[name] = ssm.get_parameter(Name=name)["Parameter"]["ARN"]
    key = None
    if "iam" in spec:
        iam = boto3.client("iam", **common)
        iam.create_user(UserName="function")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": spec["iam"]["allow"], "Resource": "*"}]}
        iam.put_user_policy(UserName="function", PolicyName="contrail", PolicyDocument=json.dumps(policy))
        k = iam.create_access_key(UserName="function")["AccessKey"]
        key = {"id": k["AccessKeyId"], "secret": k["SecretAccessKey"]}
        # What POST /moto-api/reset-auth with 0 does: every request from now on is checked.
        from moto import settings
        from moto.core.responses import ActionAuthenticatorMixin

        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        ActionAuthenticatorMixin.request_count = 0
    with LOCK:
        CALLS.clear()
    print(json.dumps({"port": port, "arns": arns, "key": key}), flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
