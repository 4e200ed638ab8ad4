"""Writing a local file whole or not at all. A leaf module: imageformat, storage,
the stages and the pipeline all write through it, and it imports none of them.

The content goes to a hidden temporary sibling first, which is then renamed
over the target (or, for an exclusive create, hard-linked to it, which fails if
the target exists). A reader sees the old file or the new one, never half of
one, and a failure (disk full, a kill of the writer aside) leaves no temporary
file behind.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from typing import Iterator


_TEMPORARY_NAME = re.compile(r"\.(?P<of>.+)\.tmp-[0-9a-f]{12}")


def temporary_sibling(path: str) -> str:
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail}.tmp-{uuid.uuid4().hex[:12]}")


def is_temporary_name(name: str, of: str | None = None) -> bool:
    """Whether ``name`` is one temporary_sibling makes (for a file named ``of``, if given):
    what an interrupted write leaves behind, for gc to find."""
    match = _TEMPORARY_NAME.fullmatch(name)
    return match is not None and (of is None or match.group("of") == of)


@contextlib.contextmanager
def replacing(path: str | os.PathLike, *, exclusive: bool = False, durable: bool = False) -> Iterator[str]:
    """Yields a temporary path to fill; on success it becomes ``path``.

    ``exclusive``: create only, raising FileExistsError if ``path`` exists.
    ``durable``: fsync the content before it takes the name.
    OSErrors are re-raised naming ``path`` (``os.write`` errors name no file).
    """
    path = os.fspath(path)
    temporary = temporary_sibling(path)
    try:
        yield temporary
        if durable:
            with open(temporary, "rb+") as f:
                os.fsync(f.fileno())
        if exclusive:
            os.link(temporary, path)
        else:
            os.replace(temporary, path)
    except OSError as error:
        if isinstance(error, FileExistsError) and exclusive:
            raise
        raise OSError(error.errno, f"cannot write {path}: {error.strerror or error}") from error
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def write_file(path: str | os.PathLike, data: bytes, *, exclusive: bool = False, durable: bool = False) -> None:
    """``data`` as the whole content of ``path`` (see ``replacing``)."""
    with replacing(path, exclusive=exclusive, durable=durable) as temporary:
        with open(temporary, "wb") as f:
            f.write(data)


@contextlib.contextmanager
def replacing_directory(path: str | os.PathLike) -> Iterator[str]:
    """Yields a fresh temporary sibling directory to fill; on success it takes the name
    ``path`` (an existing directory there is removed first). On failure nothing of it
    remains, so a retried writer never finds half a directory under that name."""
    path = os.fspath(path)
    temporary = temporary_sibling(path)
    try:
        yield temporary
        if os.path.lexists(path):
            shutil.rmtree(path)
        os.replace(temporary, path)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
