"""The Hugging Face Hub through `huggingface_hub`: one listing per revision, cached files.

A repository is listed once (`repo_info` at the revision, with file sizes), which pins
the commit; files are then fetched at that commit with `hf_hub_download`, so a file
already in the cache costs no request at all and a changed file on the Hub is a new
commit. The library does the rest: its cache (`HF_HOME`), `HF_TOKEN`, `HF_ENDPOINT`,
the per-file progress bar, and resuming a transfer dropped mid-run with a Range request.
One thing it does not do is keep a partial file for the next run (huggingface_hub 1.x
downloads into a process-unique temporary file and deletes it when the transfer fails),
so a killed multi-GB download would restart from zero: `fetch` therefore downloads the
blob itself into `blobs/{etag}.linguamix-partial` with the library's `http_get`,
continues it by Range on the next run, and lets `hf_hub_download` link the finished blob.
Files outside the Hub (a GitHub release file pinned to a commit) go through `fetch_url`,
the same resumable transfer into `$HF_HOME/linguamix/downloads`.

Errors become one `PrepareError` line naming the repository (and the file, or the page
where a gated dataset's terms are accepted); the library's own messages are not
repeated, so no header or token can leak into them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import hashlib
import os
import urllib.parse
from typing import Iterable, Sequence


class PrepareError(Exception):
  """A user-facing failure: the message is the whole story (one `error:` line)."""


@dataclasses.dataclass(frozen=True)
class Snapshot:
  """A repository at one commit: its files and their sizes."""
  repo_id: str
  repo_type: str           # "dataset" | "model"
  revision: str            # as asked ("main")
  commit: str              # as resolved
  sizes: dict              # path -> bytes (None when the Hub did not say)

  def match(self, pattern: str) -> list[str]:
    """Files matching a glob (`*` crosses `/`), sorted."""
    return sorted(p for p in self.sizes if fnmatch.fnmatchcase(p, pattern))

  def find(self, patterns: Sequence[str], what: str) -> list[str]:
    """The files of the first pattern that matches any; an error naming all tried."""
    for pattern in patterns:
      found = self.match(pattern)
      if found:
        return found
    raise PrepareError(
        f"{page(self.repo_id, self.repo_type)} (commit {self.commit[:12]}) has no file "
        f"{' or '.join(patterns)} ({what}); the repository's layout differs from the one "
        f"linguamix/prepare relies on")


def _constants():
  from huggingface_hub import constants  # read at call time: tests point it elsewhere
  return constants


def page(repo_id: str, repo_type: str) -> str:
  prefix = "datasets/" if repo_type == "dataset" else ""
  return f"{_constants().ENDPOINT}/{prefix}{repo_id}"


@contextlib.contextmanager
def hub_errors(repo_id: str, repo_type: str, filename: str | None = None):
  """Library exceptions -> one PrepareError naming the repository (never the token)."""
  from huggingface_hub import errors
  where = page(repo_id, repo_type) + (f" file {filename}" if filename else "")
  try:
    yield
  except errors.GatedRepoError:
    raise PrepareError(_gated(repo_id, repo_type)) from None
  except errors.RevisionNotFoundError:
    raise PrepareError(f"{where}: revision not found") from None
  except errors.RemoteEntryNotFoundError:
    raise PrepareError(f"{where}: not in the repository") from None
  except errors.HfHubHTTPError as e:
    status = getattr(getattr(e, "response", None), "status_code", None)
    if status in (401, 403):
      raise PrepareError(_gated(repo_id, repo_type)) from None
    if status == 404:
      raise PrepareError(f"{where}: repository not found (HTTP 404)") from None
    raise PrepareError(f"{where}: the Hub answered HTTP {status}") from None
  except PrepareError:
    raise
  except Exception as e:  # noqa: BLE001 - sorted below: network and disk errors are the user's
    # connection failures (the HTTP client's own exception types), a size that does not
    # match (truncated transfer), a full disk; anything else is a bug and keeps its traceback
    if not (isinstance(e, (OSError, ValueError))
            or type(e).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "httpcore2", "h11")):
      raise
    raise PrepareError(f"{where}: {type(e).__name__}: {_first_line(e)} (finished files are "
                       "kept: run again to continue)") from None


def _first_line(e: Exception) -> str:
  return (str(e).strip().splitlines() or [""])[0][:300]


def _gated(repo_id: str, repo_type: str) -> str:
  return (f"{page(repo_id, repo_type)} refused access (HTTP 401/403): it is gated or private. "
          f"Log in there, accept its terms on that page, then set HF_TOKEN to a token of that "
          f"account (huggingface.co/settings/tokens) and run again")


def snapshot(repo_id: str, repo_type: str = "dataset", revision: str | None = None) -> Snapshot:
  """Lists a repository at `revision` (one API request)."""
  from huggingface_hub import HfApi
  revision = revision or "main"
  api = HfApi(endpoint=_constants().ENDPOINT)
  with hub_errors(repo_id, repo_type):
    info = api.repo_info(repo_id, repo_type=repo_type, revision=revision, files_metadata=True)
  if not info.sha:
    raise PrepareError(f"{page(repo_id, repo_type)}: the Hub did not name the commit of {revision!r}")
  sizes = {s.rfilename: (s.lfs.size if s.lfs else s.size) for s in (info.siblings or [])}
  return Snapshot(repo_id, repo_type, revision, info.sha, sizes)


def is_cached(snap: Snapshot, path: str) -> bool:
  from huggingface_hub import try_to_load_from_cache
  found = try_to_load_from_cache(snap.repo_id, path, cache_dir=_constants().HF_HUB_CACHE,
                                 revision=snap.commit, repo_type=snap.repo_type)
  return isinstance(found, str)


def fetch(snap: Snapshot, path: str, log=print) -> str:
  """Local path of `path` at the snapshot's commit, downloaded into the cache if needed
  (continuing a partial download left by an earlier, killed run)."""
  from huggingface_hub import file_download, get_hf_file_metadata, hf_hub_download, hf_hub_url
  from huggingface_hub.utils import build_hf_headers
  c = _constants()
  with hub_errors(snap.repo_id, snap.repo_type, path):
    if not is_cached(snap, path):
      url = hf_hub_url(snap.repo_id, path, repo_type=snap.repo_type, revision=snap.commit,
                       endpoint=c.ENDPOINT)
      headers = build_hf_headers()
      meta = get_hf_file_metadata(url, headers=headers)
      blob = os.path.join(c.HF_HUB_CACHE, file_download.repo_folder_name(
          repo_id=snap.repo_id, repo_type=snap.repo_type), "blobs", meta.etag)
      if not os.path.exists(blob):
        # As the library does: an LFS file is fetched from the CDN the Hub redirects to,
        # without the token; a Xet-stored file through the resolve URL.
        target = url
        if meta.xet_file_data is None and meta.location != url:
          target = meta.location
          if urllib.parse.urlsplit(target).netloc != urllib.parse.urlsplit(url).netloc:
            headers.pop("authorization", None)
        _resumable_get(target, blob, meta.size, headers, f"{snap.repo_id}/{path}", log)
    return hf_hub_download(snap.repo_id, path, repo_type=snap.repo_type, revision=snap.commit,
                           cache_dir=c.HF_HUB_CACHE, endpoint=c.ENDPOINT)


def _resumable_get(url: str, dest: str, size, headers: dict, name: str, log) -> None:
  """GET into `dest.linguamix-partial` (continued by Range if present), then rename."""
  from huggingface_hub import file_download
  partial = dest + ".linguamix-partial"
  os.makedirs(os.path.dirname(dest), exist_ok=True)
  done = os.path.getsize(partial) if os.path.exists(partial) else 0
  if size is not None and done > size:
    done = 0
  if done:
    log(f"  resuming {name} at byte {done:,}" + (f" of {size:,}" if size else ""))
  with open(partial, "r+b" if done else "wb") as f:
    f.seek(done)
    f.truncate()
    file_download.http_get(url, f, resume_size=done, headers=headers, expected_size=size,
                           displayed_filename=name.rsplit("/", 1)[-1])
  os.replace(partial, dest)


def _url_dest(url: str) -> str:
  home = os.path.dirname(_constants().HF_HUB_CACHE.rstrip("/"))
  return os.path.join(home, "linguamix", "downloads",
                      hashlib.sha256(url.encode()).hexdigest()[:16] + "-" + url.rsplit("/", 1)[-1])


def is_url_cached(url: str) -> bool:
  return os.path.exists(_url_dest(url))


def fetch_url(url: str, log=print) -> str:
  """Local copy of a file pinned by its URL (a commit's raw file): downloaded once into
  `$HF_HOME/linguamix/downloads`, a killed transfer continued by Range."""
  dest = _url_dest(url)
  if not os.path.exists(dest):
    try:
      _resumable_get(url, dest, None, {}, url, log)
    except Exception as e:  # noqa: BLE001 - sorted as in hub_errors
      status = getattr(getattr(e, "response", None), "status_code", None)
      if status is not None:
        raise PrepareError(f"{url}: HTTP {status}") from None
      if not (isinstance(e, OSError)
              or type(e).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "httpcore2", "h11")):
        raise
      raise PrepareError(f"{url}: {type(e).__name__}: {_first_line(e)} (run again to continue)") from None
  return dest


def fetch_all(snap: Snapshot, paths: Iterable[str], log) -> tuple[dict, int, int]:
  """{path: local path}, files downloaded, bytes downloaded; cached files cost nothing."""
  local, n, size = {}, 0, 0
  for path in paths:
    if not is_cached(snap, path):
      log(f"  downloading {snap.repo_id}/{path} ({human(snap.sizes.get(path))})")
      n += 1
      size += snap.sizes.get(path) or 0
    local[path] = fetch(snap, path, log)
  return local, n, size


def human(size) -> str:
  if size is None:
    return "size unknown"
  for unit in ("B", "kB", "MB", "GB", "TB"):
    if size < 1000 or unit == "TB":
      return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
    size /= 1000
  return ""
