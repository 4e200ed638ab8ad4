"""Files written by Google's C++ Riegeli, through the `array-record` wheel that bundles it.

array-record's writer is a Riegeli RecordWriter with a footer chunk and a postscript after
the records; its options string selects what our own writer never writes: transposed chunks
("transpose:true"), snappy, zstd and brotli with large windows ("window_log:30").
"""
from __future__ import annotations

import os

from tf_bigexport.imageformat.riegeli import RecordReader


def array_record_writer(path: str | os.PathLike, options: str):
    from array_record.python import array_record_module  # pylint: disable=import-outside-toplevel
    return array_record_module.ArrayRecordWriter(os.fspath(path), options)


def write_records(path: str | os.PathLike, records: list[bytes], options: str) -> None:
    writer = array_record_writer(path, options)
    for record in records:
        writer.write(record)
    writer.close()


def rewrite_records(source: str | os.PathLike, destination: str | os.PathLike, options: str) -> list[bytes]:
    """The records of ``source`` (any Riegeli file) written again by Google's Riegeli; returns them.
    (The copy is no valid .cpb: array-record's footer, not the ChunkMetadata, ends the file.)"""
    with RecordReader(source) as reader:
        records = list(reader)
    write_records(destination, records, options)
    return records
