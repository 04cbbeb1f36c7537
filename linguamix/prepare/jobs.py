"""One output file under the data root = one `Job`; `run` fetches, converts and records.

A job names where its inputs come from -- a Hub repository (the files it needs, each as
alternative glob patterns: the first that matches wins, so a Hub copy that moved
`x.json.gz` to `data/x.json.gz` still resolves), a URL pinned to a commit, or a file
bundled with linguamix -- and a conversion from the fetched local files to the output's
bytes. Jobs of one repository share one listing; a repository whose own files lack a
pattern is looked up again at its next revision (`refs/convert/parquet`, the Hub's
parquet export).

Every job stands alone: one that fails (a file the repository lacks, a refused gated
download, a record the conversion cannot hold) is reported with its reason and the
others go on. `run` returns each output's state -- written, up to date, or failed (why) --
and a rerun does only what is not up to date.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
from typing import Callable, Optional, Sequence

from linguamix.prepare import hub, store

# Revisions tried in order: the repository itself, then the Hub's parquet export.
PARQUET = ("main", "refs/convert/parquet")

WRITTEN, UP_TO_DATE, FAILED = "written", "up to date", "failed"


@dataclasses.dataclass(frozen=True)
class Job:
  rel: str                                   # output, relative to the root
  repo: Optional[str]                        # Hub dataset id; None: `url` or `bundled`
  sources: tuple[tuple[str, ...], ...] = ()  # per needed input: alternative patterns
  convert: Optional[Callable[[list[list[str]]], bytes]] = None  # None: copy the one file
  revisions: tuple[str, ...] = ("main",)
  bundled: Optional[str] = None              # package file copied as is
  url: Optional[str] = None                  # a file pinned by URL (e.g. a commit's raw file)
  note: str = ""                             # how the source differs, said when written
  lang: Optional[str] = None                 # the language it serves; None: all of the set's


def copy_of(local: list[list[str]]) -> bytes:
  (paths,) = local
  if len(paths) != 1:
    raise hub.PrepareError(f"expected one file, the repository has {len(paths)}: {paths}")
  return pathlib.Path(paths[0]).read_bytes()


@dataclasses.dataclass
class _Planned:
  job: Job
  snap: Optional[hub.Snapshot]
  files: list[list[str]]
  source: dict


@dataclasses.dataclass
class Result:
  job: Job
  state: str          # WRITTEN | UP_TO_DATE | FAILED
  why: str = ""


class Runner:
  def __init__(self, root: str, log=print):
    self.root, self.log = root, log
    self.snapshots: dict = {}

  def _snapshot(self, repo: str, revision: str) -> hub.Snapshot:
    key = (repo, revision)
    if key not in self.snapshots:
      try:
        self.snapshots[key] = hub.snapshot(repo, "dataset", revision)
      except hub.PrepareError as e:
        self.snapshots[key] = e  # listed once per run, failure included
    if isinstance(self.snapshots[key], hub.PrepareError):
      raise self.snapshots[key]
    return self.snapshots[key]

  def _plan(self, job: Job) -> _Planned:
    if job.url is not None:
      return _Planned(job, None, [], {"url": job.url})
    if job.repo is None:
      data = pathlib.Path(job.bundled).read_bytes()
      return _Planned(job, None, [[job.bundled]],
                      {"bundled": job.bundled.split("linguamix/", 1)[-1],
                       "sha256": hashlib.sha256(data).hexdigest()})
    error = None
    for revision in job.revisions:
      try:
        snap = self._snapshot(job.repo, revision)
        files = [snap.find(alts, job.rel) for alts in job.sources]
      except hub.PrepareError as e:
        error = error or e
        continue
      return _Planned(job, snap, files, {"repo": job.repo, "commit": snap.commit,
                                         "files": [f for fs in files for f in fs]})
    raise error

  def _write(self, p: _Planned) -> tuple[int, int]:
    """Fetches, converts and writes one planned output; (files, bytes) downloaded."""
    n = size = 0
    if p.job.url is not None:
      local = [[hub.fetch_url(p.job.url, self.log)]]
    elif p.snap is None:
      local = p.files
    else:
      fetched, n, size = hub.fetch_all(p.snap, [f for fs in p.files for f in fs], self.log)
      local = [[fetched[f] for f in fs] for fs in p.files]
    data = (p.job.convert or copy_of)(local)
    store.write_bytes(store.join(self.root, p.job.rel), data)
    self.manifest.record(p.job.rel, p.source, len(data))
    origin = (f"{p.snap.repo_id}@{p.snap.commit[:12]}" if p.snap else
              p.job.url if p.job.url else "bundled copy")
    self.log(f"  wrote {p.job.rel} ({hub.human(len(data))}) from {origin}"
             + (f": {p.job.note}" if p.job.note else ""))
    return n, size

  def run(self, jobs: Sequence[Job], dry_run: bool = False) -> list[Result]:
    self.manifest = store.Manifest(self.root)
    results, plans = [], []
    for job in jobs:
      try:
        plans.append(self._plan(job))
      except hub.PrepareError as e:
        results.append(Result(job, FAILED, str(e)))
    todo = [p for p in plans if not self.manifest.current(p.job.rel, p.source)]
    pending = {id(p) for p in todo}
    results += [Result(p.job, UP_TO_DATE) for p in plans if id(p) not in pending]
    if dry_run:
      self._dry_run(plans, pending, results)
      return results
    files = size = 0
    for p in todo:
      try:
        n, s = self._write(p)
      except hub.PrepareError as e:
        results.append(Result(p.job, FAILED, str(e)))
        continue
      files, size = files + n, size + s
      results.append(Result(p.job, WRITTEN))
    for r in results:
      if r.state == FAILED:
        self.log(f"  failed {r.job.rel}: {r.why}")
    counts = {s: sum(r.state == s for r in results) for s in (WRITTEN, UP_TO_DATE, FAILED)}
    self.log(("nothing downloaded" if not files else
              f"downloaded {files} file(s), {hub.human(size)}")
             + f": {counts[UP_TO_DATE]} of {len(results)} outputs up to date"
             + "".join(f", {counts[s]} {s}" for s in (WRITTEN, FAILED) if counts[s]))
    return results

  def _dry_run(self, plans, pending, results) -> None:
    total = n = 0
    for p in plans:
      state = "to write" if id(p) in pending else "up to date"
      if p.job.url is not None:
        self.log(f"  {p.job.rel}: {state}, from {p.job.url} (size not listed)")
        n += id(p) in pending and not hub.is_url_cached(p.job.url)
        continue
      if p.snap is None:
        self.log(f"  {p.job.rel}: {state}, from the bundled copy (no download)")
        continue
      parts = []
      for f in (f for fs in p.files for f in fs):
        size = p.snap.sizes.get(f)
        cached = hub.is_cached(p.snap, f)
        if id(p) in pending and not cached:
          total += size or 0
          n += 1
        parts.append(f"{f} ({hub.human(size)}{', cached' if cached else ''})")
      self.log(f"  {p.job.rel}: {state}, from {p.snap.repo_id}@{p.snap.commit[:12]} "
               + ", ".join(parts) + (f"; {p.job.note}" if p.job.note else ""))
    for r in results:
      if r.state == FAILED:
        self.log(f"  {r.job.rel}: would fail: {r.why}")
    self.log(f"dry run: would download {n} file(s), {hub.human(total)}; nothing written")
