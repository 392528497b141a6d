"""A 127.0.0.1 HTTP server for one payload (a checkpoint archive), for the downloader's tests.

It honours Range requests (the downloader resumes), can drop the first connection half-way,
and records each request's Range header; `payload` may be replaced between requests.
"""

from __future__ import annotations

import http.server
import threading


class PayloadServer:
    """A 127.0.0.1 HTTP server for one payload, with Range support and an optional cut."""

    def __init__(self, payload: bytes, cut_first: bool = False, honour_range: bool = True):
        self.payload, self.cut_first, self.honour_range = payload, cut_first, honour_range
        self.requests: list[str | None] = []  # the Range header of each request
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                server.requests.append(rng)
                data, start = server.payload, 0
                if rng and server.honour_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_first and len(server.requests) == 1:
                    self.wfile.write(body[: len(body) // 2])  # then drop the connection
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/model.zip"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
