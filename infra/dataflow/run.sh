#!/usr/bin/env bash
# Submit an export to Dataflow: run.sh JOBS_FILE REGISTRY PROJECT REGION TEMP_LOCATION [extra beam options]
set -euo pipefail
if [ $# -lt 5 ]; then
  echo "usage: $0 JOBS_FILE REGISTRY PROJECT REGION TEMP_LOCATION [beam options...]" >&2
  exit 2
fi
jobs=$1 registry=$2 project=$3 region=$4 temp=$5
shift 5
root="$(cd "$(dirname "$0")/../.." && pwd)"
exec "${PYTHON:-$root/.venv/bin/python}" -m pipeline run --jobs "$jobs" --registry "$registry" \
  --runner DataflowRunner --project "$project" --region "$region" --temp_location "$temp" \
  --setup_file "$root/setup.py" --machine_type n2-highmem-4 --disk_size_gb 100 "$@"
