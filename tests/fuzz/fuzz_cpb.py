"""Coverage-guided fuzzing of the program-file readers, the merger and `verify`'s path with atheris,
for long runs by hand.

    .venv/bin/python tests/fuzz/fuzz_cpb.py --make-corpus build/fuzz-corpus
    nice .venv/bin/python tests/fuzz/fuzz_cpb.py build/fuzz-corpus -max_total_time=1800 \\
        -rss_limit_mb=3072 -timeout=60 -print_final_stats=1

Arguments after the corpus directory are libFuzzer's. An input starting with the Riegeli
file signature is saved_model.cpb, anything else saved_model.pb. Each is read through
imageformat.read_saved_model (merger included), RecordReader and ChunkedFile, then through
what `tf-bigexport verify` does to recompute a fingerprint: fingerprints.check_for_tensorflow
and, only for inputs it accepts, TensorFlow's own C++ CreateFingerprintDef. Anything but the
readers' errors (RiegeliError, ChunkedFormatError, TensorFlow's clean refusal) is a finding,
and so is a SIGSEGV inside TensorFlow: libFuzzer stops and saves the input as crash-*. Its
-timeout and -rss_limit_mb catch hangs and memory blow-ups. The quick, bounded version runs
in CI as tests/test_fuzz_format.py.
"""
from __future__ import annotations

import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import atheris  # noqa: E402

with atheris.instrument_imports(include=["tf_bigexport.imageformat"]):
    from tf_bigexport import imageformat  # noqa: E402
    from tf_bigexport.imageformat import chunked, fingerprints, program_files  # noqa: E402
    from tf_bigexport.imageformat.chunk_errors import ChunkedFormatError  # noqa: E402
    from tf_bigexport.imageformat.riegeli import FILE_SIGNATURE, RecordReader, RiegeliError  # noqa: E402

_WORKDIR = tempfile.mkdtemp(prefix="fuzz-cpb-")
_CPB = os.path.join(_WORKDIR, chunked.SAVED_MODEL_CPB)
_PB = os.path.join(_WORKDIR, chunked.SAVED_MODEL_PB)
_REFUSALS = (RiegeliError, ChunkedFormatError)


def read_in_every_way(data: bytes) -> None:
    is_cpb = data.startswith(FILE_SIGNATURE)
    path, other = (_CPB, _PB) if is_cpb else (_PB, _CPB)
    if os.path.exists(other):
        os.remove(other)
    with open(path, "wb") as f:
        f.write(data)
    reads = [lambda: imageformat.read_saved_model(_WORKDIR)]
    if is_cpb:
        reads += [_read_records, _read_chunks]
    for read in reads:
        try:
            read()
        except _REFUSALS as error:
            if path not in str(error):
                raise AssertionError(f"error does not name the file: {error}") from error
    _fingerprint_like_verify()


def _fingerprint_like_verify() -> None:
    """verify's recomputation: our checks first, TensorFlow's C++ only on what they accept."""
    try:
        fingerprints.check_for_tensorflow(_WORKDIR)
    except _REFUSALS:
        return
    try:
        fingerprints.compute_fingerprint_bytes(_WORKDIR, trusted=True)  # checked just above
    except fingerprints.FingerprintError:
        pass  # TensorFlow refused it cleanly


def _read_records() -> None:
    with RecordReader(_CPB) as reader:
        for _ in reader:
            pass
        reader.read_last_record()


def _read_chunks() -> None:
    with chunked.ChunkedFile(_CPB) as chunked_file:
        for index in range(len(chunked_file)):
            chunked_file.read(index)


def make_corpus(directory: str) -> None:
    """Seeds: a tiny SavedModel as .pb, as .cpb in each compression and two chunk sizes, and
    (with array-record installed) the same records written by Google's Riegeli in transposed,
    snappy and large-window chunks."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    class Tiny(tf.Module):
        def __init__(self):
            super().__init__()
            self.scale = tf.Variable(np.linspace(0.5, 1.5, 16, dtype=np.float32))
            self.table = tf.constant(np.sin(np.arange(2000, dtype=np.float32)))

        @tf.function(input_signature=[tf.TensorSpec([None, 16], tf.float32)])
        def __call__(self, x):
            return {"y": tf.reduce_sum(x * self.scale, axis=1) + self.table[0]}

    os.makedirs(directory, exist_ok=True)
    with tempfile.TemporaryDirectory() as plain:
        tf.saved_model.save(Tiny(), plain)
        proto = chunked.read_saved_model(plain)
    with open(os.path.join(directory, "plain.pb"), "wb") as seed:
        seed.write(proto.SerializeToString())
    for compression in ("none", "zstd", "brotli"):
        for max_chunk_size in (300, 4000):
            with tempfile.TemporaryDirectory() as out:
                path = chunked.write_saved_model_proto(proto, out, max_chunk_size=max_chunk_size,
                                                       compression=compression)
                with open(path, "rb") as f, open(os.path.join(
                        directory, f"{compression}-{max_chunk_size}.cpb"), "wb") as seed:
                    seed.write(f.read())
    try:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from riegeli_interop import rewrite_records  # pylint: disable=import-outside-toplevel
    except ImportError:
        return
    source = os.path.join(directory, "none-300.cpb")
    for options in ("transpose:true,uncompressed", "transpose:true,zstd:3", "snappy", "transpose:true,snappy",
                    "brotli:6,window_log:30"):
        rewrite_records(source, os.path.join(directory, f"array-record-{options.replace(':', '_').replace(',', '-')}.cpb"),
                                  "group_size:3," + options)


def main() -> None:
    if sys.argv[1:2] == ["--make-corpus"]:
        make_corpus(sys.argv[2])
        return
    atheris.Setup(sys.argv, read_in_every_way)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
