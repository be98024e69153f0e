"""A local stand-in for the Hugging Face Hub's upload API that records what it receives.

Why no real upload runs in the tests: these machines cannot reach huggingface.co, and a real
upload needs an account and a token. Instead the *real* ``huggingface_hub`` client is pointed
at this server with ``HF_ENDPOINT``; it answers the four endpoints an upload uses (create repo,
validate the card's YAML, pre-upload, commit) the way the Hub documents them, asks for every
file as a "regular" upload (base64 inside the commit, so no LFS/Xet storage is involved), and
keeps each request so a test can check exactly what would have been published.
"""
from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional, Tuple

COMMIT_SHA = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Recorded:
    requests: List[Tuple[str, str, Dict[str, str]]] = field(default_factory=list)
    created: List[dict] = field(default_factory=list)
    commits: List[Dict[str, object]] = field(default_factory=list)  # {"repo", "revision", "summary", "files"}


class HubRecorder:
    """``with HubRecorder() as hub:`` serves on ``hub.endpoint`` until the block ends."""

    def __init__(self) -> None:
        self.recorded = Recorded()
        recorded = self.recorded

        class Handler(BaseHTTPRequestHandler):
            def _json(self, code: int, obj: object) -> None:
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                recorded.requests.append(("GET", self.path, dict(self.headers)))
                self._json(404, {"error": "not served by the recorder"})

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorded.requests.append(("POST", self.path, dict(self.headers)))
                path = self.path.split("?")[0]
                base = f"http://127.0.0.1:{self.server.server_port}"
                if path == "/api/repos/create":
                    req = json.loads(body)
                    recorded.created.append(req)
                    return self._json(200, {"url": f"{base}/{req.get('organization')}/{req['name']}"})
                if path == "/api/validate-yaml":
                    return self._json(200, {"errors": [], "warnings": []})
                if path.startswith("/api/models/") and "/preupload/" in path:
                    files = json.loads(body)["files"]
                    return self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                      for f in files]})
                if path.startswith("/api/models/") and "/commit/" in path:
                    repo, _, revision = path[len("/api/models/"):].partition("/commit/")
                    commit: Dict[str, object] = {"repo": repo, "revision": revision, "files": {}}
                    for line in body.decode().splitlines():
                        item = json.loads(line)
                        if item["key"] == "header":
                            commit["summary"] = item["value"]["summary"]
                        elif item["key"] == "file":
                            assert item["value"]["encoding"] == "base64"
                            commit["files"][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    recorded.commits.append(commit)
                    return self._json(200, {"commitUrl": f"{base}/{repo}/commit/{COMMIT_SHA}", "commitOid": COMMIT_SHA})
                self._json(404, {"error": "not served by the recorder"})

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread: Optional[threading.Thread] = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> "HubRecorder":
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
