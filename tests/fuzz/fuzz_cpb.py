"""Coverage-guided fuzzing of the .cpb reader and merger with atheris, for long runs by hand.

    .venv/bin/python tests/fuzz/fuzz_cpb.py --make-corpus build/fuzz-corpus
    .venv/bin/python tests/fuzz/fuzz_cpb.py build/fuzz-corpus -max_total_time=3600 -rss_limit_mb=4096

Arguments after the corpus directory are libFuzzer's. Each input is read as
saved_model.cpb through imageformat.read_saved_model, RecordReader and
ChunkedFile; anything but RiegeliError / ChunkedFormatError is a finding
(libFuzzer stops and saves the input as crash-*). libFuzzer's own -timeout
and -rss_limit_mb catch hangs and memory blow-ups. The quick, bounded
version runs in CI as tests/test_fuzz_format.py.
"""
from __future__ import annotations

import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import atheris  # noqa: E402

with atheris.instrument_imports(include=["imageformat"]):
    from tf_bigexport import imageformat  # noqa: E402
    from tf_bigexport.imageformat import chunked  # noqa: E402
    from tf_bigexport.imageformat.chunk_errors import ChunkedFormatError  # noqa: E402
    from tf_bigexport.imageformat.riegeli import RecordReader, RiegeliError  # noqa: E402

_WORKDIR = tempfile.mkdtemp(prefix="fuzz-cpb-")
_PATH = os.path.join(_WORKDIR, chunked.SAVED_MODEL_CPB)


def read_in_every_way(data: bytes) -> None:
    with open(_PATH, "wb") as f:
        f.write(data)
    for read in (lambda: imageformat.read_saved_model(_WORKDIR), _read_records, _read_chunks):
        try:
            read()
        except (RiegeliError, ChunkedFormatError) as error:
            if _PATH not in str(error):
                raise AssertionError(f"error does not name the file: {error}") from error


def _read_records() -> None:
    with RecordReader(_PATH) as reader:
        for _ in reader:
            pass
        reader.read_last_record()


def _read_chunks() -> None:
    with chunked.ChunkedFile(_PATH) as chunked_file:
        for index in range(len(chunked_file)):
            chunked_file.read(index)


def make_corpus(directory: str) -> None:
    """Seeds: a tiny SavedModel written as .cpb in each compression and two chunk sizes."""
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
    for compression in ("none", "zstd", "brotli"):
        for max_chunk_size in (300, 4000):
            with tempfile.TemporaryDirectory() as out:
                path = chunked.write_saved_model_proto(proto, out, max_chunk_size=max_chunk_size,
                                                       compression=compression)
                with open(path, "rb") as f, open(os.path.join(
                        directory, f"{compression}-{max_chunk_size}.cpb"), "wb") as seed:
                    seed.write(f.read())


def main() -> None:
    if sys.argv[1:2] == ["--make-corpus"]:
        make_corpus(sys.argv[2])
        return
    atheris.Setup(sys.argv, read_in_every_way)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
