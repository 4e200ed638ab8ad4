"""Riegeli/records files: the container of TensorFlow's chunked protos (.cpb).

    with RecordWriter(path, compression="none") as w:
        pos = w.write_record(b"...")        # numeric position
    with RecordReader(path) as r:
        r.read_record_at(pos); r.read_last_record(); list(r)
"""
from tf_bigexport.imageformat.riegeli.errors import RiegeliError
from tf_bigexport.imageformat.riegeli.reader import FILE_SIGNATURE, RecordReader
from tf_bigexport.imageformat.riegeli.writer import RecordWriter

__all__ = ["FILE_SIGNATURE", "RecordReader", "RecordWriter", "RiegeliError"]
