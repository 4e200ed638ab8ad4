"""Saving into bad places and saving what cannot be saved: clear errors, nothing half-written.

* A constant too large for one TensorProto (TensorFlow's limit is 2 GiB) fails
  before anything is written, naming the export dir, the function capturing
  it, its size, the limit, and the fix (a tf.Variable). In CI the same check
  runs with a small ``max_constant_bytes``; the real 2 GiB case is slow.
* An export dir that is a file, or on a read-only file system: TensorFlow's
  own error, which names the path, and nothing is created.
* Saving over another model: only the new program file remains
  (saved_model.pb and .cpb never sit side by side).
* Disk full while saved_model.cpb is written (RLIMIT_FSIZE in a subprocess,
  and a real 2 MB tmpfs when we may mount one): an OSError naming the file,
  no saved_model.cpb and no temporary file left, and no program file of the
  model that was there before.
"""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tf_bigexport import imageformat
from tf_bigexport.imageformat import chunked, splitter
from tf_bigexport.imageformat.chunk_errors import ConstantTooLargeError

PROGRAM_FILES = ("saved_model.pb", "saved_model.pbtxt", "saved_model.cpb")


class Captures(tf.Module):
    """A variable and a captured constant (the values of ``constant``)."""

    def __init__(self, constant: np.ndarray, variable_scale: float = 1.0):
        super().__init__()
        self.scale = tf.Variable(np.full([4], variable_scale, np.float32))
        self.table = tf.constant(constant)

    @tf.function(input_signature=[tf.TensorSpec([4], tf.float32)])
    def __call__(self, x):
        return {"out": x * self.scale + self.table[:4]}


class HoldsVariable(tf.Module):
    """The fix the error message proposes: the same values in a tf.Variable."""

    def __init__(self, values: np.ndarray):
        super().__init__()
        self.table = tf.Variable(values, trainable=False)

    @tf.function(input_signature=[tf.TensorSpec([4], tf.float32)])
    def __call__(self, x):
        return {"out": x + self.table[:4]}


def ramp(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float32) / 7.0


def program_files(directory) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name in PROGRAM_FILES)


def leftovers(directory) -> list[str]:
    return sorted(name for name in os.listdir(directory) if ".tmp-" in name)


def serve(directory, x) -> np.ndarray:
    return imageformat.load(str(directory)).signatures["serving_default"](tf.constant(x))["out"].numpy()


# ---- constants too large for a TensorProto ---------------------------------------

def test_captured_constant_past_the_limit_names_it_and_the_fix(tmp_path):
    export_dir = tmp_path / "model"
    with pytest.raises(ConstantTooLargeError) as caught:
        imageformat.save(Captures(ramp(5000)), export_dir, max_chunk_size=4000, max_constant_bytes=10_000)
    message = str(caught.value)
    assert message.startswith(f"{export_dir}: cannot save the float32 constant of shape (5000,) "
                              f"captured by function '")
    assert "holds 20000 bytes" in message and "max_constant_bytes given (10000 bytes)" in message
    assert "tf.Variable" in message and "variables/" in message
    assert "Traceback" not in message and not os.path.exists(export_dir)  # refused before writing


def test_the_proposed_fix_saves_under_the_same_limit(tmp_path):
    values = ramp(5000)
    imageformat.save(HoldsVariable(values), tmp_path / "model", max_chunk_size=4000, max_constant_bytes=10_000)
    np.testing.assert_allclose(serve(tmp_path / "model", np.ones(4, np.float32)), 1 + values[:4])


def test_constant_of_one_repeated_value_is_not_refused(tmp_path):
    # TensorFlow stores such a constant by shape and one value, whatever its size.
    imageformat.save(Captures(np.full([5000], 2.5, np.float32)), tmp_path / "model",
                     max_chunk_size=4000, max_constant_bytes=10_000)
    np.testing.assert_allclose(serve(tmp_path / "model", np.zeros(4, np.float32)), np.full(4, 2.5))


def test_default_limit_is_protobufs(tmp_path):
    imageformat.save(Captures(ramp(5000)), tmp_path / "model", max_chunk_size=4000)
    assert program_files(tmp_path / "model") == ["saved_model.cpb"]


def test_splitter_refuses_a_graph_constant_past_the_limit(tmp_path):
    tf.saved_model.save(Captures(ramp(5000)), str(tmp_path / "plain"))
    proto = chunked.read_saved_model(tmp_path / "plain")
    with pytest.raises(ConstantTooLargeError, match=r"^Const node '.*' \(op Const\) holds 20000 bytes of "
                                                    r"tensor data, past the max_constant_bytes given"):
        splitter.plan_split(proto, 4000, max_constant_bytes=19_999)
    splitter.plan_split(proto, 4000, max_constant_bytes=20_000)  # at the limit: fine
    with pytest.raises(ConstantTooLargeError):
        chunked.write_saved_model_proto(proto, tmp_path / "out", max_chunk_size=4000, max_constant_bytes=100)
    assert not os.path.exists(tmp_path / "out") or not program_files(tmp_path / "out")


@pytest.mark.slow
def test_constant_past_2gib_gets_a_clear_error(tmp_path):
    """A 2 GiB + 1 MiB uint8 constant (about 7 GB of RAM while the model exists)."""
    values = np.zeros((1 << 31) + (1 << 20), np.uint8)
    values[::4096] = 7

    class Big(tf.Module):
        def __init__(self):
            super().__init__()
            self.big = tf.constant(values)

        @tf.function(input_signature=[])
        def head(self):
            return tf.reduce_sum(tf.cast(self.big[:10], tf.int32))

    model = Big()
    del values
    export_dir = tmp_path / "model"
    with pytest.raises(ConstantTooLargeError) as caught:
        imageformat.save(model, export_dir)
    message = str(caught.value)
    assert message.startswith(f"{export_dir}: cannot save the uint8 constant of shape (2148532224,)")
    assert "holds 2148532224 bytes" in message and "protobuf's 2 GiB limit" in message
    assert "tf.Variable" in message and not os.path.exists(export_dir)


# ---- bad export directories -------------------------------------------------------

def test_export_dir_that_is_a_file(tmp_path):
    target = tmp_path / "model"
    target.write_bytes(b"not a directory")
    with pytest.raises(tf.errors.OpError, match=f"{target} is not a directory"):
        imageformat.save(Captures(ramp(100)), target, max_chunk_size=300)
    assert target.read_bytes() == b"not a directory"
    with pytest.raises(OSError, match=f"cannot create the export directory {target}"):
        chunked.write_saved_model_proto(chunked.read_saved_model(_plain_model(tmp_path)), target)


def _plain_model(tmp_path):
    directory = tmp_path / "plain"
    if not directory.exists():
        tf.saved_model.save(Captures(ramp(100)), str(directory))
    return directory


def _mounted_tmpfs(directory, options: str, why_skip: str):
    """Fixture body: a tmpfs mounted on `directory` for the test, unmounted after it."""
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"{why_skip}: {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", str(directory)], check=True)


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory nothing may be written into, also for root (a read-only tmpfs)."""
    directory = tmp_path / "read-only"
    directory.mkdir()
    if os.geteuid() != 0:
        directory.chmod(0o555)
        yield directory
        directory.chmod(0o755)
        return
    yield from _mounted_tmpfs(directory, "ro,size=1m", "root without permission to mount a read-only tmpfs")


def test_unwritable_export_dir(read_only_dir):
    target = read_only_dir / "model"
    with pytest.raises(tf.errors.OpError, match=str(target)):
        imageformat.save(Captures(ramp(100)), target, max_chunk_size=300)
    assert os.listdir(read_only_dir) == []


# ---- saving over another model ------------------------------------------------------

@pytest.mark.parametrize("first, second", [("pb", "cpb"), ("cpb", "pb")])
def test_saving_over_another_model_leaves_only_the_new_program(tmp_path, first, second):
    chunk_size = {"pb": None, "cpb": 2000}
    export_dir = tmp_path / "model"
    imageformat.save(Captures(ramp(1000), variable_scale=1.0), export_dir, max_chunk_size=chunk_size[first])
    assert program_files(export_dir) == [f"saved_model.{first}"]
    (export_dir / "saved_model.pbtxt").write_text("# an even older program file\n")

    imageformat.save(Captures(ramp(1000) + 100, variable_scale=3.0), export_dir, max_chunk_size=chunk_size[second])
    assert program_files(export_dir) == [f"saved_model.{second}"] and not leftovers(export_dir)
    np.testing.assert_allclose(serve(export_dir, np.ones(4, np.float32)), 3.0 + 100 + ramp(4))


# ---- disk full while saved_model.cpb is written ----------------------------------------

# Saves twice into one dir: a first model (plain .pb), then one whose .cpb (about
# 4 MB: a 1M-float constant) does not fit. Prints what the second save raised
# and what was left in the directory.
_DISK_FULL_SCRIPT = textwrap.dedent("""
    import json, os, resource, signal, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from tf_bigexport import imageformat
    from test_save_hostile import Captures, ramp
    export_dir, file_limit = sys.argv[1], int(sys.argv[2])
    imageformat.save(Captures(ramp(100)), export_dir)
    if file_limit:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))
    try:
        imageformat.save(Captures(ramp(1 << 20)), export_dir, max_chunk_size=1 << 20)
        error = None
    except Exception as exc:
        error = {{"type": type(exc).__name__, "message": str(exc), "errno": getattr(exc, "errno", None)}}
    print(json.dumps({{"error": error, "files": sorted(os.listdir(export_dir))}}))
""")


def _save_until_disk_full(export_dir, file_limit: int = 0) -> dict:
    script = _DISK_FULL_SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", script, str(export_dir), str(file_limit)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _assert_clean_failure(result: dict, export_dir, errno_name: str) -> None:
    error = result["error"]
    assert error is not None, f"the save did not fail: {result}"
    assert error["type"] == "OSError" and error["errno"] == getattr(errno, errno_name), error
    assert error["message"].startswith(f"[Errno {error['errno']}] cannot write "
                                       f"{export_dir}/saved_model.cpb: "), error
    files = result["files"]
    assert not any(name in files for name in PROGRAM_FILES), files  # neither half a .cpb nor the old .pb
    assert not any(".tmp-" in name for name in files), files


def test_file_size_limit_while_writing_cpb(tmp_path):
    result = _save_until_disk_full(tmp_path / "model", file_limit=1 << 20)
    _assert_clean_failure(result, tmp_path / "model", "EFBIG")
    assert "variables" in result["files"]


@pytest.fixture
def small_tmpfs(tmp_path):
    directory = tmp_path / "small-disk"
    directory.mkdir()
    yield from _mounted_tmpfs(directory, "size=2m", "cannot mount a tmpfs here (needs root)")


def test_disk_full_while_writing_cpb(small_tmpfs):
    result = _save_until_disk_full(small_tmpfs / "model")
    _assert_clean_failure(result, small_tmpfs / "model", "ENOSPC")
