"""Run one step of a job in a fresh Python process.

Why a process: the model lives only there, so its memory goes back to the
system when the step ends (the parent never holds a model while the next
step reloads it); a factory that hangs is killed at its deadline; one that
crashes the interpreter (a segfault, os._exit) fails its own job and
nothing else.

Parent and child talk over a pipe of JSON lines (the child's stdout and
stderr go to a log file, so user code that prints cannot break the
protocol):

    {"phase": "building the model", "stage": "trace"}   what it does now
    {"bytes": [done, total]}                               progress of a long write
    {"result": {...}}                                      the last line on success
    {"error": "...", "stage": "save"}                     the last line on failure
"""
from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable

REPORT_FD_ENV = "TF_BIGEXPORT_REPORT_FD"
_TAIL_LINES = 4
_NOISE = ("WARNING: All log messages before absl::InitializeLog()", "Extension modules:")
_CPP_INFO = re.compile(r"I\d{4} ")  # TensorFlow's C++ INFO lines ("I0000 00:00:... port.cc:153] oneDNN ...")

# `python -c`: the entry point is imported only after the current directory left
# sys.path (`-m` would import it with the current directory first).
_BOOTSTRAP = ("import os, sys; sys.path[:] = [p for p in sys.path if p not in ('', os.getcwd())]; "
              "import importlib; module, _, function = sys.argv[1].partition(':'); "
              "sys.exit(getattr(importlib.import_module(module), function)(sys.argv[2:]))")


class ChildFailed(Exception):
    """The step failed in its process; ``stage`` is where (the child says, or the phase it was in)."""
    already_described = True  # the message is shown as is (errors.describe)

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


def run_child(entry: str, args: list[str], *, log_path: str, default_stage: str,
              on_event: Callable[[dict], None] = lambda event: None,
              deadline: Callable[[str, float], str | None] = lambda stage, seconds: None,
              env: dict[str, str] | None = None) -> dict[str, Any]:
    """Runs ``entry`` ("module:function(argv) -> exit code") in a new interpreter; returns its result.

    ``deadline(stage, seconds_since_start)`` returns a reason to kill the child
    now, or None; it is asked about once a second. Raises ChildFailed.
    """
    read_fd, write_fd = os.pipe()
    child_env = dict(os.environ if env is None else env)
    child_env[REPORT_FD_ENV] = str(write_fd)
    child_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    child_env.setdefault("PYTHONFAULTHANDLER", "1")  # a crash leaves its Python stack in the log
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    start = time.monotonic()
    stage = default_stage
    phase = "starting"
    result: dict[str, Any] | None = None
    error: tuple[str, str] | None = None
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-c", _BOOTSTRAP, entry, *args], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, pass_fds=(write_fd,), env=child_env,
                                start_new_session=True)  # its own process group: a kill takes its children too
    os.close(write_fd)
    try:
        pending = b""
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            while True:
                ready, _, _ = select.select([pipe], [], [], 1.0)
                if ready:
                    chunk = pipe.read(1 << 16)
                    if not chunk:
                        break  # the child closed the pipe: it exited
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        event = _parse(line)
                        if event is None:
                            continue
                        if "phase" in event:
                            phase = str(event["phase"])
                            stage = str(event.get("stage", stage))
                        if "result" in event:
                            result = event["result"]
                        elif "error" in event:
                            error = (str(event.get("stage", stage)), str(event["error"]))
                        on_event(event)
                reason = deadline(stage, time.monotonic() - start)
                if reason is not None:
                    _kill(proc)
                    raise ChildFailed(stage, f"{reason} (killed while {phase})")
        code = proc.wait()
    finally:
        if proc.poll() is None:
            _kill(proc)
    if error is not None:
        raise ChildFailed(*error)
    if code != 0 or result is None:
        raise ChildFailed(stage, f"{_how_it_ended(code)} while {phase}{_tail(log_path)}")
    return result


def _parse(line: bytes) -> dict | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def _how_it_ended(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the process died with {name}"
    if code == 0:
        return "the process exited without reporting a result"
    return f"the process exited with status {code}"


def _tail(log_path: str) -> str:
    """What the child's log says about how it ended: faulthandler's crash line and innermost frames,
    or its last lines; TensorFlow's start-up chatter left out."""
    try:
        with open(log_path, "rb") as f:
            f.seek(max(0, os.path.getsize(log_path) - 32768))
            lines = [line.strip() for line in f.read().decode("utf-8", "replace").splitlines()]
    except OSError:
        return ""
    lines = [line for line in lines if line and not line.startswith(_NOISE) and not _CPP_INFO.match(line)]
    fatal = next((i for i, line in enumerate(lines) if line.startswith("Fatal Python error")), None)
    if fatal is not None:
        current = next((i for i in range(fatal, len(lines)) if lines[i].startswith("Current thread")), fatal)
        picked = [lines[fatal], *[line for line in lines[current + 1:] if line.startswith("File ")][:2]]
    else:
        picked = lines[-_TAIL_LINES:]
    return f"; its log {log_path} ends: " + " | ".join(picked) if picked else f"; its log: {log_path}"


# ---- the child's side -----------------------------------------------------------------

class Reporter:
    """The child's end of the pipe."""

    def __init__(self) -> None:
        fd = int(os.environ[REPORT_FD_ENV])
        self._out = os.fdopen(fd, "w", buffering=1, encoding="utf-8")
        self._lock = threading.Lock()

    def send(self, **event: Any) -> None:
        line = json.dumps(event, default=str) + "\n"
        with self._lock:
            self._out.write(line)
            self._out.flush()

    def phase(self, text: str, stage: str) -> None:
        self.send(phase=text, stage=stage)


def exit_with_parent() -> None:
    """Ends this process if its parent dies (a killed pipeline must not leave a model building)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(70)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
