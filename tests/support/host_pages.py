"""A customer's pages on an origin of their own (a port of its own on loopback), for
browser tests and benchmarks that embed the widget cross-origin."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.server import free_port


class HostPages:
    """Serves ``pages`` (path -> HTML) on ``address`` (127.0.0.1; "0.0.0.0": every
    local address, for tests that load a page from 127.0.0.2 too), on a port of its own."""

    def __init__(self, address: str = "127.0.0.1") -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path, "").encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.port = free_port()
        self.httpd = ThreadingHTTPServer((address, self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def add(self, path: str, html: str) -> str:
        """Serve ``html`` at ``path``; its URL."""
        self.pages[path] = html
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
