"""Secrets and trust, through the CLI against the GCS emulator.

- A fake token in the environment and in --storage_options never shows up in
  stdout, stderr (verbose logs included), outcome files, release records or
  any stored object, on success and on a storage failure: not as written, not
  URL-encoded, not base64-encoded.
- Registry URIs carrying credentials (user info, query tokens) are refused
  before any work, saying how to pass credentials, and the secret in them
  shows up nowhere either.
- `inspect` and `verify` parse files without running model code: neither the
  factory module is imported nor the graph's WriteFile op executed; `call`
  (which runs the model, for trusted models) does execute it: the control
  showing the check could fail.
"""
from __future__ import annotations

import base64
import json
import subprocess
import uuid
from urllib.parse import quote, quote_plus

import pytest

from hostile_testkit import child_env, pipeline_command, report, write_jobs
from storage_testkit import read_tree

# '/', '+' and '=' change under URL-encoding: each form is searched for separately
FAKE_OPTION_SECRET = "opt/Secret+7c1d2e3f4a5b6c="
FAKE_ENV_SECRET = "env/Secret+9a8b7c6d5e4f3a="
FAKE_URI_SECRET = "uri/Secret+0f1e2d3c4b5a69="
SECRET_ENV = {"AWS_SECRET_ACCESS_KEY": FAKE_ENV_SECRET, "GOOGLE_OAUTH_ACCESS_TOKEN": FAKE_ENV_SECRET,
              "AWS_SESSION_TOKEN": FAKE_ENV_SECRET}


def forms(secret: str) -> dict[str, str]:
    raw = secret.encode()
    return {"raw": secret, "url-encoded": quote(secret, safe=""), "url-encoded (+)": quote_plus(secret),
            "base64": base64.b64encode(raw).decode(), "base64url": base64.urlsafe_b64encode(raw).decode(),
            "base64 unpadded": base64.b64encode(raw).decode().rstrip("=")}


def assert_no_secret(haystacks: dict[str, str], secrets: tuple[str, ...]) -> None:
    for where, text in haystacks.items():
        for secret in secrets:
            for form, value in forms(secret).items():
                assert value not in text, f"{secret} ({form}) leaked into {where}"


@pytest.fixture(scope="module")
def published(gcs_emulator, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trust")
    registry_uri = gcs_emulator.uri(f"trust-{uuid.uuid4().hex[:8]}")
    side_effect = tmp / "written-by-the-model.txt"
    spec = [{"name": "x", "dtype": "float32", "shape": [None, 2]}]
    jobs = write_jobs(tmp / "jobs.json", [
        {"name": "writer", "factory": "hostile_models:writes_file_when_called",
         "factory_kwargs": {"path": str(side_effect)}, "signatures": {"serving_default": spec}},
    ], registry=registry_uri)
    lost = write_jobs(tmp / "lost.json", [
        {"name": "lost", "factory": "hostile_models:tiny_dense", "registry": "gs://no-such-bucket-zz/reg",
         "signatures": {"serving_default": [{"name": "x", "dtype": "float32", "shape": [None, 4]}]}},
    ])
    # extra gcsfs options reach the filesystem without being used for auth, like a real token would
    options = dict(gcs_emulator.storage_options, session_token_hint=FAKE_OPTION_SECRET)
    env = child_env(**SECRET_ENV)
    runs = [subprocess.run(pipeline_command("-v", "run", "--jobs", str(path), "--storage_options", json.dumps(options),
                                            "--work_dir", str(tmp / "work")),
                           env=env, capture_output=True, text=True, timeout=600) for path in (jobs, lost)]
    return {"run": runs[0], "lost": runs[1], "registry": registry_uri, "side_effect": side_effect, "tmp": tmp,
            "env": env, "options": options}


def test_credentials_never_reach_output_outcomes_records_or_objects(published, gcs_emulator):
    run, lost = published["run"], published["lost"]
    assert run.returncode == 0, run.stderr[-3000:]
    assert "writer  1 " in run.stdout
    # a storage failure, found before any work: its message names the bucket, never a secret
    assert lost.returncode == 2, lost.stderr[-3000:]
    assert "preflight: job 'lost': registry gs://no-such-bucket-zz/reg: not reachable or not writable" in lost.stderr
    outcomes = "\n".join(p.read_text() for p in (published["tmp"] / "work").rglob("*.json"))
    fs = gcs_emulator.filesystem()
    stored = read_tree(fs, published["registry"].split("://", 1)[1])
    assert any(name.endswith(".releases/1.json") for name in stored)
    haystacks = {"stdout": run.stdout + lost.stdout, "stderr": run.stderr + lost.stderr, "outcomes": outcomes,
                 "objects": b"\n".join(stored.values()).decode("latin-1")}
    assert run.stderr.count("\n") > 20  # verbose: Beam's and our logs were there to search
    assert_no_secret(haystacks, (FAKE_OPTION_SECRET, FAKE_ENV_SECRET))
    report("secrets", {"places_searched": sorted(haystacks), "bytes_searched": sum(len(t) for t in haystacks.values()),
                       "secrets_planted": 2, "forms_searched": sorted(forms("x")), "leaks": 0})


BAD_URIS = {"user info": f"s3://AKIAFAKE0000:{FAKE_URI_SECRET}@bucket/models",
            "query token": f"gs://bucket/models?access_token={quote(FAKE_URI_SECRET, safe='')}"}


@pytest.mark.parametrize("how", sorted(BAD_URIS))
def test_credentials_in_registry_uris_are_refused_before_any_work(how, tmp_path):
    jobs = write_jobs(tmp_path / "jobs.json", [
        {"name": "tiny", "factory": "hostile_models:tiny_dense",
         "signatures": {"serving_default": [{"name": "x", "dtype": "float32", "shape": [None, 4]}]}}])
    env = child_env()
    run = subprocess.run(pipeline_command("-v", "run", "--jobs", str(jobs), "--registry", BAD_URIS[how],
                                          "--work_dir", str(tmp_path / "work")),
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "job 'tiny' field 'registry'" in run.stderr and "storage options" in run.stderr
    assert "never in the URI" in run.stderr
    assert not (tmp_path / "work").exists()
    base, _, query = BAD_URIS[how].partition("?")
    inspect = subprocess.run(pipeline_command("inspect", f"{base}/tiny/1" + (f"?{query}" if query else "")),
                             env=env, capture_output=True, text=True, timeout=300)
    assert inspect.returncode != 0 and "storage options" in inspect.stderr, inspect.stderr[-2000:]
    haystacks = {"stdout": run.stdout + inspect.stdout, "stderr": run.stderr + inspect.stderr}
    assert_no_secret(haystacks, (FAKE_URI_SECRET,))
    report(f"uri_credentials_{how.replace(' ', '_')}",
           {"uri": how, "exit_code": run.returncode, "forms_searched": len(forms("x")), "leaks": 0})


def test_inspect_and_verify_never_run_model_code(published):
    import_marker = published["tmp"] / "factory-imported.txt"
    env = dict(published["env"], HOSTILE_MODELS_IMPORT_MARKER=str(import_marker),
               TF_BIGEXPORT_STORAGE_OPTIONS=json.dumps(published["options"]))
    uri = f"{published['registry']}/writer/1"
    outputs = []
    for command in (["inspect", uri], ["verify", uri]):
        done = subprocess.run(pipeline_command(*command), env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (command, done.stderr[-3000:])
        outputs.append(done.stdout + done.stderr)
    assert "signature_def['serving_default']" in outputs[0]
    assert "verified: all files match the release record" in outputs[1]
    assert not published["side_effect"].exists(), "inspect/verify executed the model's graph"
    assert not import_marker.exists(), "inspect/verify imported the factory module"

    # control: running the model (call) does execute its WriteFile op
    done = subprocess.run(pipeline_command("call", uri, "--input-exprs", "x=[[1.0, 2.0]]"), env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert published["side_effect"].read_text() == "3.000000"  # sum of the input
    assert not import_marker.exists()  # loading a SavedModel never imports Python code either
    for text in outputs + [done.stdout + done.stderr]:
        assert FAKE_OPTION_SECRET not in text and FAKE_ENV_SECRET not in text
    report("trust", {"commands_checked": ["inspect", "verify"], "model_code_run": 0,
                     "factory_imports": 0, "control_call_ran_model": True})
