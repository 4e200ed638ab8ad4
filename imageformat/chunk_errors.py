"""Errors of the chunked-proto layer (splitter, merger, .cpb files)."""
from __future__ import annotations


class ChunkedFormatError(ValueError):
    """A chunked proto (a .cpb file or in-memory chunks) is malformed.

    ``str()`` reads "<source>: <problem>", naming the file (or "<chunks>" for
    in-memory chunks) and what is wrong with it.
    """

    def __init__(self, source: str, problem: str):
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


class SplitError(ValueError):
    """A message cannot be split into chunks under the protobuf size limit."""


class ConstantTooLargeError(SplitError):
    """A constant's tensor data is past the limit one TensorProto can hold.

    No chunking helps: TensorFlow keeps a constant in the graph as one
    TensorProto. The message names the constant and says what to change.
    """


class ProgramTooLargeError(SplitError):
    """The program proto does not fit a plain saved_model.pb even with the large
    constants moved to the checkpoint: only the image format can hold it.

    The message gives the sizes and the largest functions.
    """
