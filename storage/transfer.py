"""Parallel transfers with progress reporting (retries: retry.py, one layer in the facade)."""

from __future__ import annotations

from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Callable, Iterable, TypeVar

from fsspec.callbacks import Callback

from .progress import Progress

T = TypeVar("T")

class FileProgress(Callback):
    """fsspec callback feeding one file's byte counts into a shared Progress."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self._progress = progress
        self._reported = 0

    def call(self, *args, **kwargs) -> None:
        delta = self.value - self._reported
        if delta > 0:
            self._reported = self.value
            self._progress.add_bytes(delta)

    def finish(self, size: int) -> None:
        """Account for bytes a backend moved without reporting them."""
        if size > self._reported:
            self._progress.add_bytes(size - self._reported)
            self._reported = size

    def restart(self) -> None:
        """A retried transfer starts over: take back what it reported."""
        self._progress.add_bytes(-self._reported)
        self._reported = 0
        self.value = 0


def run_parallel(tasks: Iterable[Callable[[], T]], max_workers: int) -> list[T]:
    """Run callables on a bounded thread pool; the first failure cancels what has not started."""
    task_list = list(tasks)
    if not task_list:
        return []
    if max_workers <= 1 or len(task_list) == 1:
        return [task() for task in task_list]
    with ThreadPoolExecutor(max_workers=min(max_workers, len(task_list)),
                            thread_name_prefix="storage") as pool:
        futures = [pool.submit(task) for task in task_list]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        for future in futures:
            if future.done() and not future.cancelled() and future.exception() is not None:
                raise future.exception()
        return [future.result() for future in futures]
