"""Quickstart app: serves ./static on port 8000 (edit static/index.html and reload)."""

import http.server
import os

if __name__ == "__main__":
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), "static"))
    http.server.ThreadingHTTPServer(
        ("0.0.0.0", 8000), http.server.SimpleHTTPRequestHandler
    ).serve_forever()
