"""The manifest of what `prepare` fetches: `manifest.json` beside this file.

One entry per dataset, benchmark and checkpoint: where it comes from, its file tree as
published (with a few records in its real field names and quirks), licence, gating, and
the evidence each layout claim was checked against (source and date; claims that could
not be checked say so). The prepare tables keep their own file patterns: the tests serve
this manifest's trees from a loopback Hub, so a layout change on the Hub is one edit
here and a failing test, never a silent wrong read.
"""

from __future__ import annotations

import functools
import json
import pathlib

PATH = pathlib.Path(__file__).with_name("manifest.json")


@functools.lru_cache(maxsize=1)
def load() -> dict:
  with open(PATH, encoding="utf-8") as f:
    return json.load(f)


def entries() -> dict[str, dict]:
  return {e["name"]: e for e in load()["entries"]}


def entry(name: str) -> dict | None:
  return entries().get(name)


def by_repo(repo_id: str) -> dict | None:
  """The checkpoint (or dataset) entry whose Hub repository is `repo_id`."""
  return next((e for e in load()["entries"] if e["source"].get("hub") == repo_id), None)


def terms(e: dict | None) -> str:
  """'licence X (non-commercial); gated: yes' -- what a user must know before downloading."""
  if e is None:
    return "licence and gating: not in linguamix's manifest, read the repository's card"
  gated = {True: "yes (accept the terms on the page, then set HF_TOKEN)", False: "no"}.get(
      e["gated"], "not verified (a refusal names the page to accept)")
  nc = " (non-commercial)" if e.get("non_commercial") else ""
  return f"licence {e['licence']}{nc}; gated: {gated}"
