import json
import os
import time

print("app module loaded")


def handler(event, context):
    print(f"handling {context.aws_request_id}")
    for i in range(event.get("lines", 0)):
        print(f"line {i} " + "x" * 200)
    if event.get("sleep_s"):
        time.sleep(event["sleep_s"])
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {
        "request_id": context.aws_request_id,
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
        "handler": os.environ.get("_HANDLER"),
        "task_root": os.environ.get("LAMBDA_TASK_ROOT"),
        "remaining_ms": context.get_remaining_time_in_millis(),
    }
