"""Abuse of Contrail's OTLP/gRPC port with a raw HTTP/2 client (the `h2` package), HTTP/1.1 and
TLS, and what each one is answered.

argv: the receiver's host:port, its message cap in bytes, its message timeout in ms. Prints one
JSON object.
"""

import http.client
import json
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

host, port = sys.argv[1].rsplit(":", 1)
port = int(port)
cap, timeout_ms = int(sys.argv[2]), int(sys.argv[3])
TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def prefix(length):
    return b"\x00" + length.to_bytes(4, "big")


class Connection:
    """One HTTP/2 connection with prior knowledge, and what arrived on each stream."""

    def __init__(self):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.h2 = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.h2.initiate_connection()
        self.flush()
        self.streams = {}
        self.max_streams = None

    def flush(self):
        self.sock.sendall(self.h2.data_to_send())

    def start(self):
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(
            stream_id,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":authority", f"{host}:{port}"),
                (":path", TRACES),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
        )
        self.streams[stream_id] = {"headers": {}, "trailers": {}, "reset": None}
        return stream_id

    def send(self, stream_id, data):
        self.h2.send_data(stream_id, data)
        self.flush()

    def pump(self, done, seconds):
        """Read until `done()` or `seconds` pass."""
        deadline = time.monotonic() + seconds
        while not done() and time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                break
            if not data:
                break
            for event in self.h2.receive_data(data):
                self.on(event)
            self.flush()

    def on(self, event):
        if isinstance(event, h2.events.RemoteSettingsChanged):
            changed = event.changed_settings.get(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS)
            if changed is not None:
                self.max_streams = changed.new_value
        elif isinstance(event, h2.events.ResponseReceived):
            stream = self.streams[event.stream_id]
            stream["headers"] = dict(event.headers)
        elif isinstance(event, h2.events.TrailersReceived):
            self.streams[event.stream_id]["trailers"] = dict(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            self.streams[event.stream_id]["reset"] = int(event.error_code)

    def status(self, stream_id):
        stream = self.streams[stream_id]
        fields = {**stream["headers"], **stream["trailers"]}
        return {
            "status": int(fields["grpc-status"]) if "grpc-status" in fields else None,
            "message": fields.get("grpc-message", ""),
            "retry_info": "google.rpc.retryinfo-bin" in fields,
            "reset": stream["reset"],
        }

    def answered(self, *stream_ids):
        return lambda: all("grpc-status" in {**self.streams[s]["headers"], **self.streams[s]["trailers"]} for s in stream_ids)


result = {}

# A message over the cap: refused from its length prefix, before the rest is sent.
c = Connection()
c.pump(lambda: c.max_streams is not None, 5)
result["max_concurrent_streams"] = c.max_streams
over = c.start()
c.send(over, prefix(cap + 1) + b"\x00" * 64)
c.pump(c.answered(over), 5)
c.pump(lambda: c.streams[over]["reset"] is not None, 1)
result["oversize"] = c.status(over)

# A stream that never finishes: cut off at the message timeout, the stream reset.
stalled = c.start()
c.send(stalled, prefix(10) + b"\x00" * 5)
c.pump(c.answered(stalled), timeout_ms / 1000 + 5)
result["stalled"] = c.status(stalled)
c.sock.close()

# A flood of streams on one connection, each declaring a message of the cap: as many as the
# bound holds are read (and time out), the others are refused at once.
c = Connection()
c.pump(lambda: c.max_streams is not None, 5)
flood = [c.start() for _ in range(c.max_streams)]
for stream_id in flood:
    c.h2.send_data(stream_id, prefix(cap) + b"\x00" * 100)
c.flush()
try:
    c.start()
    result["client_refused_one_more"] = False
except h2.exceptions.TooManyStreamsError:
    result["client_refused_one_more"] = True
c.pump(c.answered(*flood), timeout_ms / 1000 + 5)
result["flood"] = [c.status(s) for s in flood]
c.sock.close()

# A client that ignores the advertised limit: with as many calls open as it allows (headers
# sent, no message yet), HTTP/2 refuses one more stream with RST_STREAM(REFUSED_STREAM), which
# gRPC clients retry; the calls open are cut off at the message timeout.
c = Connection()
c.pump(lambda: c.max_streams is not None, 5)
waiting = [c.start() for _ in range(c.max_streams)]
c.flush()
c.h2.remote_settings.max_concurrent_streams = c.max_streams + 1
c.h2.remote_settings.acknowledge()
beyond = c.start()
c.flush()
c.pump(lambda: c.streams[beyond]["reset"] is not None, 5)
result["beyond_limit"] = c.status(beyond)
c.pump(c.answered(*waiting), timeout_ms / 1000 + 5)
result["waiting"] = [c.status(s) for s in waiting]
c.sock.close()

# A protocol error: DATA on stream 0, which HTTP/2 forbids. The connection ends with GOAWAY.
c = Connection()
c.pump(lambda: c.max_streams is not None, 5)
c.sock.sendall(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00X")
goaway = []
c.on = lambda event: goaway.append(int(event.error_code)) if isinstance(event, h2.events.ConnectionTerminated) else None
c.pump(lambda: goaway, 5)
result["protocol_error"] = goaway
c.sock.close()

# HTTP/1.1: an OTLP/HTTP exporter pointed at the gRPC port.
http1 = http.client.HTTPConnection(host, port, timeout=5)
http1.request("POST", "/v1/traces", body=b"\x0a\x00", headers={"Content-Type": "application/x-protobuf"})
answer = http1.getresponse()
result["http1"] = {"status": answer.status, "body": answer.read().decode()}

# TLS: an https:// endpoint.
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
try:
    with socket.create_connection((host, port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost"):
            result["tls"] = "handshake succeeded"
except ssl.SSLError as error:
    result["tls"] = str(error)

print(json.dumps(result))
