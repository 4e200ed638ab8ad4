"""A model whose SavedModel proto passes 2 GiB (slow: needs ~10 GB of RAM).

Three captured 800 MB float32 constants make a ~2.5 GB proto; TensorFlow's
plain save dies in its one-shot GraphDef serialization (DecodeError).
"""
from __future__ import annotations

import gc
import pathlib
import resource

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import fingerprint_pb2
from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting as fingerprinting_pywrap

from tf_bigexport import imageformat

ELEMENTS = 200_000_000  # 800 MB of float32 per constant
SAMPLE_INDICES = np.array([0, 1, 12_345_678, 99_999_999, ELEMENTS - 1], dtype=np.int64)


class ThreeBigConstants(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tables = [tf.random.stateless_uniform([ELEMENTS], seed=[seed, 17]) for seed in range(3)]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="indices")])
    def __call__(self, indices: tf.Tensor) -> tf.Tensor:
        return tf.stack([tf.gather(table, indices) for table in self.tables])


@pytest.mark.slow
def test_proto_past_2gib_round_trips(tmp_path: pathlib.Path, record_property) -> None:
    export = tmp_path / "big"
    module = ThreeBigConstants()
    expected = module(tf.constant(SAMPLE_INDICES)).numpy()
    imageformat.save(module, export)
    del module
    gc.collect()

    cpb = export / "saved_model.cpb"
    assert cpb.exists() and not (export / "saved_model.pb").exists()
    assert cpb.stat().st_size > 2**31
    fingerprint = fingerprint_pb2.FingerprintDef.FromString(
        fingerprinting_pywrap.CreateFingerprintDef(str(export)))
    on_disk = fingerprint_pb2.FingerprintDef.FromString((export / "fingerprint.pb").read_bytes())
    assert fingerprint.graph_def_program_hash == on_disk.graph_def_program_hash != 0
    assert fingerprint.saved_model_checksum == on_disk.saved_model_checksum != 0

    loaded = imageformat.load(export)
    np.testing.assert_array_equal(loaded(tf.constant(SAMPLE_INDICES)).numpy(), expected)
    served = loaded.signatures["serving_default"](indices=tf.constant(SAMPLE_INDICES))["output_0"]
    np.testing.assert_array_equal(served.numpy(), expected)

    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    record_property("peak_rss_gib", round(peak_gib, 2))
    print(f"\npeak RSS {peak_gib:.2f} GiB, saved_model.cpb {cpb.stat().st_size / 2**30:.2f} GiB")
