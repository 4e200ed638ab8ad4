"""Progress of long steps: save (program file bytes), verify (re-read bytes).

On a terminal a live \\r line ending at the total; elsewhere a few log lines.
"""
from __future__ import annotations

import io
import logging
import os
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from tf_bigexport import imageformat
from tf_bigexport.imageformat import chunked
from tf_bigexport.imageformat.riegeli import RecordReader
from tf_bigexport.byte_sizes import human_bytes
from tf_bigexport.transforms.save import save_progress

SMALL_CHUNK = 4096
CONSTANTS = 4  # each 600 KiB: several Riegeli chunks, so several progress calls


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


class Tables(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(7)
        self.tables = [rng.standard_normal(150 * 1024).astype(np.float32) for _ in range(CONSTANTS)]

    @tf.function(input_signature=[tf.TensorSpec([], tf.int32)])
    def __call__(self, i: tf.Tensor) -> tf.Tensor:
        return tf.add_n([tf.gather(tf.constant(t), i) for t in self.tables])


@pytest.fixture(scope="module")
def model() -> Tables:
    return Tables()


def test_save_reports_every_byte_of_the_cpb(model: Tables, tmp_path: pathlib.Path) -> None:
    calls: list[tuple[int, int]] = []
    imageformat.save(model, tmp_path / "m", max_chunk_size=SMALL_CHUNK,
                     progress=lambda written, total: calls.append((written, total)))
    cpb = tmp_path / "m" / chunked.SAVED_MODEL_CPB
    size = cpb.stat().st_size
    with RecordReader(cpb) as reader:
        records = sum(1 for _ in reader)
    assert sum(written for written, _ in calls) == size
    assert calls[-1][1] == size  # the last call gives the exact total
    assert all(total >= 0.5 * size for _, total in calls)  # the estimate is close from the start
    assert 1 < len(calls) < records  # whole Riegeli chunks, not one call per record


def test_save_on_a_tty_draws_a_line_ending_at_the_total(model: Tables, tmp_path: pathlib.Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    tty = FakeTTY()
    with caplog.at_level(logging.INFO), save_progress("save m", stream=tty) as progress:
        imageformat.save(model, tmp_path / "m", max_chunk_size=SMALL_CHUNK, progress=progress)
    size = (tmp_path / "m" / chunked.SAVED_MODEL_CPB).stat().st_size
    text = tty.getvalue()
    lines = [line for line in text.split("\r") if line]
    assert lines and text.endswith("\n")
    assert lines[-1].startswith(f"save m: {human_bytes(size)}/{human_bytes(size)} ")
    assert "save m" not in caplog.text  # the terminal shows it, the log does not repeat it


def test_save_off_a_tty_logs_a_few_plain_lines(model: Tables, tmp_path: pathlib.Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    plain = io.StringIO()
    with caplog.at_level(logging.INFO), save_progress("save m", stream=plain) as progress:
        imageformat.save(model, tmp_path / "m", max_chunk_size=SMALL_CHUNK, progress=progress)
    size = (tmp_path / "m" / chunked.SAVED_MODEL_CPB).stat().st_size
    assert plain.getvalue() == ""
    ours = [r.getMessage() for r in caplog.records if r.getMessage().startswith("save m")]
    assert ours == [ours[-1]] and ours[-1].startswith(f"save m: finished, {human_bytes(size)} in ")
    assert "\r" not in caplog.text


def test_plain_pb_reports_its_size(tmp_path: pathlib.Path) -> None:
    calls: list[tuple[int, int]] = []
    imageformat.save(tf.Module(), tmp_path / "m", progress=lambda w, t: calls.append((w, t)))
    size = os.path.getsize(tmp_path / "m" / chunked.SAVED_MODEL_PB)
    assert calls == [(size, size)]


def _published_like(tmp_path: pathlib.Path) -> tuple[pathlib.Path, list]:
    from tf_bigexport.storage import build_manifest
    root = tmp_path / "version"
    (root / "variables").mkdir(parents=True)
    (root / "variables" / "variables.data-00000-of-00001").write_bytes(os.urandom(3 << 20))
    (root / "saved_model.cpb").write_bytes(os.urandom(100_000))
    return root, build_manifest(str(root)).files


def test_verify_rereads_draw_progress_on_a_tty(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tf_bigexport.storage import open_store
    from tf_bigexport.storage.verify import check_entries
    root, entries = _published_like(tmp_path)
    tty = FakeTTY()
    monkeypatch.setattr("sys.stderr", tty)
    infos = {e.path: {"size": e.size} for e in entries}
    store = open_store(str(root))
    found = check_entries(store, store.root, entries, infos, depth="full", workers=2, label="verify v1")
    assert found == []
    total = sum(e.size for e in entries)
    last = [line for line in tty.getvalue().split("\r") if line][-1]
    assert last.startswith(f"verify v1: {human_bytes(total)}/{human_bytes(total)} 2/2 files ")


def test_verify_rereads_off_a_tty_log_one_line_per_file(tmp_path: pathlib.Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    from tf_bigexport.storage import open_store
    from tf_bigexport.storage.verify import check_entries
    root, entries = _published_like(tmp_path)
    infos = {e.path: {"size": e.size} for e in entries}
    store = open_store(str(root))
    with caplog.at_level(logging.INFO, logger="storage"):
        check_entries(store, store.root, entries, infos, depth="full", workers=1, label="verify v1")
    ours = [r.getMessage() for r in caplog.records if r.getMessage().startswith("verify v1")]
    assert len(ours) == 3 and ours[-1].startswith("verify v1: finished 2 files, ")


def test_pipeline_verify_reads_the_cpb_with_progress(model: Tables, tmp_path: pathlib.Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    from tf_bigexport.pipeline.verify_release import read_records_fully
    imageformat.save(model, tmp_path / "m", max_chunk_size=SMALL_CHUNK)
    cpb = str(tmp_path / "m" / chunked.SAVED_MODEL_CPB)
    size = os.path.getsize(cpb)
    tty = FakeTTY()
    count = read_records_fully(cpb, "v1/saved_model.cpb", stream=tty)
    with RecordReader(cpb) as reader:
        assert count == sum(1 for _ in reader)
    last = [line for line in tty.getvalue().split("\r") if line][-1]
    assert last.startswith(f"riegeli v1/saved_model.cpb: {human_bytes(size)}/{human_bytes(size)} ")
    plain = io.StringIO()
    with caplog.at_level(logging.INFO):
        read_records_fully(cpb, "v1/saved_model.cpb", stream=plain)
    assert plain.getvalue() == ""
    ours = [r.getMessage() for r in caplog.records if r.getMessage().startswith("riegeli v1")]
    assert len(ours) == 1 and f"finished, {human_bytes(size)} in " in ours[0]
