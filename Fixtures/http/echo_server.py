#!/usr/bin/env python3
"""A small HTTP API for the tests of the engine's http capability handler.

Binds 127.0.0.1 on the port given as argv[1] (0 or none: any free port), prints the chosen port as its first
line on stdout, and serves until its stdin closes (so it never outlives the test that started it).

    GET  /customers?tier=gold   a list of customers, filtered by tier
    GET  /customers/{id}        one customer, or 404
    ANY  /echo...               the request as it arrived: method, path, query, headers, body
    GET  /big                   a JSON body over 16 MiB
    GET  /slow                  answers after 5 s
    GET  /redirect              302 to /echo
    GET  /text                  text/plain
    GET  /empty                 204, no body
    GET  /requests              every request so far as [method, path with query] (this one not included)
"""

import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TIERS = ["gold", "silver", "bronze"]
REGIONS = ["emea", "amer", "apac"]


def customer(customer_id):
    return {
        "id": customer_id,
        "name": f"Customer {customer_id:04d}",
        "tier": TIERS[customer_id % 3],
        "region": REGIONS[(customer_id // 3) % 3],
        "annualRevenue": customer_id * 1000 + 500,
    }


CUSTOMERS = [customer(i) for i in range(1, 31)]
RECORDED = []
RECORDED_LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "echo-server"

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self.handle_any()

    def do_POST(self):
        self.handle_any()

    def do_PUT(self):
        self.handle_any()

    def do_PATCH(self):
        self.handle_any()

    def do_DELETE(self):
        self.handle_any()

    def answer(self, status, body, content_type="application/json", extra_headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra_headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        if path == "/requests":
            with RECORDED_LOCK:
                recorded = list(RECORDED)
            self.answer(200, recorded)
            return
        with RECORDED_LOCK:
            RECORDED.append([self.command, self.path])
        if path.startswith("/echo"):
            self.answer(
                200,
                {
                    "method": self.command,
                    "path": path,
                    "rawPath": self.path,
                    "query": query,
                    "headers": {name.lower(): value for name, value in self.headers.items()},
                    "body": body,
                },
            )
        elif path == "/customers" and self.command == "GET":
            tiers = query.get("tier")
            self.answer(200, [c for c in CUSTOMERS if not tiers or c["tier"] in tiers])
        elif path.startswith("/customers/") and self.command == "GET":
            key = path[len("/customers/"):]
            found = [c for c in CUSTOMERS if str(c["id"]) == key]
            if found:
                self.answer(200, found[0])
            else:
                self.answer(404, {"error": f"no customer {key}"})
        elif path == "/big":
            self.send_big()
        elif path == "/slow":
            time.sleep(5)
            self.answer(200, {"slow": True})
        elif path == "/redirect":
            self.answer(302, b"", "text/plain", [("Location", "/echo?redirected=1")])
        elif path == "/text":
            self.answer(200, b"hello, plain text", "text/plain")
        elif path == "/empty":
            self.send_response(204)
            self.end_headers()
        else:
            self.answer(404, {"error": f"nothing at {path}"})

    def send_big(self):
        """A JSON array of 17 MiB of strings, written in 1 MiB pieces."""
        piece = b'"' + b"x" * (1 << 20) + b'",'
        count = 17
        length = 1 + count * len(piece) + len(b'"end"]')
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        try:
            self.wfile.write(b"[")
            for _ in range(count):
                self.wfile.write(piece)
            self.wfile.write(b'"end"]')
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()  # Until the test closes our stdin or exits.
    server.shutdown()


if __name__ == "__main__":
    main()
