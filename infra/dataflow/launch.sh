#!/usr/bin/env bash
# Run an export on Dataflow, either submitted from here (default) or through the
# Flex Template built from infra/dataflow (--template). See infra/dataflow/README.md.
#
#   infra/dataflow/launch.sh --project P --region us-central1 \
#       --temp-location gs://TEMP/tmp --registry gs://REGISTRY/models --jobs jobs.yaml \
#       [--staging-location gs://TEMP/staging] [--service-account SA_EMAIL] \
#       [--machine-type n2-highmem-8] [--disk-size-gb 200] [--max-workers 4] \
#       [--image REGION-docker.pkg.dev/P/tf-bigexport/worker:TAG] [--subnetwork URL] \
#       [--mlflow-tracking-uri URI] [--run-id ID] [--template gs://.../tf-bigexport.json] \
#       [--dry-run] [-- extra Beam options, or gcloud flags with --template]
set -euo pipefail

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

root="$(cd "$(dirname "$0")/../.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
project="" region="" temp="" staging="" registry="" jobs="" service_account="" image=""
subnetwork="" mlflow="" run_id="" template="" max_workers=""
# Big models: the save holds the whole graph in memory (about 3x the proto),
# and the local disk holds the SavedModel plus its staged copy.
machine_type="n2-highmem-8" disk_size_gb="200"
dry_run=0
extra=()

while [ $# -gt 0 ]; do
  case "$1" in
    --project) project=$2; shift 2 ;;
    --region) region=$2; shift 2 ;;
    --temp-location) temp=$2; shift 2 ;;
    --staging-location) staging=$2; shift 2 ;;
    --registry) registry=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --service-account) service_account=$2; shift 2 ;;
    --machine-type) machine_type=$2; shift 2 ;;
    --disk-size-gb) disk_size_gb=$2; shift 2 ;;
    --max-workers) max_workers=$2; shift 2 ;;
    --image) image=$2; shift 2 ;;
    --subnetwork) subnetwork=$2; shift 2 ;;
    --mlflow-tracking-uri) mlflow=$2; shift 2 ;;
    --run-id) run_id=$2; shift 2 ;;
    --template) template=$2; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) usage ;;
    *) echo "launch.sh: unknown option $1" >&2; usage ;;
  esac
done

for required in project region temp registry jobs; do
  if [ -z "${!required}" ]; then
    echo "launch.sh: --${required/temp/temp-location} is required" >&2
    usage
  fi
done
# Dataflow reads both from Cloud Storage: a local path would fail only after submission.
case "$temp" in
  gs://*) ;;
  *) echo "launch.sh: --temp-location must be a gs:// URI (got $temp)" >&2; exit 2 ;;
esac
if [ -n "$template" ]; then
  case "$jobs" in
    gs://*) ;;
    *) echo "launch.sh: with --template the jobs file must be a gs:// URI the launcher can read (got $jobs)" >&2
       exit 2 ;;
  esac
fi
staging=${staging:-${temp%/}/staging}
run_id=${run_id:-$(date -u +%Y%m%dT%H%M%SZ)-$$}

if [ -n "$template" ]; then
  # The template's image is the worker image too (metadata.json lists the parameters).
  cmd=(gcloud dataflow flex-template run "tf-bigexport-$(echo "$run_id" | tr 'A-Z._=' 'a-z---')"
       --project "$project" --region "$region" --template-file-gcs-location "$template"
       --temp-location "$temp" --staging-location "$staging"
       --worker-machine-type "$machine_type"
       --parameters "jobs=$jobs,registry=$registry,run_id=$run_id,disk_size_gb=$disk_size_gb")
  [ -n "$service_account" ] && cmd+=(--service-account-email "$service_account")
  [ -n "$max_workers" ] && cmd+=(--max-workers "$max_workers")
  [ -n "$subnetwork" ] && cmd+=(--subnetwork "$subnetwork")
  [ -n "$mlflow" ] && cmd+=(--parameters "mlflow_tracking_uri=$mlflow")
  [ -n "$image" ] && cmd+=(--parameters "sdk_container_image=$image")
else
  cmd=("$python" -m tf_bigexport run --jobs "$jobs" --registry "$registry"
       --runner DataflowRunner --project "$project" --region "$region"
       --temp_location "$temp" --staging_location "$staging" --run_id "$run_id"
       --machine_type "$machine_type" --disk_size_gb "$disk_size_gb")
  [ -n "$service_account" ] && cmd+=(--service_account_email "$service_account")
  [ -n "$max_workers" ] && cmd+=(--max_num_workers "$max_workers")
  [ -n "$subnetwork" ] && cmd+=(--subnetwork "$subnetwork")
  [ -n "$mlflow" ] && cmd+=(--mlflow_tracking_uri "$mlflow")
  # With the worker image the project is already installed; without, workers build it from setup.py.
  if [ -n "$image" ]; then
    cmd+=(--sdk_container_image "$image" --experiments use_runner_v2)
  else
    # TensorFlow is not a plain dependency of the project (users keep their own build),
    # so workers get the launching environment's, pinned, straight from the index.
    requirements="${TMPDIR:-/tmp}/tf-bigexport-worker-requirements-$run_id.txt"
    "$python" -c 'import importlib.metadata as m; d = m.packages_distributions()["tensorflow"][0]; print(f"{d}=={m.version(d)}")' \
        > "$requirements"
    cmd+=(--setup_file "$root/setup.py" --requirements_file "$requirements" --requirements_cache skip)
  fi
fi
if [ ${#extra[@]} -gt 0 ]; then
  # Direct submission: `run` takes Beam options outside its list after `--`; gcloud takes its own flags.
  [ -z "$template" ] && cmd+=(--)
  cmd+=("${extra[@]}")
fi

if [ "$dry_run" = 1 ]; then
  printf '%q ' "${cmd[@]}"
  echo
  exit 0
fi
exec "${cmd[@]}"
