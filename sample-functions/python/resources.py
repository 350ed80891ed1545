"""Payload options that make the sample use known amounts of what Contrail reads from /proc.

Each key is optional; the handler runs them in this order before the order itself:

- ``burn_cpu_ms``: spin on the CPU for that many milliseconds of this process's CPU time
  (``time.process_time``), in user mode;
- ``alloc_mb`` with ``alloc_after_ms``: wait that long, then allocate and touch that many MiB,
  and hold them until ``hold_ms`` has passed, then free them;
- ``tmp_bytes``: write that many bytes to ``/tmp/contrail-sample-<requestId>`` and fsync it (the
  file is removed at the start of the next invocation that writes);
- ``pg_dsn`` with ``pg_connections``: open that many PostgreSQL connections with psycopg, run
  ``SELECT 1`` on each, and keep them open (module-level) until an invocation asks for
  ``pg_close``.

Apart from the payload, ``SAMPLE_PG_DSN`` names a PostgreSQL database the function connects to
at init, as most functions do: ``connect_at_init`` opens one connection per environment when
``app.py`` is imported, and every invocation runs ``SELECT 1`` on it. When the server refuses
the connection (``too many clients already``), the import raises ``psycopg.OperationalError``:
the runtime client reports it through ``init/error`` with that ``errorType`` and exits, so the
environment's init fails, as it would on Lambda.
"""

import glob
import os
import time

_connections = []


def _burn(ms):
    # process_time is a system call: look at it only every 10,000 additions, so that the
    # time spent is user time.
    end = time.process_time() + ms / 1000.0
    x = 0
    while time.process_time() < end:
        for _ in range(10_000):
            x += 1
    return x


def _alloc(mb, after_ms, hold_ms):
    time.sleep(after_ms / 1000.0)
    block = bytearray(mb * 1024 * 1024)
    # Touch every page so that it is resident.
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(hold_ms / 1000.0)
    del block


def _tmp(size, request_id):
    for old in glob.glob("/tmp/contrail-sample-*"):
        os.remove(old)
    chunk = b"x" * (1024 * 1024)
    with open(f"/tmp/contrail-sample-{request_id}", "wb") as f:
        left = size
        while left > 0:
            n = min(left, len(chunk))
            f.write(chunk[:n])
            left -= n
        f.flush()
        os.fsync(f.fileno())


def _postgres(dsn, count):
    import psycopg  # only the invocations that ask for it need the driver

    for _ in range(count):
        conn = psycopg.connect(dsn, autocommit=True)
        conn.execute("SELECT 1").fetchone()
        _connections.append(conn)


def connect_at_init():
    """The connection ``SAMPLE_PG_DSN`` names, opened now (at import), or None when unset."""
    dsn = os.environ.get("SAMPLE_PG_DSN", "").strip()
    if not dsn:
        return None
    import psycopg

    # Raises psycopg.OperationalError when the server refuses: the init fails with it.
    return psycopg.connect(dsn, autocommit=True)


def use_resources(event, request_id, database=None):
    """Do what the payload asks, and ``SELECT 1`` on ``database`` (the connection opened at
    init) if there is one; returns what was done, for the response."""
    done = {}
    if database is not None:
        database.execute("SELECT 1").fetchone()
        done["pg_init_connection"] = True
    if not isinstance(event, dict):
        return done
    if event.get("pg_close"):
        for conn in _connections:
            conn.close()
        done["pg_closed"] = len(_connections)
        _connections.clear()
    if "burn_cpu_ms" in event:
        _burn(int(event["burn_cpu_ms"]))
        done["burned_ms"] = int(event["burn_cpu_ms"])
    if "alloc_mb" in event:
        _alloc(
            int(event["alloc_mb"]),
            int(event.get("alloc_after_ms", 0)),
            int(event.get("hold_ms", 0)),
        )
        done["allocated_mb"] = int(event["alloc_mb"])
    if "tmp_bytes" in event:
        _tmp(int(event["tmp_bytes"]), request_id)
        done["tmp_bytes"] = int(event["tmp_bytes"])
    if "pg_dsn" in event:
        _postgres(event["pg_dsn"], int(event.get("pg_connections", 1)))
        done["pg_open"] = len(_connections)
    if "sleep_ms" in event:
        time.sleep(int(event["sleep_ms"]) / 1000.0)
    return done
