#!/usr/bin/env bash
# Schema-driven fuzzing of the HTTP API (bad input, B1-B14 at random): schemathesis generates
# requests from /openapi.json and fails on any 5xx, any status code, content type or body that
# the document does not declare. Runs `commerce serve` on a database of its own on the server
# in DATABASE_URL (and the broker in KAFKA_BROKERS): `./scripts/test.sh` or
# `source .local/devstack.env` after `devstack up` sets both.
#
#   ./scripts/schemathesis.sh            # 50 examples per operation
#   FUZZ_EXAMPLES=500 ./scripts/schemathesis.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

: "${DATABASE_URL:?DATABASE_URL is not set (source .local/devstack.env after devstack up)}"
: "${KAFKA_BROKERS:?KAFKA_BROKERS is not set (source .local/devstack.env after devstack up)}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(pwd)/target}"
examples="${FUZZ_EXAMPLES:-50}"

if ! command -v schemathesis >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check 'schemathesis>=4.32,<5'
fi

# COMMERCE_BIN: a prebuilt binary (skips the build).
if [[ -n "${COMMERCE_BIN:-}" ]]; then
    commerce="$COMMERCE_BIN"
else
    cargo build --quiet -p commerce-api --bin commerce
    commerce="$CARGO_TARGET_DIR/debug/commerce"
fi

psql="$(command -v psql || ls /usr/lib/postgresql/*/bin/psql | tail -n 1)"
# The test_ prefix: devstack drops such databases left behind the next time it starts.
db="test_fuzz$(python3 -c 'import uuid; print(uuid.uuid4().hex)')"
"$psql" -X -q -d "$DATABASE_URL" -c "CREATE DATABASE \"$db\""
base="${DATABASE_URL%%\?*}"
query="${DATABASE_URL#"$base"}"
export DATABASE_URL="${base%/*}/$db$query"
export COMMERCE_JWT_SECRET="schemathesis-secret-schemathesis-secret"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
export COMMERCE_HTTP_ADDR="127.0.0.1:$port"
export COMMERCE_RATE_LIMIT_PER_SECOND=100000 COMMERCE_RATE_LIMIT_BURST=100000
export COMMERCE_TOPIC_PREFIX="fuzz$port."
export RUST_LOG="${RUST_LOG:-warn}"

"$commerce" migrate >/dev/null
"$commerce" tenant add fuzz >/dev/null
token="$("$commerce" token --tenant fuzz --role operator --role customer --role auditor --role analyst --sub fuzzer)"

log="$(mktemp -t schemathesis-serve.XXXXXX.log)"
"$commerce" serve >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://$COMMERCE_HTTP_ADDR/health', timeout=1)" 2>/dev/null; then
        break
    fi
    sleep 0.2
done

status=0
schemathesis run "http://$COMMERCE_HTTP_ADDR/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "$examples" \
    --generation-deterministic \
    --request-timeout 10 || status=$?
if grep -qi "panicked" "$log"; then
    echo "schemathesis.sh: the server panicked (log: $log)" >&2
    status=1
fi
exit "$status"
