#!/usr/bin/python3
"""An HTTP receiver for app-service's HTTP export (Python's http.server).

  http_sink.py PORT [--fail-first N]

Answers each POST with 200 (the first N with 503) and prints "STATUS PATH BODY" per request
(bodies are one-line JSON). Prints "ready" once listening.
"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

fail_first = int(sys.argv[sys.argv.index("--fail-first") + 1]) if "--fail-first" in sys.argv else 0
count = 0


class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        global count
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        count += 1
        status = 503 if count <= fail_first else 200
        print(f"{status} {self.path} {body.decode('utf-8', 'replace')}", flush=True)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink)
print("ready", flush=True)
server.serve_forever()
