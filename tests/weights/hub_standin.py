"""A stand-in for the Hugging Face hub on loopback: the one allowed mock in these tests (the real
hub cannot be reached here). It answers exactly the requests ``huggingface_hub`` makes for
``step1x3d weights fetch``:

* ``GET /api/models/{owner}/{name}[/revision/{rev}]?blobs=true``: the repository listing with
  every file's size, git blob id and, for LFS files (``*.safetensors``), size and SHA-256;
* ``HEAD /{owner}/{name}/resolve/{rev}/{path}``: ``X-Repo-Commit``, ``ETag`` (the SHA-256 for LFS
  files, as the hub's ``X-Linked-Etag``) and ``Content-Length``;
* ``GET`` of the same URL, honouring ``Range: bytes=N-`` (resume).

Faults for the tests: ``cut_once`` (send half of a file, then drop the connection, once),
``stall_once`` (send half, then hang so the test can kill the client) and ``corrupt`` (serve
damaged bytes for a file a number of times). Every request is recorded.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit


@dataclass
class FakeRepo:
    files: dict[str, bytes]
    sha: str = "0123456789abcdef0123456789abcdef01234567"

    def is_lfs(self, path: str) -> bool:
        return path.endswith(".safetensors")


@dataclass
class Request:
    method: str
    repo: str
    path: str  # file path inside the repository ("" for listings)
    range_start: int | None
    authorization: str | None = None  # the Authorization header the client sent
    revision: str | None = None  # the revision in the URL (None: a listing without one)


@dataclass
class HubStandIn:
    repos: dict[str, FakeRepo]
    requests: list[Request] = field(default_factory=list)
    cut_once: set[tuple[str, str]] = field(default_factory=set)  # (repo, path)
    corrupt: dict[tuple[str, str], int] = field(default_factory=dict)  # (repo, path) -> times left
    # Send half of the file, then hang until released (the test kills the client meanwhile).
    stall_once: set[tuple[str, str]] = field(default_factory=set)
    stalled: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None

    def start(self) -> str:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                return None

            def do_GET(self) -> None:
                hub._handle(self, head=False)

            def do_HEAD(self) -> None:
                hub._handle(self, head=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def downloads(self, repo: str | None = None) -> list[Request]:
        return [r for r in self.requests if r.method == "GET" and r.path and (repo is None or r.repo == repo)]

    # -- request handling ----------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        url = urlsplit(h.path)
        path = unquote(url.path)
        listing = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
        if listing:
            self.requests.append(Request(h.command, listing.group(1), "", None, h.headers.get("Authorization"),
                                         listing.group(2)))
            repo = self.repos.get(listing.group(1))
            if repo is None:
                return self._send(h, 404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"})
            return self._send(h, 200, json.dumps(self._listing(listing.group(1), repo)).encode(),
                              {"Content-Type": "application/json"})
        resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if not resolve:
            return self._send(h, 404, b"not found", {})
        repo_id, rev, file_path = resolve.groups()
        rng = h.headers.get("Range")
        start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1)) if rng else None  # type: ignore[union-attr]
        self.requests.append(Request(h.command, repo_id, file_path, start, h.headers.get("Authorization"), rev))
        repo = self.repos.get(repo_id)
        if repo is None or file_path not in repo.files:
            return self._send(h, 404, b"Entry not found", {"X-Error-Code": "EntryNotFound"})
        data = repo.files[file_path]
        key = (repo_id, file_path)
        headers = {"X-Repo-Commit": repo.sha, "ETag": f'"{self._etag(repo, file_path)}"',
                   "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if repo.is_lfs(file_path):
            headers["X-Linked-Etag"] = headers["ETag"]
            headers["X-Linked-Size"] = str(len(data))
        if head:
            headers["Content-Length"] = str(len(data))
            h.send_response(200)
            for k, v in headers.items():
                h.send_header(k, v)
            h.end_headers()
            return
        if self.corrupt.get(key, 0) > 0:
            self.corrupt[key] -= 1
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        body = data[start:] if start else data
        status = 206 if start else 200
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        if key in self.cut_once or key in self.stall_once:
            stall = key in self.stall_once
            self.cut_once.discard(key)
            self.stall_once.discard(key)
            h.send_response(status)
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            if stall:
                self.stalled.set()
                self.release.wait(60)
            h.close_connection = True
            h.connection.shutdown(2)  # the network dies mid-file
            return
        self._send(h, status, body, headers)

    @staticmethod
    def _etag(repo: FakeRepo, path: str) -> str:
        data = repo.files[path]
        if repo.is_lfs(path):
            return hashlib.sha256(data).hexdigest()
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()

    def _listing(self, repo_id: str, repo: FakeRepo) -> dict[str, Any]:
        siblings = []
        for path, data in sorted(repo.files.items()):
            entry: dict[str, Any] = {"rfilename": path, "size": len(data), "blobId": self._etag(repo, path)}
            if repo.is_lfs(path):
                entry["lfs"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "pointerSize": 134}
            siblings.append(entry)
        return {"id": repo_id, "modelId": repo_id, "sha": repo.sha, "private": False, "siblings": siblings}

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)
