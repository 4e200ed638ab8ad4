#!/usr/bin/env bash
# Start gcp-storage-emulator by hand on 127.0.0.1 (in memory, bucket "registry").
#   infra/emulators/start-gcs.sh [PORT]      (default 9023)
# Point gcsfs at it with storage_options {"token": "anon", "endpoint_url": "http://127.0.0.1:PORT"}
# and export GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false before gcsfs connects.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
port=${1:-9023}
exec "$here/.venv/bin/gcp-storage-emulator" start --host 127.0.0.1 --port "$port" \
    --in-memory --default-bucket registry
