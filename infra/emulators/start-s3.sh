#!/usr/bin/env bash
# Start moto's standalone S3 server by hand on 127.0.0.1.
#   infra/emulators/start-s3.sh [PORT]       (default 9024)
# Point s3fs at it with storage_options {"key": "x", "secret": "x",
#   "client_kwargs": {"endpoint_url": "http://127.0.0.1:PORT", "region_name": "us-east-1"}}
# and create the bucket first (s3fs: fs.call_s3("create_bucket", Bucket="registry")).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
port=${1:-9024}
exec "$here/.venv/bin/moto_server" -H 127.0.0.1 -p "$port"
