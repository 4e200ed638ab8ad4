"""The bounds of imageformat/limits.py, one by one, on small files (the same code paths as the
hostile files of test_hostile_files.py): message counts taken before parsing, decoded bytes
and record counts per file, special files and links out of the model directory."""
from __future__ import annotations

import io
import os
import signal

import pytest
from google.protobuf.descriptor import FieldDescriptor

from tf_bigexport.imageformat import program_files, protoscan
from tf_bigexport.imageformat.chunk_errors import ChunkedFormatError
from tf_bigexport.imageformat.limits import DECODED_FLOOR, SCALE_ENV, ReadLimits
from tf_bigexport.imageformat.riegeli import RecordReader, RecordWriter, RiegeliError
from tf_bigexport.imageformat.riegeli.varint import encode_varint


def _parsed_count(message) -> int:
    """Messages protobuf creates for ``message``: itself, submessages and map entries."""
    count = 1
    for field, value in message.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        if field.message_type.GetOptions().map_entry:
            value_is_message = field.message_type.fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE
            count += sum(1 + (_parsed_count(value[key]) if value_is_message else 0) for key in value)
        elif field.label == FieldDescriptor.LABEL_REPEATED:
            count += sum(_parsed_count(item) for item in value)
        else:
            count += _parsed_count(value)
    return count


def test_message_scan_counts_what_protobuf_parses():
    from saved_model_cases import saved_case
    from tensorflow.core.protobuf import saved_model_pb2
    for name in ("calculator", "keras"):
        model = saved_case(name).proto()
        data = model.SerializeToString()
        assert protoscan.count_messages(data, saved_model_pb2.SavedModel.DESCRIPTOR, 1 << 40) == _parsed_count(model)
        assert protoscan.count_messages(data, saved_model_pb2.SavedModel.DESCRIPTOR, 10) == -1


def test_message_scan_refuses_malformed_and_too_deep_data():
    from tensorflow.core.framework import attr_value_pb2
    from tensorflow.core.protobuf import saved_model_pb2
    for bad in (b"\x12\x05\x0a", b"\x12", b"\x0f\x00", b"\x12\x02\x12\x05", b"\x1c"):
        with pytest.raises(protoscan.MalformedProto):
            protoscan.count_messages(bad, saved_model_pb2.SavedModel.DESCRIPTOR, 100)
    value = b""
    for level in range(40):  # AttrValue.func -> NameAttrList.attr["k"] (an entry) -> AttrValue: 3 per level
        entry = b"\x0a\x01k\x12" + encode_varint(len(value)) + value
        func = b"\x12" + encode_varint(len(entry)) + entry
        value = b"\x52" + encode_varint(len(func)) + func
        if level == 10:
            parsed = attr_value_pb2.AttrValue.FromString(value)
            assert protoscan.count_messages(value, attr_value_pb2.AttrValue.DESCRIPTOR, 1000) == _parsed_count(parsed)
    with pytest.raises(protoscan.MalformedProto, match="deeper than 100"):
        protoscan.count_messages(value, attr_value_pb2.AttrValue.DESCRIPTOR, 1 << 40)


def test_density_rule_refuses_empty_message_floods_before_parsing(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"\x12\x00" * 400_000)  # 400,000 empty meta graphs
    with pytest.raises(ChunkedFormatError, match="more protobuf messages than its size allows"):
        program_files.read_pb(tmp_path / "saved_model.pb")


def test_decoded_bytes_budget_counts_every_decoded_record(monkeypatch):
    out = io.BytesIO()
    with RecordWriter(out, compression="zstd", chunk_size=1 << 20) as writer:
        positions = [writer.write_record(bytes(300_000)) for _ in range(4)]
    data = out.getvalue()
    limits = ReadLimits(decoded_bytes=1_000_000)
    with RecordReader(io.BytesIO(data), limits=limits) as reader:
        with pytest.raises(RiegeliError, match=SCALE_ENV):
            list(reader)  # 1.2 MB of records from a ~1 KB file
    with RecordReader(io.BytesIO(data), limits=ReadLimits(decoded_bytes=2_000_000)) as reader:
        assert reader.read_record_at(positions[3]) == bytes(300_000)
        for position in positions * 3:  # one chunk: decoded once, then served from the cache
            reader.read_record_at(position)
        assert reader.decoded_bytes < 1_300_000
    monkeypatch.setenv(SCALE_ENV, "0.000001")  # the default limits, scaled down
    with pytest.raises(RiegeliError, match="past the"):
        list(RecordReader(io.BytesIO(data)))


def test_record_counts_count_against_the_budget():
    out = io.BytesIO()
    with RecordWriter(out, compression="zstd") as writer:
        for _ in range(2000):
            writer.write_record(b"")  # zero decoded bytes, 2000 record objects
    with pytest.raises(RiegeliError, match="past the"):
        list(RecordReader(io.BytesIO(out.getvalue()), limits=ReadLimits(decoded_bytes=64 * 1000)))


def test_scale_must_be_a_positive_number(monkeypatch):
    from tf_bigexport.imageformat.limits import ReadLimitError
    monkeypatch.setenv(SCALE_ENV, "lots")
    with pytest.raises(ReadLimitError):
        ReadLimits.for_file(10)
    monkeypatch.setenv(SCALE_ENV, "2")
    assert ReadLimits.for_file(10).decoded_bytes == 2 * DECODED_FLOOR


@pytest.fixture
def no_hang():
    """Fails the test instead of hanging it if opening a FIFO blocks (the regression)."""
    def on_alarm(signum, frame):
        raise TimeoutError("opening a special file blocked")
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_fifos_and_devices_are_refused_unopened(tmp_path, no_hang):
    fifo = tmp_path / "saved_model.cpb"
    os.mkfifo(fifo)
    with pytest.raises(RiegeliError, match="is a FIFO"):
        RecordReader(fifo)
    with pytest.raises(program_files.SpecialFileError, match="is a FIFO"):
        program_files.read_pb(fifo)
    with pytest.raises(RiegeliError, match="character device"):
        RecordReader("/dev/zero")
    with open(fifo, "rb", opener=lambda path, flags: os.open(path, flags | os.O_NONBLOCK)) as opened:
        with pytest.raises(RiegeliError, match="is a FIFO"):
            RecordReader(opened)


def test_model_directories_keep_links_inside(tmp_path):
    model = tmp_path / "model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"")
    (model / "variables" / "variables.index").write_bytes(b"x")
    (model / "index-link").symlink_to("variables/variables.index")
    program_files.check_tree(model)  # a link inside the directory is fine
    outside = tmp_path / "secret"
    outside.write_bytes(b"s")
    cases = [("out", outside, "outside the model directory"), ("zero", "/dev/zero", "outside"),
             ("broken", model / "missing", "broken symbolic link")]
    for name, target, message in cases:
        link = model / "variables" / name
        link.symlink_to(target)
        with pytest.raises(program_files.SpecialFileError, match=message):
            program_files.check_tree(model)
        link.unlink()
    os.mkfifo(model / "variables" / "pipe")
    with pytest.raises(program_files.SpecialFileError, match="variables/pipe: is a FIFO"):
        program_files.check_tree(model)
