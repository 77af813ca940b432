"""A webhook receiver process for end-to-end tests (standard library only).

    python webhook_receiver.py --port N --log FILE [--hang]

Appends one JSON line per POST to FILE: {"id": webhook-id, "hung": bool, "body": the parsed body}.
With --hang every POST is recorded and then left unanswered until `POST /release`; after that each
POST is answered 200 at once. `GET /health` answers 200 when the receiver is up.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HANG_LIMIT_SECONDS = 600.0


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, log: Path, hang: bool) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.log = log
        self.released = threading.Event()
        if not hang:
            self.released.set()
        self.write_lock = threading.Lock()

    def record(self, entry: dict[str, Any]) -> None:
        with self.write_lock, self.log.open("a") as out:
            out.write(json.dumps(entry) + "\n")


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_GET(self) -> None:
        self._answer(200 if self.path == "/health" else 404)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/release":
            self.server.released.set()
            self._answer(200)
            return
        hung = not self.server.released.is_set()
        self.server.record({"id": self.headers.get("webhook-id"), "hung": hung, "body": json.loads(body)})
        if hung:
            self.server.released.wait(HANG_LIMIT_SECONDS)
        self._answer(200)

    def _answer(self, status: int) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")
        except OSError:
            pass  # the sender gave up (or was killed) while we hung

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--hang", action="store_true")
    args = parser.parse_args()
    Receiver(args.port, args.log, args.hang).serve_forever()


if __name__ == "__main__":
    main()
