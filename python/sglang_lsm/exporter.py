"""A minimal Prometheus exporter: serves ``Store.metrics_text()`` at ``/metrics``.

Used by :class:`sglang_lsm.hicache.HiCacheLSM` when ``metrics_port`` is set in the SGLang
extra-config. It binds to loopback by default (``metrics_host`` changes that) and runs in a
daemon thread, so it never keeps SGLang alive or blocks its threads.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

logger = logging.getLogger(__name__)


class MetricsExporter:
    """Serves the text returned by ``render`` at ``http://host:port/metrics``."""

    def __init__(self, render: Callable[[], str], host: str = "127.0.0.1", port: int = 0):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404, "only /metrics is served here")
                    return
                try:
                    body = render().encode()
                except Exception as e:  # the store may be closing
                    self.send_error(503, f"metrics unavailable: {e}")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: object) -> None:
                logger.debug("metrics exporter: " + fmt, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="sglang-lsm-metrics", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        """The bound port (useful when 0 asked for an ephemeral one)."""
        return int(self._server.server_address[1])

    def close(self) -> None:
        """Stops serving and releases the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
