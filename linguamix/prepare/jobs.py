"""One output file under the data root = one `Job`; `run` fetches, converts and records.

A job names its repository, the files it needs (each as alternative glob patterns: the
first that matches wins, so a Hub copy that moved `x.json.gz` to `data/x.json.gz` still
resolves) and a conversion from the fetched local files to the output's bytes. Jobs of
one repository share one listing; a repository whose own files lack a pattern is looked
up again at its next revision (`refs/convert/parquet`, the Hub's parquet export).
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
from typing import Callable, Optional, Sequence

from linguamix.prepare import hub, store

# Revisions tried in order: the repository itself, then the Hub's parquet export.
PARQUET = ("main", "refs/convert/parquet")


@dataclasses.dataclass(frozen=True)
class Job:
  rel: str                                   # output, relative to the root
  repo: Optional[str]                        # Hub dataset id; None: bundled file `bundled`
  sources: tuple[tuple[str, ...], ...] = ()  # per needed input: alternative patterns
  convert: Optional[Callable[[list[list[str]]], bytes]] = None  # None: copy the one file
  revisions: tuple[str, ...] = ("main",)
  bundled: Optional[str] = None              # package file copied as is
  note: str = ""                             # how the Hub copy differs, said when written


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


class Runner:
  def __init__(self, root: str, log=print):
    self.root, self.log = root, log
    self.snapshots: dict = {}

  def _snapshot(self, repo: str, revision: str) -> hub.Snapshot:
    key = (repo, revision)
    if key not in self.snapshots:
      self.snapshots[key] = hub.snapshot(repo, "dataset", revision)
    return self.snapshots[key]

  def _plan(self, job: Job) -> _Planned:
    if job.repo is None:
      data = pathlib.Path(job.bundled).read_bytes()
      return _Planned(job, None, [[job.bundled]],
                      {"bundled": job.bundled.split("linguamix/", 1)[-1],
                       "sha256": hashlib.sha256(data).hexdigest()})
    error = None
    for revision in job.revisions:
      snap = self._snapshot(job.repo, revision)
      try:
        files = [snap.find(alts, job.rel) for alts in job.sources]
      except hub.PrepareError as e:
        error = error or e
        continue
      return _Planned(job, snap, files, {"repo": job.repo, "commit": snap.commit,
                                         "files": [f for fs in files for f in fs]})
    raise error

  def run(self, jobs: Sequence[Job], dry_run: bool = False) -> dict:
    manifest = store.Manifest(self.root)
    plans = [self._plan(j) for j in jobs]
    todo = [p for p in plans if not manifest.current(p.job.rel, p.source)]
    stats = {"outputs": len(plans), "up_to_date": len(plans) - len(todo), "written": 0,
             "downloaded_files": 0, "downloaded_bytes": 0}
    if dry_run:
      self._dry_run(plans, todo)
      return stats
    for p in todo:
      if p.snap is None:
        local = p.files
      else:
        fetched, n, size = hub.fetch_all(p.snap, [f for fs in p.files for f in fs], self.log)
        stats["downloaded_files"] += n
        stats["downloaded_bytes"] += size
        local = [[fetched[f] for f in fs] for fs in p.files]
      data = (p.job.convert or copy_of)(local)
      store.write_bytes(store.join(self.root, p.job.rel), data)
      manifest.record(p.job.rel, p.source, len(data))
      stats["written"] += 1
      origin = (f"{p.snap.repo_id}@{p.snap.commit[:12]}" if p.snap else "bundled copy")
      self.log(f"  wrote {p.job.rel} ({hub.human(len(data))}) from {origin}"
               + (f": {p.job.note}" if p.job.note else ""))
    if stats["downloaded_files"] == 0:
      self.log(f"nothing downloaded: {stats['up_to_date']} of {stats['outputs']} outputs up to "
               f"date" + (", the rest from the cache" if todo else ""))
    else:
      self.log(f"downloaded {stats['downloaded_files']} file(s), "
               f"{hub.human(stats['downloaded_bytes'])}; wrote {stats['written']} output(s)")
    return stats

  def _dry_run(self, plans, todo) -> None:
    pending = {id(p) for p in todo}
    total = n = 0
    for p in plans:
      state = "up to date" if id(p) not in pending else "to write"
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
    self.log(f"dry run: would download {n} file(s), {hub.human(total)}; nothing written")
