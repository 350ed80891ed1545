#!/usr/bin/env bash
# Connection exhaustion at scale (issue 14), by hand: the Python sample, which opens one
# PostgreSQL connection per environment at init (SAMPLE_PG_DSN), with Contrail attached, under
# `contrail-sim scale` with a spike of twice as many clients as the database has connections
# for the function, three ways: on demand; with a reserved concurrency below the connections;
# with provisioned concurrency below them. For each it prints the sink's per-environment
# summary and the fleet report (as `contrail-sim scale` prints them), then, from the OTLP the
# sink received, per environment (faas.instance) what Contrail says: connections to the
# database's port, cold starts, invocations, the init error; and the database's own peak.
#
#   scripts/scenario-connections.sh              its own PostgreSQL in a temp dir (on 5432 if free)
#   scripts/scenario-connections.sh --dsn DSN    an existing database instead (the role in DSN)
#            --admin-dsn DSN  with --dsn: a superuser (or pg_read_all_stats) connection that
#                             counts the role's connections while the fleet runs (without it,
#                             the database's peak is not shown: counting as the role would
#                             take one of its own slots)
#   options: --connections N  connections for the function's role (default 10; own database only)
#            --memory-mb MB   (default 256)      --hold S  seconds of spike (default 10)
#            --only on-demand|reserved|provisioned (repeatable)
#            --quick          the end-to-end test's size: 6 connections, 512 MB, 3 s of spike
#            --keep DIR       keep the reports, OTLP JSON lines and logs in DIR
#
# Needs scripts/install-test-deps.sh (the venv with awslambdaric and psycopg, Debian's
# postgresql) and root for the cgroups of Lambda's resource model (without it the runs are
# unthrottled and say so).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

dsn="" admin="" connections=10 memory=256 hold=10 keep="" only=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dsn) dsn=$2; shift 2 ;;
    --admin-dsn) admin=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --memory-mb) memory=$2; shift 2 ;;
    --hold) hold=$2; shift 2 ;;
    --only) only+=("$2"); shift 2 ;;
    --quick) connections=6 memory=512 hold=3; shift ;;
    --keep) keep=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "scenario-connections.sh: unknown option '$1'" >&2; usage ;;
  esac
done
[ ${#only[@]} -gt 0 ] || only=(on-demand reserved provisioned)

step() { printf '\n==> %s\n' "$*" >&2; }
python=$root/.tools/venv/bin/python
[ -x "$python" ] || { echo "$python missing: run scripts/install-test-deps.sh" >&2; exit 1; }

work=$(mktemp -d /tmp/contrail-connections.XXXXXX)
out=${keep:-$work/out}
mkdir -p "$out"
pg_stop=""
cleanup() {
  [ -z "$pg_stop" ] || eval "$pg_stop" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

step "release binaries"
cargo build --release --locked --quiet -p contrail -p contrail-sim
mkdir -p "$work/extensions"
cp target/release/contrail "$work/extensions/contrail"

# A cluster of our own: `connections` for the role `app`, plus PostgreSQL's 3 slots reserved
# for superusers (superuser_reserved_connections), so max_connections = connections + 3.
if [ -z "$dsn" ]; then
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -x "$bin/initdb" ] || { echo "Debian's postgresql is not installed: run scripts/install-test-deps.sh" >&2; exit 1; }
  port=5432
  if ! "$python" -c 'import socket; socket.create_server(("127.0.0.1", 5432)).close()' 2>/dev/null; then
    port=$("$python" -c 'import socket; s = socket.create_server(("127.0.0.1", 0)); print(s.getsockname()[1])')
    echo "5432 is taken here: the database listens on $port" >&2
  fi
  as_pg=()
  if [ "$(id -u)" = 0 ]; then
    as_pg=(runuser -u postgres --)
    chown postgres "$work"
  fi
  step "PostgreSQL on 127.0.0.1:$port, max_connections=$((connections + 3))"
  "${as_pg[@]}" "$bin/initdb" -D "$work/db" -A trust -U postgres >/dev/null
  "${as_pg[@]}" "$bin/pg_ctl" -D "$work/db" -l "$work/postgres.log" -w start \
    -o "-c listen_addresses=127.0.0.1 -p $port -c max_connections=$((connections + 3)) -k $work" >/dev/null
  pg_stop="${as_pg[*]} $bin/pg_ctl -D $work/db -m fast stop"
  admin="host=127.0.0.1 port=$port user=postgres dbname=postgres"
  psql -X -q -d "$admin" -c "CREATE ROLE app LOGIN"
  dsn="host=127.0.0.1 port=$port user=app dbname=postgres"
fi

# What the server lets the DSN's role open: max_connections, less the superusers' reserved
# slots unless it is one, less the other clients' connections now.
role=$("$python" -c 'import sys, psycopg.conninfo as c; print(c.conninfo_to_dict(sys.argv[1]).get("user") or "")' "$dsn")
[ -n "$role" ] || { echo "--dsn must name its user (user=...)" >&2; exit 2; }
read -r db_port usable < <(psql -X -A -t -F ' ' -d "${admin:-$dsn}" -c "
  SELECT current_setting('port'),
         current_setting('max_connections')::int
           - (SELECT CASE WHEN rolsuper THEN 0
                     ELSE current_setting('superuser_reserved_connections')::int END
              FROM pg_roles WHERE rolname = '$role')
           - (SELECT count(*) FROM pg_stat_activity
              WHERE backend_type = 'client backend' AND pid <> pg_backend_pid())")
[ "${usable:-0}" -ge 3 ] || { echo "the database has ${usable:-no} connections left for the role: at least 3 needed" >&2; exit 1; }
below=$((usable * 2 / 3))
peak=$((usable * 2))
step "the role '$role' may open $usable connections to port $db_port; the spike goes from $usable (on demand, reserved) or $below (provisioned) to $peak clients"

summary() {
  "$python" - "$1" "$2" "$db_port" "$3" <<'PY'
import json, sys
report_path, otlp_path, port, peak = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
report = json.load(open(report_path))
seen = {}
# Each span once: Contrail sends a batch again when its answer stalled (at-least-once).
spans_seen = set()
def entry(resource):
    for a in (resource or {}).get("attributes", []):
        if a["key"] == "faas.instance":
            return seen.setdefault(a["value"].get("stringValue"), {"conns": None, "cold": 0, "spans": 0, "init_error": "", "refused": 0, "incomplete": False, "failures": 0})
    return None
def attr(attrs, key):
    for a in attrs or []:
        if a["key"] == key:
            return next(iter(a["value"].values()), None)
for line in open(otlp_path):
    req = json.loads(line)["request"]
    for rm in req.get("resourceMetrics", []):
        e = entry(rm.get("resource"))
        for sm in rm.get("scopeMetrics", []) if e else []:
            for m in sm["metrics"]:
                if m["name"] == "aws.lambda.connections":
                    for p in m["gauge"]["dataPoints"]:
                        if str(attr(p.get("attributes"), "server.port")) == port:
                            e["conns"] = int(p.get("asInt", 0))
                elif m["name"] == "faas.coldstarts":
                    for p in m["sum"]["dataPoints"]:
                        e["cold"] = max(e["cold"], int(p.get("asInt", 0)))
                elif m["name"] == "aws.lambda.init.failures":
                    for p in m["sum"]["dataPoints"]:
                        e["failures"] = max(e["failures"], int(p.get("asInt", 0)))
    for rs in req.get("resourceSpans", []):
        e = entry(rs.get("resource"))
        for ss in rs.get("scopeSpans", []) if e else []:
            for s in ss["spans"]:
                if (s["traceId"], s["spanId"]) in spans_seen:
                    continue
                spans_seen.add((s["traceId"], s["spanId"]))
                if s["name"] == "aws.lambda.init":
                    if (s.get("status") or {}).get("code") == 2:
                        e["init_error"] = attr(s.get("attributes"), "error.type") or "error"
                    elif attr(s.get("attributes"), "aws.lambda.incomplete"):
                        e["incomplete"] = True
                elif s.get("kind") == 2 and attr(s.get("attributes"), "faas.invocation_id"):
                    e["spans"] += 1
    for rl in req.get("resourceLogs", []):
        e = entry(rl.get("resource"))
        for sl in rl.get("scopeLogs", []) if e else []:
            for r in sl["logRecords"]:
                body = str((r.get("body") or {}).get("stringValue", ""))
                if "OperationalError" in body and ("too many clients" in body or "connection slots are reserved" in body):
                    e["refused"] += 1
print(f"== what Contrail says, per environment (faas.instance); the database is on port {port}")
print(f"  {'env':>3}  {'type':<23}  {'faas.instance':<32}  {'conns':>5}  {'coldstarts':>10}  {'invocations':>11}  init error")
total = {"conns": 0, "cold": 0, "spans": 0, "refused": 0, "incomplete": 0, "failures": 0}
for env in report["environments"]:
    e = seen.get(env["instance_id"], {"conns": None, "cold": 0, "spans": 0, "init_error": "", "refused": 0, "incomplete": False, "failures": 0})
    conns = "-" if e["conns"] is None else e["conns"]
    error = e["init_error"] + (" (refused: in the logs)" if e["refused"] else "")
    if env["instance_id"] not in seen:
        error = "(nothing received: its processes never started)" if env.get("init_ms") is None else "(nothing received)"
    if e["incomplete"] and not e["init_error"]:
        error = "(init span aws.lambda.incomplete: its end never reached Contrail)"
    print(f"  {env['index']:>3}  {env['initialization_type']:<23}  {env['instance_id']:<32}  {conns:>5}  {e['cold']:>10}  {e['spans']:>11}  {error}")
    total["conns"] += e["conns"] or 0
    total["cold"] += e["cold"]
    total["spans"] += e["spans"]
    total["refused"] += 1 if e["init_error"] else 0
    total["failures"] += e["failures"]
    total["incomplete"] += 1 if e["incomplete"] and not e["init_error"] else 0
print(f"  sum: aws.lambda.connections{{server.port={port}}} = {total['conns']} (the database's own peak: {peak}), "
      f"faas.coldstarts = {total['cold']}, invocation spans = {total['spans']}, "
      f"failed inits (aws.lambda.init status ERROR) = {total['refused']}, aws.lambda.init.failures = {total['failures']}"
      + (f", incomplete inits = {total['incomplete']}" if total["incomplete"] else ""))
PY
}

variant() {
  local name=$1 base=$2
  shift 2
  local load="spike=$base-$peak,at=3s,hold=${hold}s,for=$((hold + 5))s"
  step "$name: --load $load $*"
  # The database's own count of the role's connections while the fleet runs.
  local peak_file=$work/$name.db-peak
  echo "not counted (no --admin-dsn)" >"$peak_file"
  local watcher=""
  if [ -n "$admin" ]; then
    echo 0 >"$peak_file"
    (
      max=0
      while :; do
        n=$(psql -X -A -t -d "$admin" -c "SELECT count(*) FROM pg_stat_activity
              WHERE usename = '$role' AND pid <> pg_backend_pid()" 2>/dev/null || echo 0)
        [ "$n" -le "$max" ] || { max=$n; echo "$max" >"$peak_file"; }
        sleep 0.2
      done
    ) &
    watcher=$!
  fi
  local status=0
  target/release/contrail-sim scale --load "$load" "$@" \
    --memory-mb "$memory" --timeout-s 10 \
    --extensions-dir "$work/extensions" --handler app.handler --task-root sample-functions/python \
    --function-name orders-db --payload '{"quantity": 1, "sleep_ms": 100}' \
    --env "SAMPLE_PG_DSN=$dsn" --env CONTRAIL_CONNECTIONS=always --env OTEL_SERVICE_NAME=orders-db \
    --report-json "$out/$name.json" --otlp-jsonl "$out/$name.jsonl" \
    -- "$python" -m awslambdaric app.handler 2>"$out/$name.log" || status=$?
  if [ -n "$watcher" ]; then
    kill "$watcher" 2>/dev/null || true
    wait "$watcher" 2>/dev/null || true
  fi
  if [ "$status" != 0 ]; then
    echo "contrail-sim scale failed ($status); the last lines of $out/$name.log:" >&2
    tail -n 20 "$out/$name.log" >&2
    return "$status"
  fi
  echo
  summary "$out/$name.json" "$out/$name.jsonl" "$(cat "$peak_file")"
}

# CONTRAIL_CONNECTIONS=always: `auto` stops reading connections after a reading over its
# budget, which a large host's connection table costs (README, Configuration).
for v in "${only[@]}"; do
  case "$v" in
    on-demand) variant on-demand "$usable" ;;
    reserved) variant reserved "$usable" --reserved-concurrency "$below" ;;
    provisioned) variant provisioned "$below" --provisioned-concurrency "$below" ;;
    *) echo "scenario-connections.sh: unknown variant '$v' (on-demand, reserved, provisioned)" >&2; exit 2 ;;
  esac
done
[ -z "$keep" ] || echo "reports, OTLP JSON lines and the functions' output are in $keep" >&2
