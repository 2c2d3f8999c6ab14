"""The resumable side of stage ``project``: series selection, the work dir's hash, the journal.

The work dir ``<project.work>/project-<hash>/`` lives outside the DVC output (DVC deletes a
stage's outputs before rerunning it). Its hash covers the params that shape the stores, the
index, the decode report and the projection code, so a rerun after a kill finds the same dir
and any change starts a fresh one. The journal (``<family>.journal.jsonl``) gets one line per
finished series, written by the parent only, after that series' chunks were written whole, and
fsynced: a series is done exactly when its line is there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd

from willis.params.project import ProjectParams

log = logging.getLogger(__name__)

HASHED_CODE = ("willis/projections", "willis/dicom")
# how a run is executed, not what it makes: kept out of the work hash and the store attrs (so the
# stores are byte-identical whatever the worker count or executor)
RUN_ONLY_KEYS = ("workers", "executor", "scheduler", "work", "out", "montage_series")


def store_params(params: ProjectParams) -> dict:
    """The project params that shape the stores (the store's ``attrs["params"]``)."""
    p = dataclasses.asdict(params)
    for k in RUN_ONLY_KEYS:
        p.pop(k)
    return p
CODE_ROOT = Path(__file__).resolve().parents[2]  # the checkout holding willis/


def select_series(series: pd.DataFrame, families: tuple[str, ...], excluded: dict[str, list[str]], smoke: bool):
    """-> ({family: sorted uids}, {uid: reason left out})."""
    chosen: dict[str, list[str]] = {f: [] for f in families}
    left_out: dict[str, str] = {}
    for r in series.itertuples(index=False):
        uid = r.SeriesInstanceUID
        if smoke and not bool(getattr(r, "smoke", False)):
            continue  # not a left-out series: smoke runs a subset on purpose
        if uid in excluded:
            left_out[uid] = "excluded by decode_check: " + "; ".join(excluded[uid])
        elif not bool(getattr(r, "has_folder", True)):
            left_out[uid] = "no series folder"
        elif r.family not in chosen:
            left_out[uid] = f"family {r.family!r} not in params families"
        else:
            chosen[r.family].append(uid)
    return {f: sorted(u) for f, u in chosen.items()}, left_out


def _hash_file(h, path: Path) -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)


def work_hash(params: ProjectParams, extra: dict, inputs: list[Path], code_root: Path) -> str:
    """Content hash of what determines the stores (not ``workers``/``executor``: results do not depend on them)."""
    h = hashlib.sha256()
    h.update(json.dumps({"project": store_params(params), **extra}, sort_keys=True).encode())
    for path in inputs:
        _hash_file(h, path)
    for rel in HASHED_CODE:
        base = code_root / rel
        for f in sorted(base.rglob("*.py")) if base.is_dir() else [base] if base.exists() else []:
            h.update(f.relative_to(code_root).as_posix().encode())
            _hash_file(h, f)
    return h.hexdigest()[:16]


def read_journal(path: Path) -> tuple[dict, dict]:
    """-> (done {uid: (instance_z, attrs)}, failed {uid: reason}); a torn last line (kill mid-write) is ignored."""
    done, failed = {}, {}
    if not path.exists():
        return done, failed
    for line in path.read_text().splitlines():
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s: ignoring a torn journal line (the run was killed while writing it)", path)
            continue
        if e["status"] == "ok":
            done[e["uid"]] = (e["instance_z"], e["attrs"])
        else:
            failed[e["uid"]] = e["reason"]
    return done, failed


def append(journal, entry: dict) -> None:
    journal.write(json.dumps(entry) + "\n")
    journal.flush()
    os.fsync(journal.fileno())


def record_result(state: dict, journals: dict, fam: str, uid: str, status: str, payload: Any) -> None:
    """Parent only: remember a finished series and journal it (after its chunks were written whole)."""
    if status == "ok":
        state[fam]["done"][uid] = payload
        append(journals[fam], {"uid": uid, "status": "ok", "instance_z": payload[0], "attrs": payload[1]})
    else:
        state[fam]["failed"][uid] = payload
        append(journals[fam], {"uid": uid, "status": "failed", "reason": payload})
        log.warning("%s", payload)
