"""Helpers for tests that run ``sglang-lsm serve`` as a separate process.

The binary is ``$SGLANG_LSM_BIN`` if set, else ``<repo>/target/debug/sglang-lsm``, built with
``cargo build -p sglang-lsm-cli`` when it is missing. A :class:`Service` runs it in the
foreground with its stderr in a log file, so a failing test can show what the service said.
"""

from __future__ import annotations

import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
TESTS_DIR = Path(__file__).resolve().parent

READY = "sglang-lsm serve: ready on"
STOPPED = "sglang-lsm serve: stopped"

_binary: Optional[Path] = None


def service_binary() -> Path:
    """The ``sglang-lsm`` binary to test, building it once if there is none."""
    global _binary
    if _binary is not None:
        return _binary
    env_bin = os.environ.get("SGLANG_LSM_BIN")
    if env_bin:
        path = Path(env_bin)
        if not path.is_file():
            raise FileNotFoundError(f"SGLANG_LSM_BIN={env_bin} is not a file")
    else:
        path = REPO / "target" / "debug" / "sglang-lsm"
        if not path.is_file():
            # A fresh checkout: one debug build (minutes) rather than a skipped suite.
            subprocess.run(
                ["cargo", "build", "-p", "sglang-lsm-cli"], cwd=REPO, check=True, timeout=1800
            )
    _binary = path
    return path


class ServiceFailed(RuntimeError):
    """The service did not start or stop as expected; the message carries its log."""


class Service:
    """One ``sglang-lsm serve`` process on ``store_dir`` and ``socket``.

    ``start`` may be called again after ``kill`` or ``stop``: the restarted service opens the
    same directory and socket, as an operator's restart would.
    """

    def __init__(self, store_dir: Path, socket: Path, *args: str, log_dir: Optional[Path] = None):
        self.store_dir = Path(store_dir)
        self.socket = Path(socket)
        self.args: list[str] = list(args)
        self.log_dir = Path(log_dir) if log_dir is not None else self.store_dir.parent
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0
        self.log_path: Optional[Path] = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "service not started"
        return self.proc.pid

    def command(self) -> list[str]:
        return [
            str(service_binary()),
            "serve",
            "--dir",
            str(self.store_dir),
            "--socket",
            str(self.socket),
            *self.args,
        ]

    def start(self, timeout_s: float = 30.0) -> "Service":
        """Starts the service and waits for its ready line."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        self.log_path = self.log_dir / f"serve-{self.socket.stem}-{self.starts}.log"
        with open(self.log_path, "wb") as log:
            # The log file, not a pipe: nobody drains a pipe while the test runs, and a
            # chatty service would block on a full one.
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout_s
        while True:
            if READY in self.log():
                return self
            if self.proc.poll() is not None:
                raise ServiceFailed(
                    f"sglang-lsm serve exited with {self.proc.returncode} before it was "
                    f"ready:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise ServiceFailed(f"sglang-lsm serve not ready in {timeout_s} s:\n{self.log()}")
            time.sleep(0.02)

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then waits; a service that does not stop in time is killed and reported."""
        assert self.proc is not None, "service not started"
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
                raise ServiceFailed(
                    f"sglang-lsm serve ignored SIGTERM for {timeout_s} s:\n{self.log()}"
                ) from None
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would, and reaps the process."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def __enter__(self) -> "Service":
        if not self.running():
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()


def socket_dir() -> Path:
    """A fresh short directory for sockets: a Unix socket path must fit in 108 bytes, and
    pytest's tmp_path can be longer than that."""
    return Path(tempfile.mkdtemp(prefix="slsm-", dir="/tmp"))


def remove_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def page_bytes(key: str, size: int) -> bytes:
    """The one content a test ever stores under ``key``: seeded by the key, so a writer and a
    checker in different processes agree on every byte, and pages of different keys (or a
    page torn between two keys) differ everywhere."""
    return random.Random(zlib.crc32(key.encode()) ^ size).randbytes(size)


def child_env() -> dict:
    """Environment for Python child processes: they import this module and the test
    modules next to it."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(TESTS_DIR)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env


def python_child(code: str, *args: str, **kwargs) -> subprocess.Popen:
    """Runs ``code`` in a fresh interpreter (``sys.argv[1:]`` = ``args``) with text pipes for
    stdin and stdout; stderr goes to a file (an undrained pipe could block the child), read
    back by :func:`child_stderr`."""
    err = tempfile.TemporaryFile(mode="w+t")
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=kwargs.pop("stdin", subprocess.PIPE),
        stdout=kwargs.pop("stdout", subprocess.PIPE),
        stderr=err,
        env=kwargs.pop("env", child_env()),
        text=True,
        **kwargs,
    )
    proc._errfile = err  # type: ignore[attr-defined]
    return proc


def child_stderr(proc: subprocess.Popen) -> str:
    err = getattr(proc, "_errfile", None)
    if err is None:
        return ""
    err.seek(0)
    return err.read()


def read_line(proc: subprocess.Popen, timeout_s: float, what: str) -> str:
    """The child's next stdout line, within ``timeout_s``; its stderr if it died."""
    lines = getattr(proc, "_lines", None)
    if lines is None:
        # A reader thread rather than select(): select misses lines already buffered.
        lines = proc._lines = queue.Queue()  # type: ignore[attr-defined]

        def pump() -> None:
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
    try:
        line = lines.get(timeout=timeout_s)
    except queue.Empty:
        proc.kill()
        proc.wait(timeout=10)
        raise AssertionError(
            f"{what}: no reply in {timeout_s} s; stderr:\n{child_stderr(proc)}"
        ) from None
    if line is None:
        proc.wait(timeout=10)
        raise AssertionError(
            f"{what}: child exited with {proc.returncode}; stderr:\n{child_stderr(proc)}"
        )
    return line.rstrip("\n")


def drain_lines(proc: subprocess.Popen) -> list[str]:
    """The lines the child printed that nobody has read yet, without waiting."""
    lines = getattr(proc, "_lines", None)
    out: list[str] = []
    while lines is not None:
        try:
            line = lines.get_nowait()
        except queue.Empty:
            break
        if line is None:
            lines.put(None)  # keep the end-of-output mark for read_line
            break
        out.append(line.rstrip("\n"))
    return out


def metric(text: str, name: str) -> float:
    """One unlabelled sample of a Prometheus text exposition."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(f"{name} not in metrics:\n{text}")


def wait_until(cond, timeout_s: float, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if cond():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval_s)


def all_pages(keys: Sequence[str], size: int) -> dict:
    return {k: page_bytes(k, size) for k in keys}
