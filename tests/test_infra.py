"""infra/: what cannot run here (Docker, Terraform, Dataflow) checked against
the code it packages: the worker image's base tag, the Flex Template's
parameters, the launcher's command lines, and the Terraform files."""
from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATAFLOW = os.path.join(ROOT, "infra", "dataflow")
TERRAFORM = os.path.join(ROOT, "infra", "terraform")
LAUNCH = os.path.join(DATAFLOW, "launch.sh")
REQUIRED = ["--project", "p1", "--region", "europe-west4", "--temp-location", "gs://tmp-bucket/tmp",
            "--registry", "gs://reg-bucket/models", "--jobs", "gs://reg-bucket/jobs.yaml"]


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


# ---- worker image ------------------------------------------------------------------

def dockerfile_base() -> tuple[str, str]:
    [line] = [l for l in read(os.path.join(DATAFLOW, "Dockerfile")).splitlines() if l.startswith("FROM ")]
    match = re.fullmatch(r"FROM apache/beam_python(\d+\.\d+)_sdk:(\S+)", line)
    assert match, f"Dockerfile base is not a Beam Python SDK image: {line}"
    return match.group(1), match.group(2)


def test_worker_image_matches_installed_beam_and_a_supported_python():
    import apache_beam
    from packaging.specifiers import SpecifierSet
    python, beam = dockerfile_base()
    assert beam == apache_beam.__version__
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    # The image pins one Python; it must be one the project supports (3.10 to 3.13).
    supported = SpecifierSet(project["requires-python"])
    assert f"{python}.0" in supported, (python, str(supported))
    assert [f"3.{minor}" for minor in range(8, 16) if f"3.{minor}.0" in supported] == ["3.10", "3.11", "3.12", "3.13"]
    beam_pin = next(d for d in project["dependencies"] if d.startswith("apache-beam"))
    low, high = re.search(r">=([\d.]+),<([\d.]+)", beam_pin).groups()
    as_tuple = lambda v: tuple(int(x) for x in v.split("."))
    assert as_tuple(low) <= as_tuple(beam) < as_tuple(high)


def test_worker_image_copies_every_package_and_the_template_entry_point():
    text = read(os.path.join(DATAFLOW, "Dockerfile"))
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        folders = set(tomllib.load(f)["tool"]["setuptools"]["package-dir"].values())
    for folder in folders:
        assert re.search(rf"^COPY {folder} \./{folder}$", text, re.M), folder
        assert os.path.isdir(os.path.join(ROOT, folder))
    entry = re.search(r"FLEX_TEMPLATE_PYTHON_PY_FILE=/opt/tf-bigexport/(\S+)", text).group(1)
    assert os.path.isfile(os.path.join(ROOT, entry))
    assert f"COPY {entry} ./{entry}" in text
    # TensorFlow is an extra (the user's own build elsewhere); the image picks the CPU build.
    assert re.search(r"pip install --no-cache-dir '\.\[cpu,dataflow,gcs,mlflow\]'", text)
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    assert {"cpu", "dataflow", "gcs", "mlflow"} <= set(extras)


# ---- flex template ------------------------------------------------------------------

def run_options() -> dict[str, str]:
    """Option name -> help of `tf-bigexport run`'s own options (not the Beam options it passes on)."""
    from tf_bigexport.pipeline import cli
    run = cli.subparser(cli.build_parser(), "run")
    return {a.dest: a.help for a in run._actions
            if a.option_strings and a.dest not in ("help", "verbose") and not a.dest.startswith("beam_")}


def test_template_parameters_are_the_run_options():
    metadata = json.loads(read(os.path.join(DATAFLOW, "metadata.json")))
    parameters = {p["name"]: p for p in metadata["parameters"]}
    assert len(parameters) == len(metadata["parameters"])
    options = run_options()
    assert set(parameters) == set(options)
    assert parameters["jobs"]["isOptional"] is False  # required=True in the CLI
    for name, p in parameters.items():
        assert p["isOptional"] is (name != "jobs")
        assert p["label"] and len(p["helpText"]) > 20
        for regex in p.get("regexes", []):
            re.compile(regex)


def test_template_regexes_accept_what_the_cli_accepts():
    metadata = json.loads(read(os.path.join(DATAFLOW, "metadata.json")))
    regexes = {p["name"]: p.get("regexes", []) for p in metadata["parameters"]}
    from tf_bigexport.storage.names import run_id_problem
    for run_id in ("20261122T031500Z-ab12cd", "nightly.7", "a"):
        assert run_id_problem(run_id) is None and all(re.match(r, run_id) for r in regexes["run_id"])
    for bad in ("-x", "a/b", "x" * 65):
        assert run_id_problem(bad) and not all(re.match(r, bad) for r in regexes["run_id"])
    assert all(re.match(r, "gs://b/models") for r in regexes["registry"])


def test_template_entry_point_takes_the_run_options(tmp_path):
    """What the launcher runs: parses like `run`, validates the jobs file, constructs the graph."""
    sys.path.insert(0, DATAFLOW)
    try:
        import template_main
    finally:
        sys.path.remove(DATAFLOW)
    bad = tmp_path / "jobs.yaml"
    bad.write_text("jobs: [{name: x, factory: 'no colon'}]\n")
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    assert template_main.main([f"--jobs={bad}"]) == 2
    assert template_main.fetch_jobs_file(str(bad), str(tmp_path)) == str(bad)
    memory_uri = f"memory://templates/{tmp_path.name}/jobs.yaml"
    import fsspec
    with fsspec.open(memory_uri, "wb") as f:
        f.write(b"jobs: []\n")
    copied = template_main.fetch_jobs_file(memory_uri, str(copy_dir))
    assert copied == str(copy_dir / "jobs.yaml")
    assert read(copied) == "jobs: []\n"


# ---- launcher -------------------------------------------------------------------------

def dry_run(*flags: str) -> list[str]:
    out = subprocess.run(["bash", LAUNCH, "--dry-run", *REQUIRED, *flags], capture_output=True, text=True,
                         check=True, env=dict(os.environ, PYTHON=sys.executable)).stdout
    return shlex.split(out)


def test_launcher_is_valid_bash():
    subprocess.run(["bash", "-n", LAUNCH], check=True)
    assert os.access(LAUNCH, os.X_OK)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (apt-get install shellcheck)")
def test_launcher_passes_shellcheck():
    result = subprocess.run(["shellcheck", LAUNCH], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_launcher_submits_with_options_the_pipeline_understands(caplog):
    from apache_beam.options.pipeline_options import GoogleCloudOptions, SetupOptions, WorkerOptions

    from tf_bigexport.pipeline import cli
    from tf_bigexport.pipeline.options import build_options
    command = dry_run("--service-account", "sa@p1.iam.gserviceaccount.com", "--max-workers", "3",
                      "--mlflow-tracking-uri", "https://mlflow.example", "--run-id", "nightly.1",
                      "--", "--experiments", "shuffle_mode=service")
    assert command[:4] == [sys.executable, "-m", "tf_bigexport", "run"]
    args = cli.parse_args(command[3:])
    assert (args.jobs, args.registry) == ("gs://reg-bucket/jobs.yaml", "gs://reg-bucket/models")
    with caplog.at_level(logging.WARNING):
        options, export = build_options(args.run_options)
        options.get_all_options()
    assert "Discarding unparseable args" not in caplog.text
    cloud, worker = options.view_as(GoogleCloudOptions), options.view_as(WorkerOptions)
    assert (cloud.project, cloud.region, cloud.temp_location, cloud.staging_location) == (
        "p1", "europe-west4", "gs://tmp-bucket/tmp", "gs://tmp-bucket/tmp/staging")
    assert cloud.service_account_email == "sa@p1.iam.gserviceaccount.com"
    assert (worker.machine_type, worker.disk_size_gb, worker.max_num_workers) == ("n2-highmem-8", 200, 3)
    setup = options.view_as(SetupOptions)
    assert setup.setup_file == os.path.join(ROOT, "setup.py")
    # Workers built from setup.py get the launcher's TensorFlow build and version (not a dependency).
    import importlib.metadata
    import tensorflow as tf
    [distribution] = importlib.metadata.packages_distributions()["tensorflow"]
    assert read(setup.requirements_file).split() == [f"{distribution}=={tf.__version__}"]
    assert setup.requirements_cache == "skip"
    assert (export.run_id, export.registration) == ("nightly.1", {"mlflow_tracking_uri": "https://mlflow.example"})
    assert "shuffle_mode=service" in options.view_as(
        __import__("apache_beam").options.pipeline_options.DebugOptions).experiments


def test_launcher_with_image_skips_the_setup_file():
    from apache_beam.options.pipeline_options import SetupOptions, WorkerOptions

    from tf_bigexport.pipeline import cli
    from tf_bigexport.pipeline.options import build_options
    image = "europe-west4-docker.pkg.dev/p1/tf-bigexport/worker:1"
    args = cli.parse_args(dry_run("--image", image, "--machine-type", "m3-ultramem-32")[3:])
    options, _ = build_options(args.run_options)
    assert options.view_as(WorkerOptions).sdk_container_image == image
    assert options.view_as(WorkerOptions).machine_type == "m3-ultramem-32"
    assert options.view_as(SetupOptions).setup_file is None
    assert options.view_as(SetupOptions).requirements_file is None


def test_launcher_template_mode_passes_declared_parameters():
    metadata = json.loads(read(os.path.join(DATAFLOW, "metadata.json")))
    declared = {p["name"] for p in metadata["parameters"]}
    command = dry_run("--template", "gs://tmp-bucket/templates/tf-bigexport.json",
                      "--mlflow-tracking-uri", "https://mlflow.example", "--run-id", "nightly.2")
    assert command[:4] == ["gcloud", "dataflow", "flex-template", "run"]
    assert command[4] == "tf-bigexport-nightly-2"  # Dataflow job names: [a-z]([-a-z0-9]*[a-z0-9])?
    params = {}
    for i, word in enumerate(command):
        if word == "--parameters":
            params.update(kv.split("=", 1) for kv in command[i + 1].split(","))
    from apache_beam.options.pipeline_options import PipelineOptions
    beam_options = set(PipelineOptions([]).get_all_options(drop_default=False))
    assert set(params) <= declared | beam_options
    assert params["jobs"] == "gs://reg-bucket/jobs.yaml" and params["run_id"] == "nightly.2"
    assert params["mlflow_tracking_uri"] == "https://mlflow.example"


def test_launcher_names_a_missing_required_flag():
    result = subprocess.run(["bash", LAUNCH, "--project", "p1"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "--region is required" in result.stderr


# ---- terraform ------------------------------------------------------------------------

def plain(value):
    """python-hcl2 output without its markers: string literals unquoted, no __is_block__/__comments__."""
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items() if k not in ("__is_block__", "__comments__")}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def terraform_files() -> dict[str, dict]:
    import hcl2
    parsed = {}
    for name in sorted(os.listdir(TERRAFORM)):
        if name.endswith(".tf"):
            with open(os.path.join(TERRAFORM, name), encoding="utf-8") as f:
                parsed[name] = plain(hcl2.load(f))
    return parsed


def blocks(parsed: dict, kind: str) -> dict[tuple[str, ...], dict]:
    """{(type, name) or (name,): body} of every `kind` block (resource, variable, output)."""
    out = {}
    for doc in parsed.values():
        for entry in doc.get(kind, []):
            for key, body in entry.items():
                if kind == "resource":
                    for name, inner in body.items():
                        out[(key, name)] = inner
                else:
                    out[(key,)] = body
    return out


def flatten(value) -> str:
    return json.dumps(value)


def test_terraform_parses_and_references_only_what_it_declares():
    parsed = terraform_files()
    assert {"main.tf", "variables.tf", "outputs.tf", "versions.tf"} <= set(parsed)
    resources = blocks(parsed, "resource")
    variables = {k[0] for k in blocks(parsed, "variable")}
    text = "".join(read(os.path.join(TERRAFORM, n)) for n in parsed)
    for kind, name in set(re.findall(r"\b(google_[a-z_]+)\.([a-z_]+)\.", text)):
        assert (kind, name) in resources, f"reference to undeclared {kind}.{name}"
    used = set(re.findall(r"\bvar\.([a-z_]+)", text))
    assert used == variables, f"unused {variables - used}, undeclared {used - variables}"
    locals_declared = {k for doc in parsed.values() for entry in doc.get("locals", []) for k in entry}
    assert set(re.findall(r"\blocal\.([a-z_]+)", text)) <= locals_declared


def test_registry_bucket_is_uniform_versioned_and_drops_stale_staging():
    resources = blocks(terraform_files(), "resource")
    bucket = resources[("google_storage_bucket", "registry")]
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["versioning"][0]["enabled"] is True
    rules = [r for r in bucket["lifecycle_rule"] if r["action"][0]["type"] == "Delete"]
    staging = [r for r in rules if "matches_prefix" in r["condition"][0]]
    assert len(staging) == 1
    assert staging[0]["condition"][0]["matches_prefix"] == ["${local.staging_prefix}"]
    # The prefix is the storage layer's staging folder under the registry prefix.
    [local] = terraform_files()["main.tf"]["locals"]
    assert local["staging_prefix"] == "${var.registry_prefix}/.staging/"
    from tf_bigexport.storage.publication import staging_path
    from tf_bigexport.storage import open_store
    store = open_store("memory://tf-infra/models")
    assert staging_path(store, "job.1").startswith(store.join(".staging") + "/")


def test_pipeline_account_may_write_only_staging_and_registry():
    resources = blocks(terraform_files(), "resource")
    member = "serviceAccount:${google_service_account.pipeline.email}"
    grants = {key: body for key, body in resources.items() if body.get("member") == member}
    by_kind: dict[str, list[dict]] = {}
    for (kind, _), body in grants.items():
        by_kind.setdefault(kind, []).append(body)
    assert [b["role"] for b in by_kind["google_project_iam_member"]] == ["roles/dataflow.worker"]
    bucket_roles = {(b["bucket"], b["role"]): b for b in by_kind["google_storage_bucket_iam_member"]}
    registry, temp = "${google_storage_bucket.registry.name}", "${google_storage_bucket.temp.name}"
    assert set(bucket_roles) == {(registry, "roles/storage.objectViewer"), (registry, "roles/storage.objectCreator"),
                                 (registry, "roles/storage.objectUser"), (temp, "roles/storage.objectAdmin")}
    # Delete/overwrite in the registry only where the publishing steps rewrite objects.
    condition = bucket_roles[(registry, "roles/storage.objectUser")]["condition"][0]["expression"]
    assert ".staging/" in condition and ".probe/" in condition and "/index.json" in condition
    assert ".claims" not in condition and ".releases" not in condition
    assert all(b.get("condition") is None for k, b in bucket_roles.items() if k[1] != "roles/storage.objectUser")
    assert not any("admin" in b["role"].lower() for k, b in bucket_roles.items() if k[0] == registry)


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform not installed")
def test_terraform_files_are_formatted():
    result = subprocess.run(["terraform", "fmt", "-check", "-diff", TERRAFORM], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# ---- example release workflow -------------------------------------------------------

def test_release_workflow_uses_flags_and_commands_that_exist():
    import yaml
    path = os.path.join(ROOT, ".github", "workflows", "release.yml")
    workflow = yaml.safe_load(read(path))
    assert workflow[True]["push"]["tags"]  # `on:` (YAML 1.1 reads the key as True)
    steps = workflow["jobs"]["export"]["steps"]
    scripts = "\n".join(s.get("run", "") for s in steps)
    launch_flags = set(re.findall(r"^\s*(--[a-z-]+)\)", read(LAUNCH), re.M))
    invocation = scripts[scripts.index("infra/dataflow/launch.sh"):scripts.index("| tee")]
    used = set(re.findall(r"(?<![\w-])(--[a-z-]+)", invocation))
    assert used and used <= launch_flags, used - launch_flags
    from tf_bigexport.pipeline import cli
    commands = cli.build_parser()._subparsers._group_actions[0].choices
    for command in re.findall(r"-m tf_bigexport (\w+)", scripts):
        assert command in commands
    assert "--mlflow_tracking_uri" in {o for a in commands["register"]._actions for o in a.option_strings}
    # Exit status 3 (published, not registered) is what the workflow retries with `register`.
    assert cli.EXIT_NOT_REGISTERED == 3 and '"$status" = 3' in scripts


def launcher_refusal(*flags: str) -> str:
    result = subprocess.run(["bash", LAUNCH, "--dry-run", *flags], capture_output=True, text=True,
                            env=dict(os.environ, PYTHON=sys.executable))
    assert result.returncode == 2 and not result.stdout, result
    return result.stderr


def test_launcher_refuses_local_paths_dataflow_cannot_read():
    local_temp = [f if f != "gs://tmp-bucket/tmp" else "/tmp/dataflow-temp" for f in REQUIRED]
    assert "--temp-location must be a gs:// URI (got /tmp/dataflow-temp)" in launcher_refusal(*local_temp)
    local_jobs = [f if f != "gs://reg-bucket/jobs.yaml" else "jobs.yaml" for f in REQUIRED]
    err = launcher_refusal(*local_jobs, "--template", "gs://tmp-bucket/templates/t.json")
    assert "with --template the jobs file must be a gs:// URI" in err
    dry_run_local_jobs = subprocess.run(["bash", LAUNCH, "--dry-run", *local_jobs], capture_output=True, text=True,
                                        env=dict(os.environ, PYTHON=sys.executable))
    assert dry_run_local_jobs.returncode == 0  # direct submission reads the jobs file here


def test_launcher_passes_any_beam_option_after_the_separator():
    from tf_bigexport.pipeline import cli
    command = dry_run("--", "--worker_zone", "europe-west4-b", "--no_use_public_ips")
    assert command[-4:] == ["--", "--worker_zone", "europe-west4-b", "--no_use_public_ips"]
    run = cli.parse_args(command[3:]).run_options
    assert run.beam_args[-3:] == ("--worker_zone", "europe-west4-b", "--no_use_public_ips")
