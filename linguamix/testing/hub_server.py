"""A loopback HTTP server that plays the Hugging Face Hub for `huggingface_hub` clients.

It serves the subset of the Hub's HTTP API that `HfApi.repo_info` and `hf_hub_download`
use (huggingface_hub 1.x/2.x, read from its source):
* `GET /api/{datasets|models}/{repo}/revision/{rev}?blobs=true` -> `{"id", "sha",
  "siblings": [{"rfilename", "size", "blobId", "lfs": {"size", "sha256", "pointerSize"}}]}`
* `HEAD|GET /{datasets/}{repo}/resolve/{rev}/{path}`: small files answered directly
  (`ETag` = git blob id, `Content-Length`, `X-Repo-Commit`); LFS files (by extension, as
  `.gitattributes` on the Hub) with a 302 to `/cdn/{sha256}` carrying `X-Linked-Etag`,
  `X-Linked-Size` and `X-Repo-Commit`.
* `GET /cdn/{sha256}` with `Range: bytes=N-` answered 206 with `Content-Range`.
* errors as the Hub sends them: 404 + `X-Error-Code: EntryNotFound|RepoNotFound|
  RevisionNotFound`; gated repos, as on the Hub, list publicly but answer file requests
  401 (no token) or 403 (a token without access), with `X-Error-Code: GatedRepo`.
* `GET /gh/{path}` (with `Range: bytes=N-`): files outside the Hub, e.g. a GitHub commit's
  raw files, from `raw[path]` (`LINGUAMIX_GITHUB_RAW={url}/gh`).
Faults for tests: `drop_once[path] = n` sends the full Content-Length but only n bytes
of that file's first download, then closes the connection. `requests` logs every call (header names lower-cased).
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import threading
import urllib.parse

LFS_SUFFIXES = (".gz", ".parquet", ".safetensors", ".bin", ".model", ".zip")


@dataclasses.dataclass
class Revision:
  commit: str
  files: dict  # path -> bytes


@dataclasses.dataclass
class Repo:
  revisions: dict = dataclasses.field(default_factory=dict)  # name -> Revision
  gated_token: str | None = None  # set: only `Bearer <token>` may read


class FakeHub:
  def __init__(self):
    self.repos: dict = {}            # (kind, repo_id) kind in {"datasets", "models"}
    self.blobs: dict = {}            # sha256 -> bytes
    self.requests: list = []         # (method, path, headers dict)
    self.drop_once: dict = {}        # file path -> bytes to send before dropping
    self.raw: dict = {}              # /gh/ path -> bytes
    handler = type("Handler", (_Handler,), {"hub": self})
    # The CDN is another host (127.0.0.2, also loopback): the client follows redirects
    # that stay on the Hub's host and takes LFS metadata from the 302 otherwise.
    self.servers = [http.server.ThreadingHTTPServer((host, 0), handler)
                    for host in ("127.0.0.1", "127.0.0.2")]
    self.url, self.cdn_url = (f"http://{s.server_address[0]}:{s.server_address[1]}"
                              for s in self.servers)
    self._threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05},
                                      daemon=True) for s in self.servers]

  def __enter__(self):
    for t in self._threads:
      t.start()
    return self

  def __exit__(self, *exc):
    for s in self.servers:
      s.shutdown()
      s.server_close()

  def add(self, repo_id: str, files: dict, *, kind: str = "datasets", revision: str = "main",
          gated_token: str | None = None) -> str:
    """Adds (or replaces) a revision of a repository; returns its commit id."""
    digest = hashlib.sha1(repo_id.encode() + revision.encode())
    for path in sorted(files):
      digest.update(path.encode() + b"\0" + files[path])
    repo = self.repos.setdefault((kind, repo_id), Repo())
    repo.gated_token = gated_token
    repo.revisions[revision] = Revision(digest.hexdigest(), dict(files))
    for data in files.values():
      self.blobs[hashlib.sha256(data).hexdigest()] = data
    return repo.revisions[revision].commit

  def downloads(self) -> list[str]:
    """Paths whose bytes were sent (GET of a small file, or of a CDN blob)."""
    return [p for m, p, _ in self.requests if m == "GET" and ("/resolve/" in p or p.startswith("/cdn/"))]


def _git_blob_id(data: bytes) -> str:
  return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
  hub: FakeHub
  protocol_version = "HTTP/1.1"

  def log_message(self, *args):  # quiet
    pass

  def do_HEAD(self):
    self._serve(body=False)

  def do_GET(self):
    self._serve(body=True)

  def _send(self, status, headers=None, body=b"", send_body=True):
    self.send_response(status)
    headers = dict(headers or {})
    headers.setdefault("Content-Length", str(len(body)))
    for k, v in headers.items():
      self.send_header(k, v)
    self.end_headers()
    if send_body and body:
      self.wfile.write(body)

  def _error(self, status, code, send_body):
    self._send(status, {"X-Error-Code": code, "Content-Type": "application/json"},
               json.dumps({"error": code}).encode(), send_body)

  def _repo(self, kind, rest):
    """(repo, repo_id, remaining parts) for `ns/name/...` (or `name/...`)."""
    parts = rest.split("/")
    for n in (2, 1):
      repo_id = "/".join(parts[:n])
      if (kind, repo_id) in self.hub.repos:
        return self.hub.repos[(kind, repo_id)], repo_id, parts[n:]
    return None, "/".join(parts[:2]), parts[2:]

  def _authorised(self, repo) -> int:
    if repo.gated_token is None:
      return 0
    auth = self.headers.get("Authorization")
    if auth == f"Bearer {repo.gated_token}":
      return 0
    return 401 if auth is None else 403

  def _revision(self, repo, name):
    name = urllib.parse.unquote(name)
    if name in repo.revisions:
      return repo.revisions[name]
    return next((r for r in repo.revisions.values() if r.commit == name), None)

  def _serve(self, body: bool):
    url = urllib.parse.urlsplit(self.path)
    path = urllib.parse.unquote(url.path)
    self.hub.requests.append((self.command, path, {k.lower(): v for k, v in self.headers.items()}))
    if path.startswith("/cdn/"):
      return self._blob(path[len("/cdn/"):], body)
    if path.startswith("/gh/"):
      data = self.hub.raw.get(path[len("/gh/"):])
      if data is None:
        return self._send(404, body=b"404: Not Found", send_body=body)
      return self._ranged(data, f'"{_git_blob_id(data)}"', path[len("/gh/"):], body)
    if path.startswith("/api/"):
      kind, _, rest = path[len("/api/"):].partition("/")
      repo, repo_id, tail = self._repo(kind, rest)
      if repo is None:
        return self._error(404, "RepoNotFound", body)
      rev_name = urllib.parse.unquote(url.path).split("/revision/", 1)[1] if "/revision/" in url.path else "main"
      rev = self._revision(repo, rev_name)
      if rev is None:
        return self._error(404, "RevisionNotFound", body)
      siblings = []
      for p, data in sorted(rev.files.items()):
        s = {"rfilename": p, "size": len(data), "blobId": _git_blob_id(data)}
        if p.endswith(LFS_SUFFIXES):
          s["lfs"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "pointerSize": 134}
        siblings.append(s)
      return self._send(200, {"Content-Type": "application/json"},
                        json.dumps({"id": repo_id, "sha": rev.commit, "siblings": siblings}).encode(), body)
    kind = "datasets" if path.startswith("/datasets/") else "models"
    rest = path[len("/datasets/"):] if kind == "datasets" else path[1:]
    repo, repo_id, tail = self._repo(kind, rest)
    if repo is None or len(tail) < 3 or tail[0] != "resolve":
      return self._error(404, "RepoNotFound", body)
    if status := self._authorised(repo):
      return self._error(status, "GatedRepo", body)
    # the revision may contain '/', quoted as %2F in the raw path
    raw_tail = url.path.split("/resolve/", 1)[1]
    raw_rev, _, raw_file = raw_tail.partition("/")
    rev = self._revision(repo, raw_rev)
    if rev is None:
      return self._error(404, "RevisionNotFound", body)
    filename = urllib.parse.unquote(raw_file)
    if filename not in rev.files:
      return self._error(404, "EntryNotFound", body)
    data = rev.files[filename]
    common = {"X-Repo-Commit": rev.commit, "Accept-Ranges": "bytes"}
    if filename.endswith(LFS_SUFFIXES):
      sha = hashlib.sha256(data).hexdigest()
      return self._send(302, {**common, "Location": f"{self.hub.cdn_url}/cdn/{sha}",
                              "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data)),
                              "ETag": f'"{_git_blob_id(data)}"'}, b"", body)
    return self._send(200, {**common, "ETag": f'"{_git_blob_id(data)}"'}, data, body)

  def _blob(self, sha, body):
    data = self.hub.blobs.get(sha)
    if data is None:
      return self._send(404)
    name = next((p for (_, _), r in self.hub.repos.items() for rev in r.revisions.values()
                 for p, d in rev.files.items() if d is data or d == data), None)
    return self._ranged(data, f'"{sha}"', name, body)

  def _ranged(self, data, etag, name, body):
    start = 0
    rng = self.headers.get("Range")
    if rng and rng.startswith("bytes="):
      start = int(rng[len("bytes="):].split("-")[0])
    part = data[start:]
    headers = {"Content-Length": str(len(part)), "ETag": etag, "Accept-Ranges": "bytes"}
    status = 200
    if start:
      status, headers["Content-Range"] = 206, f"bytes {start}-{len(data) - 1}/{len(data)}"
    cut = self.hub.drop_once.pop(name, None) if body and name is not None else None
    self.send_response(status)
    for k, v in headers.items():
      self.send_header(k, v)
    self.end_headers()
    if not body:
      return
    if cut is not None:
      self.wfile.write(part[:cut])
      self.wfile.flush()
      self.close_connection = True
      self.connection.shutdown(2)  # the peer sees the body end early
      return
    self.wfile.write(part)
