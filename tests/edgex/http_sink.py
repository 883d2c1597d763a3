#!/usr/bin/python3
"""An HTTP(S) receiver for app-service's HTTP export (Python's http.server and ssl).

  http_sink.py PORT [--fail-first N] [--tls CERT KEY] [--decode gzip|zlib]

Answers each POST with 200 (the first N with 503) and prints "STATUS PATH BODY" per request
(bodies are one-line JSON). With --tls it serves HTTPS (TLS 1.3) with that certificate; with
--decode it Base64-decodes and decompresses each body first, as a receiver of EdgeX's
CompressWithGZIP/CompressWithZLIB output does (a body that does not decode answers 400).
Prints "ready" once listening.
"""
import base64
import gzip
import ssl
import sys
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def option(name, count=1):
    if name not in sys.argv:
        return None
    i = sys.argv.index(name)
    return sys.argv[i + 1:i + 1 + count]


fail_first = int(option("--fail-first")[0]) if option("--fail-first") else 0
decode = option("--decode")[0] if option("--decode") else None
tls = option("--tls", 2)
count = 0


class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        global count
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        count += 1
        status = 503 if count <= fail_first else 200
        if decode:
            try:
                raw = base64.b64decode(body, validate=True)
                body = gzip.decompress(raw) if decode == "gzip" else zlib.decompress(raw)
            except Exception as e:  # what the peer sent is not ours to trust
                status, body = 400, str(e).encode()
        print(f"{status} {self.path} {body.decode('utf-8', 'replace')}", flush=True)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink)
if tls:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(tls[0], tls[1])
    server.socket = context.wrap_socket(server.socket, server_side=True)
print("ready", flush=True)
server.serve_forever()
