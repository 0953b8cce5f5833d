#!/usr/bin/env bash
# HTTP command throughput of `commerce serve`, measured by wrk from a second process at 1, 8 and
# 64 connections (PUT /inventory, one event per request, distinct stock levels), followed in the
# same run by the event store's in-process benchmark on the same PostgreSQL server.
#
# Needs DATABASE_URL and KAFKA_BROKERS (e.g. `source .local/devstack.env`) and wrk
# (`apt-get install wrk`). Creates and drops its own database. Prints, does not assert.
#   BENCH_DURATION (default 10s) per concurrency level; COMMERCE_BIN (default target/debug/commerce);
#   CARGO_PROFILE (default dev) for the in-process benchmark; SKIP_INPROCESS=1 to skip it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

: "${DATABASE_URL:?set DATABASE_URL}" "${KAFKA_BROKERS:?set KAFKA_BROKERS}"
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
bin="${COMMERCE_BIN:-${CARGO_TARGET_DIR:-target}/debug/commerce}"
duration="${BENCH_DURATION:-10s}"
server_url="$DATABASE_URL"
database="commerce_http_bench_$$"
port=$(( 20000 + RANDOM % 20000 ))

psql "$server_url" -qc "CREATE DATABASE $database" >/dev/null
export DATABASE_URL="${server_url%/*}/$database"
export COMMERCE_HTTP_ADDR="127.0.0.1:$port"
COMMERCE_JWT_SECRET="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export COMMERCE_JWT_SECRET
# The per-tenant limit would otherwise be what is measured.
export COMMERCE_RATE_LIMIT_PER_SECOND=1000000 COMMERCE_RATE_LIMIT_BURST=1000000
export RUST_LOG=warn

"$bin" migrate >/dev/null
"$bin" tenant add bench >/dev/null
TOKEN="$("$bin" token --tenant bench --role operator --ttl-secs 3600)"
export TOKEN
"$bin" serve &
server=$!
cleanup() {
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    psql "$server_url" -qc "DROP DATABASE IF EXISTS $database" >/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do
    curl -fs "http://$COMMERCE_HTTP_ADDR/health" >/dev/null 2>&1 && break
    sleep 0.1
done

echo "HTTP PUT /inventory via wrk ($duration per level, $(nproc) cores, binary $bin)"
printf '%-12s %12s %10s %10s %10s\n' connections requests/s p50 p99 non-2xx
for connections in 1 8 64; do
    threads=$(( connections < 2 ? 1 : 2 ))
    out="$(wrk -t "$threads" -c "$connections" -d "$duration" --latency -s api/bench/put_inventory.lua \
        "http://$COMMERCE_HTTP_ADDR" 2>&1)"
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    errors=$(awk '/Non-2xx/ {print $5}' <<<"$out")
    printf '%-12s %12s %10s %10s %10s\n' "$connections" "$rps" "$p50" "$p99" "${errors:-0}"
done
events=$(psql "$DATABASE_URL" -tAc "SELECT count(*) FROM events")
echo "events appended: $events"

if [[ "${SKIP_INPROCESS:-0}" != 1 ]]; then
    echo
    echo "In-process write-model benchmark (commerce-eventstore), same PostgreSQL server:"
    DATABASE_URL="$server_url" cargo bench --quiet -p commerce-eventstore --bench throughput \
        --profile "${CARGO_PROFILE:-dev}"
fi
