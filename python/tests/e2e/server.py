"""Starts and stops a real SGLang HTTP server (``python -m sglang.launch_server``) on CPU."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

SERVER_SITE_DIR = Path(__file__).parent / "server_site"  # stand-ins, see its sitecustomize
START_TIMEOUT_S = 300
REQUEST_TIMEOUT_S = 120
# SGLang's SIGTERM handler drains requests, polling every 5 s, then stops its schedulers
# (which close the storage backend); past this the whole process group is killed.
STOP_TIMEOUT_S = 60

# SGLang's own log lines carry no level ("[time] message"). SGLang reads a logging
# dictConfig from SGLANG_LOGGING_CONFIG_PATH in every process it starts; this one adds the
# level and logger name, so the test can find errors and warnings by level.
LOGGING_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "leveled": {
            "format": "[%(asctime)s] %(levelname)s %(name)s: %(message)s",
            "datefmt": "%H:%M:%S",
        }
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "leveled",
            "stream": "ext://sys.stdout",
        }
    },
    "root": {"level": "INFO", "handlers": ["stdout"]},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One server (a process group: HTTP server, scheduler, detokenizer); its stdout and
    stderr go to ``log_path``."""

    def __init__(self, model_dir: Path, log_path: Path, extra_args: list[str]):
        self.port = free_port()
        self.log_path = log_path
        logging_config = log_path.with_suffix(".logging.json")
        logging_config.write_text(json.dumps(LOGGING_CONFIG))
        env = dict(os.environ)
        # SGLang treats the host as the device only with this (sglang/srt/utils/common.py).
        env["SGLANG_USE_CPU_ENGINE"] = "1"
        env["SGLANG_LOGGING_CONFIG_PATH"] = str(logging_config)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(SERVER_SITE_DIR)] + [p for p in [env.get("PYTHONPATH")] if p]
        )
        # SGLang builds its hicache_hash_cpp extension with ninja, from the venv's bin.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        cmd = [
            sys.executable, "-m", "sglang.launch_server",
            "--model-path", str(model_dir),
            "--host", "127.0.0.1", "--port", str(self.port),
            "--device", "cpu", "--attention-backend", "torch_native",
            "--dtype", "bfloat16",
            # Without it the CPU KV pool sizes itself from free memory (~15 GB here).
            "--max-total-tokens", "8192",
            "--enable-metrics",
            "--random-seed", "0",
            # Warmup stays on: with --skip-server-warmup SGLang posts /freeze_gc before its
            # HTTP server listens and logs the refused connection with a traceback.
            *extra_args,
        ]  # fmt: skip
        # Open for the server's lifetime (stop() closes it), not for one block.
        self._log = open(log_path, "wb")  # noqa: SIM115
        self.started_at = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        except BaseException:
            self._log.close()
            raise
        self.start_s: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> float:
        """Waits until ``/health`` answers 200; returns the seconds since the start."""
        deadline = self.started_at + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as r:
                    if r.status == 200:
                        self.start_s = time.monotonic() - self.started_at
                        return self.start_s
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass  # not listening yet, or still loading (503): poll again
            time.sleep(1)
        raise TimeoutError(f"server not ready after {START_TIMEOUT_S} s")

    def post(self, path: str, body: dict | None = None) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path, data=data, method="POST",
            headers={"content-type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as r:
            return r.read()

    def generate(self, input_ids: list[int], new_tokens: int, logprob_start: int) -> dict:
        """Greedy generation; the response carries the log-probabilities of the input tokens
        from ``logprob_start`` on and of every output token."""
        body = {
            "input_ids": input_ids,
            "sampling_params": {
                "max_new_tokens": new_tokens, "temperature": 0.0, "ignore_eos": True,
            },
            "return_logprob": True,
            "logprob_start_len": logprob_start,
        }  # fmt: skip
        return json.loads(self.post("/generate", body))

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=REQUEST_TIMEOUT_S) as r:
            return r.read().decode()

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> float:
        """Stops the server the way an operator would (SIGTERM to the launcher, which shuts
        down its children); kills the whole process group if that takes too long, and in
        any case kills whatever of the group is left. Returns the seconds it took."""
        start = time.monotonic()
        try:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(timeout=STOP_TIMEOUT_S)
        finally:
            # Children may outlive the launcher; the group id is still theirs.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # the whole group is gone already
            self._log.close()
        return time.monotonic() - start


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the Prometheus samples named ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            total += float(value)
    return total
