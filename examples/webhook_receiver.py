"""A webhook receiver for novita-gpu: checks each delivery's signature, prints the change, answers 204.

    pip install ./client          # the client alone is enough
    WEBHOOK_SECRET=whsec_... python examples/webhook_receiver.py --port 8080

Run the service with the same WEBHOOK_SECRET, and either WEBHOOK_URL=http://127.0.0.1:8080/webhook
(every instance's events) or `webhookUrl` per instance. Deliveries come at least once, so the same
`webhook-id` may arrive twice: act on each id once. Anything not correctly signed gets 401.
"""

from __future__ import annotations

import argparse
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from novita_gpu_client import verify_webhook


class Receiver(BaseHTTPRequestHandler):
    secret = ""
    seen: set[str] = set()  # a real receiver keeps these in its database

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if not verify_webhook(self.secret, dict(self.headers), body):
            self.send_response(401)
            self.end_headers()
            return
        delivery = self.headers["webhook-id"]
        if delivery not in self.seen:
            self.seen.add(delivery)
            event = json.loads(body)
            if "instanceId" in event:
                line = f"{event['instanceId']} {event['name']}: {event['previousStatus']} -> {event['status']}"
                if event["status"] == "ready":
                    line += f" {json.dumps(event['data']['connectionDetails'])}"
            else:  # an API key's event (budget.exceeded, sent to WEBHOOK_URL too)
                line = f"{event['event']} {event.get('apiKey')}: {json.dumps(event.get('data'))}"
            print(line, flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet: one line per event is printed above
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    Receiver.secret = os.environ["WEBHOOK_SECRET"]
    server = ThreadingHTTPServer((args.host, args.port), Receiver)
    print(f"listening on http://{args.host}:{args.port}/webhook", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
