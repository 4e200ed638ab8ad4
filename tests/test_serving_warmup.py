"""TensorFlow Serving's warmup requests (assets.extra/tf_serving_warmup_requests): the file's
bytes as TF Serving parses them, the jobs field, and the pipeline replaying them before it
publishes.

The wire checks use the field numbers of TensorFlow Serving's own messages
(tensorflow_serving/apis/prediction_log.proto: PredictionLog.predict_log = 6,
PredictLog.request = 1; predict.proto: PredictRequest.model_spec = 1, .inputs = 2, a map
whose entries are key = 1, value = 2; model.proto: ModelSpec.name = 1, .signature_name = 3)
and TensorFlow's TensorProto, which TF Serving's parser sees in each input.
"""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from tf_bigexport.imageformat import serving_warmup
from tf_bigexport.imageformat.serving_warmup import MAX_RECORDS, WarmupFileError
from tf_bigexport.pipeline import cli
from tf_bigexport.pipeline.demo_models import demo_jobs
from tf_bigexport.pipeline.export import run_export
from tf_bigexport.pipeline.jobs import JobsFileError, parse_jobs
from tf_bigexport.savedmodel_files import SERVING_WARMUP_REQUESTS

REQUESTS = {
    "serving_default": {"images": np.arange(12, dtype=np.float32).reshape(2, 2, 3),
                        "ids": np.array([[1, 2]], dtype=np.int64)},
    "lookup": {"tokens": np.array([b"token1", b"\xff\x00 bytes"]), "flag": np.array(True)},
}


def _fields(data: bytes) -> list[tuple[int, int, bytes | int]]:
    """(field number, wire type, value) of a serialized message, read by hand."""
    def varint(at: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = data[at]
            value |= (byte & 0x7F) << shift
            at, shift = at + 1, shift + 7
            if byte < 0x80:
                return value, at

    fields, at = [], 0
    while at < len(data):
        key, at = varint(at)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, at = varint(at)
        elif wire_type == 2:
            size, at = varint(at)
            value, at = data[at:at + size], at + size
        else:
            raise AssertionError(f"unexpected wire type {wire_type} for field {number}")
        fields.append((number, wire_type, value))
    return fields


def test_records_have_tensorflow_servings_field_numbers(tmp_path):
    import tensorflow as tf
    from tensorflow.core.framework import tensor_pb2

    path = serving_warmup.write_requests(str(tmp_path), REQUESTS, model_name="resnet")
    assert path == os.path.join(str(tmp_path), SERVING_WARMUP_REQUESTS)
    records = list(tf.data.TFRecordDataset(path).as_numpy_iterator())  # TF's TFRecord reader, as TF Serving's
    assert len(records) == 2
    seen = {}
    for record in records:
        [(number, wire_type, predict_log)] = _fields(record)
        assert (number, wire_type) == (6, 2)  # PredictionLog.predict_log
        [(number, _, request)] = _fields(predict_log)
        assert number == 1  # PredictLog.request
        model_spec = [v for n, _, v in _fields(request) if n == 1]
        entries = [v for n, _, v in _fields(request) if n == 2]
        assert sorted(n for n, _, _ in _fields(model_spec[0])) == [1, 3]
        spec = {n: v.decode() for n, _, v in _fields(model_spec[0])}
        assert spec[1] == "resnet"
        inputs = {}
        for entry in entries:
            parts = {n: v for n, _, v in _fields(entry)}
            inputs[parts[1].decode()] = tf.make_ndarray(tensor_pb2.TensorProto.FromString(parts[2]))
        seen[spec[3]] = inputs
    assert set(seen) == set(REQUESTS)
    for signature, inputs in REQUESTS.items():
        assert set(seen[signature]) == set(inputs)
        for name, value in inputs.items():
            assert seen[signature][name].dtype.kind == np.asarray(value).dtype.kind or value.dtype.kind == "S"
            np.testing.assert_array_equal(seen[signature][name].astype(value.dtype), value)


def test_read_requests_returns_what_was_written(tmp_path):
    serving_warmup.write_requests(str(tmp_path), REQUESTS)
    read = dict(serving_warmup.read_requests(str(tmp_path)))
    assert set(read) == set(REQUESTS)
    for signature, inputs in REQUESTS.items():
        for name, value in inputs.items():
            assert read[signature][name].shape == np.asarray(value).shape
            np.testing.assert_array_equal(read[signature][name].astype(value.dtype), value)
    assert serving_warmup.read_requests(str(tmp_path / "elsewhere")) == []


def test_files_tensorflow_serving_would_refuse_are_errors_naming_the_file(tmp_path):
    with pytest.raises(WarmupFileError, match=f"at most {MAX_RECORDS}"):
        serving_warmup.write_requests(str(tmp_path), {f"s{i}": {"x": np.ones(1)} for i in range(MAX_RECORDS + 1)})
    path = tmp_path / SERVING_WARMUP_REQUESTS
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a tfrecord file at all, just text")
    with pytest.raises(WarmupFileError, match="tf_serving_warmup_requests: not a TFRecord file"):
        serving_warmup.read_requests(str(tmp_path))


def _vocab_document(registry: str, **changes) -> dict:
    document = demo_jobs(registry)
    document["jobs"] = [dict(j, **changes) for j in document["jobs"] if j["name"] == "vocab"]
    return document


def test_jobs_field_needs_sample_inputs_and_a_boolean(tmp_path):
    document = _vocab_document(str(tmp_path))
    [vocab] = document["jobs"]
    assert vocab["serving_warmup"] is True  # the demo publishes warmup requests
    without_samples = {k: v for k, v in vocab.items() if k != "sample_inputs"}
    for changed, message in ((without_samples, "needs sample_inputs"),
                             (dict(vocab, serving_warmup="yes"), "must be true or false, got 'yes'")):
        with pytest.raises(JobsFileError) as info:
            parse_jobs({"jobs": [changed], "registry": str(tmp_path)}, source="jobs.yaml")
        assert any(p.startswith("jobs.yaml: job 'vocab' field 'serving_warmup'") and message in p
                   for p in info.value.problems), info.value.problems
    [job] = parse_jobs({"jobs": [dict(vocab, serving_warmup=False)], "registry": str(tmp_path)}, source="jobs.yaml")
    assert job.serving_warmup is False


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """The demo's vocab job (two signatures, string inputs, a vocabulary asset) with warmup requests."""
    root = tmp_path_factory.mktemp("warmup")
    jobs = parse_jobs(_vocab_document(str(root / "reg")), source="demo")
    [outcome] = run_export(jobs, ["--work_dir", str(root / "work")])
    assert outcome["status"] == "published", outcome
    return root, jobs[0]


def test_the_pipeline_publishes_the_sample_inputs_as_warmup_requests(published):
    root, job = published
    version = root / "reg" / "vocab" / "1"
    assert (version / SERVING_WARMUP_REQUESTS).is_file()
    read = dict(serving_warmup.read_requests(str(version)))
    assert set(read) == {"serving_default", "score"} == set(job.sample_arrays)
    for signature, inputs in job.sample_arrays.items():
        assert set(read[signature]) == set(inputs)
        for name, value in inputs.items():
            np.testing.assert_array_equal(read[signature][name].astype(value.dtype), value)
    assert cli.main(["verify", str(version)]) == cli.EXIT_OK  # in the release record like every file


def test_verify_stage_replays_the_requests_and_reports_one_that_fails(published, tmp_path):
    import tensorflow as tf

    from tf_bigexport.transforms import reload_check

    root, _ = published
    model = tmp_path / "model"
    shutil.copytree(root / "reg" / "vocab" / "1", model)
    tokens = np.array([b"token1", b"token7"])
    outputs = tf.saved_model.load(str(model)).signatures["serving_default"](tokens=tf.constant(tokens))
    np.savez(tmp_path / "golden.npz", **{f"serving_default/{k}": v.numpy() for k, v in outputs.items()})
    np.savez(tmp_path / "inputs.npz")

    def problems_with(requests: dict) -> list[str]:
        os.remove(model / SERVING_WARMUP_REQUESTS)
        serving_warmup.write_requests(str(model), requests)
        return reload_check.check(str(model), str(tmp_path / "inputs.npz"), str(tmp_path / "golden.npz"))["problems"]

    assert problems_with({"serving_default": {"tokens": tokens}}) == []
    [wrong_name] = problems_with({"serving_default": {"tokenz": tokens}})
    assert wrong_name.startswith("warmup request 1 ('serving_default'): calling 'serving_default' failed")
    [other_values] = problems_with({"serving_default": {"tokens": tokens[::-1]}})
    assert other_values.startswith("warmup request 1 ('serving_default'): serving_default/") and "golden" in other_values
    [missing] = problems_with({"classify": {"tokens": tokens}})
    assert missing.startswith("warmup request 1 ('classify'): missing after reload")


@pytest.mark.parametrize("to", ["servable", "cpb"])
def test_convert_keeps_the_warmup_requests(published, tmp_path, to):
    """A servable re-save is TensorFlow's save, which writes no assets.extra/: carried over."""
    from tf_bigexport.imageformat.conversion import convert

    root, _ = published
    source = root / "reg" / "vocab" / "1"
    convert(source, tmp_path / to, to, split_threshold=1 << 12)
    assert (tmp_path / to / SERVING_WARMUP_REQUESTS).read_bytes() == (source / SERVING_WARMUP_REQUESTS).read_bytes()
