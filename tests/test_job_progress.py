"""Progress of a run: one live line per job on a terminal; sparse and complete
log lines elsewhere, in every runner mode; storage steps counted under the job."""
from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import time

import pytest

from tf_bigexport.transforms import job_progress
from tf_bigexport.transforms.job_progress import Board, LogLines, stage_progress


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def sink():
    def use(new):
        job_progress.use_sink(new)
        return new
    yield use
    job_progress.use_sink(None)


def test_a_quick_stage_is_one_line_and_a_slow_one_starts_reports_and_ends(sink, caplog, monkeypatch):
    sink(LogLines())
    monkeypatch.setattr(job_progress, "START_AFTER", 0.2)
    monkeypatch.setattr(job_progress, "LOG_INTERVAL", 0.7)
    with caplog.at_level(logging.INFO, logger="tf_bigexport"):
        with stage_progress("m", "fingerprint"):
            pass
        with stage_progress("m", "save") as progress:
            progress.phase("writing the SavedModel")
            progress.bytes(3 << 20, 8 << 20)
            time.sleep(3.0)
    lines = [r.getMessage() for r in caplog.records]
    statuses = [line.split(" status=")[1].split()[0] for line in lines]
    assert statuses[:2] == ["done", "started"] and statuses[-1] == "done"
    assert set(statuses[2:-1]) == {"running"} and 1 <= len(statuses[2:-1]) <= 5  # every LOG_INTERVAL, not more
    assert lines[0].startswith("job=m stage=fingerprint status=done seconds=0.0")
    assert lines[1] == "job=m stage=save status=started phase=writing_the_SavedModel"
    assert "progress=3.0_MiB/8.0_MiB" in lines[2]
    assert lines[-1].startswith("job=m stage=save status=done seconds=3.")
    assert sum("stage=fingerprint" in line for line in lines) == 1


def test_a_failure_is_one_line_naming_the_stage_where_it_happened(sink, caplog):
    sink(LogLines())
    with caplog.at_level(logging.INFO, logger="tf_bigexport"), pytest.raises(RuntimeError):
        with stage_progress("m", "trace") as progress:
            progress.switch_stage("save")
            error = RuntimeError("disk full")
            error.stage = "save"
            raise error
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [lines[0], "job=m stage=save status=failed seconds=0.0 error=RuntimeError: disk full"]
    assert lines[0].startswith("job=m stage=trace status=done")


def test_the_terminal_shows_one_live_line_per_job_and_keeps_finished_ones(sink):
    tty = FakeTTY()
    board = sink(Board(tty))
    with stage_progress("alpha", "save") as a:
        a.phase("writing the SavedModel")
        a.bytes(1 << 20, 4 << 20)
        with stage_progress("beta", "trace") as b:
            b.phase("building the model")
            board.print_above("12:00:00 WARNING something to say")
    with stage_progress("alpha", "commit") as a:
        a.outcome = "published version 3 (reg/alpha/3)"
    screen = render(tty.getvalue())
    assert screen == ["12:00:00 WARNING something to say", "alpha: published version 3 (reg/alpha/3)",
                      "beta: trace done in 0.0s"]
    drawn = tty.getvalue()
    assert "alpha: save writing the SavedModel 1.0 MiB/4.0 MiB 0s" in drawn
    assert "beta: trace building the model 0s" in drawn


def render(output: str) -> list[str]:
    """What a terminal shows after `output` (the escapes the board uses: n F = up n lines, J, K)."""
    import re
    lines: list[str] = []
    row = 0
    for token in re.split(r"(\x1b\[\d*[FJK]|\n)", output):
        if not token:
            continue
        if token == "\n":
            row += 1
        elif token.endswith("F"):
            row -= int(token[2:-1] or 1)
        elif token.endswith("J"):
            del lines[row:]
        elif token.endswith("K"):
            pass
        else:
            while len(lines) <= row:
                lines.append("")
            lines[row] = token
    return [line for line in lines if line]


def test_storage_steps_are_counted_under_the_job_including_the_program_file(sink, tmp_path):
    from storage_testkit import make_export

    from tf_bigexport import storage
    sink(LogLines())
    export = make_export(tmp_path / "export", marker="saved_model.cpb", big=2_000_000)
    registry = storage.Registry(str(tmp_path / "reg"))
    manifest = storage.build_manifest(export)
    publication = registry.publication("m", "m.run", manifest)
    publication.stage(str(export))
    version = publication.claim(storage.VersionPolicy.next_integer())
    with stage_progress("m", "commit") as progress:
        publication.commit(version, {})
    assert progress.done_bytes == progress.total_bytes == manifest.total_bytes
    assert progress.done_files == progress.total_files == len(manifest.files)


def test_multi_processing_keeps_every_jobs_lines_and_no_worker_noise(tmp_path):
    """Beam worker processes: our lines reach the console, their start-up chatter does not."""
    jobs = tmp_path / "jobs.yaml"
    job = ("  - name: {name}\n    factory: tf_bigexport.pipeline.demo_models:split_constants\n"
           "    factory_kwargs: {{count: 2, size: 16}}\n"
           "    signatures: {{serving_default: [{{name: x, dtype: float32, shape: [null, 16]}}]}}\n"
           "    sample_inputs: {{serving_default: {{generate: {{seed: 0, batch: 2}}}}}}\n")
    jobs.write_text(f"registry: {tmp_path / 'reg'}\njobs:\n" + job.format(name="first") + job.format(name="second"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "TF_CPP"))}
    result = subprocess.run([sys.executable, "-m", "tf_bigexport", "run", "--jobs", str(jobs), "--work_dir",
                             str(tmp_path / "work"), "--direct_num_workers", "2", "--direct_running_mode",
                             "multi_processing"], capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr
    err = result.stderr
    for name in ("first", "second"):
        for stage in ("trace", "save", "fingerprint", "stage", "verify", "commit"):
            done = [line for line in err.splitlines() if f"job={name} stage={stage} status=done" in line]
            assert len(done) == 1, (name, stage, err)
    for noise in ("Discarding unparseable args", "oneDNN", "absl::InitializeLog", "severity:", "Worker:",
                  ".staging/", "apitools not found"):
        assert noise not in err, (noise, err)
    lines = [line.split(" ", 1)[1] for line in err.splitlines() if line.strip()]
    assert len(lines) == len(set(lines)), err  # nothing twice


WORKER_OUTPUT_SCRIPT = """
import logging, subprocess, sys
from tf_bigexport.pipeline import logs
logs.configure(verbose=sys.argv[2] == "verbose")
with logs.worker_output_to(sys.argv[1]):
    logging.getLogger("tf_bigexport").info("our line, during the run")
    subprocess.run([sys.executable, "-c", "import logging; logging.warning('worker chatter')"], check=True)
logging.getLogger("tf_bigexport").info("our line, after the run")
subprocess.run([sys.executable, "-c", "import sys; print('a later child', file=sys.stderr)"], check=True)
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_worker_processes_write_to_their_file_and_our_lines_to_the_terminal(tmp_path, verbose):
    """Beam's multi_processing workers inherit stderr; without Beam's GCP extra their imports make
    Python's logging print every worker record there (logs.worker_output_to)."""
    output = tmp_path / "worker-output.log"
    result = subprocess.run([sys.executable, "-c", WORKER_OUTPUT_SCRIPT, str(output), "verbose" if verbose else ""],
                            capture_output=True, text=True, timeout=300, check=True)
    assert "our line, during the run" in result.stderr and "our line, after the run" in result.stderr
    assert "a later child" in result.stderr  # fd 2 is the terminal again afterwards
    if verbose:  # --verbose shows everything where it was
        assert "worker chatter" in result.stderr and not output.exists()
    else:
        assert "worker chatter" not in result.stderr
        assert output.read_text() == "WARNING:root:worker chatter\n"


def test_worker_output_file_is_removed_when_empty_and_named_when_a_job_failed(tmp_path, caplog):
    from tf_bigexport.pipeline.export import _settle_worker_output
    path = tmp_path / "worker-output.log"
    published, failed = [{"status": "published"}], [{"status": "published"}, {"status": "failed"}]
    _settle_worker_output(str(path), failed)  # --verbose: there is no file
    path.write_text("")
    _settle_worker_output(str(path), failed)
    assert not path.exists()
    path.write_text("Traceback ...\n")
    with caplog.at_level(logging.WARNING, logger="tf_bigexport"):
        _settle_worker_output(str(path), published)
        assert caplog.text == ""
        _settle_worker_output(str(path), failed)
    assert path.exists() and f"what the worker processes wrote to stderr: {path}" in caplog.text


def test_beams_import_notes_on_the_root_logger_show_only_with_verbose():
    """Beam logs "apitools not found, ..." on the root logger when its GCP clients are imported
    (the demo does): noise to a user, shown with -v like other libraries' notes."""
    import logging

    from tf_bigexport.pipeline import logs

    def record(path: str, level: int = logging.WARNING) -> logging.LogRecord:
        return logging.LogRecord("root", level, path, 33, "apitools not found, ...", None, None)

    beam = os.path.join(os.sep, "venv", "site-packages", "apache_beam", "io", "gcp", "internal", "__init__.py")
    assert not logs._ShownRecords(verbose=False).filter(record(beam))
    assert logs._ShownRecords(verbose=True).filter(record(beam))
    assert logs._ShownRecords(verbose=False).filter(record(beam, logging.ERROR))
    assert logs._ShownRecords(verbose=False).filter(record(os.path.join(os.sep, "user", "code.py")))
