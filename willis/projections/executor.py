"""Stage ``project``: every selected series -> its family store, in parallel, resumable.

Flow (``run_project``):

1. select series from ``data/index/series.parquet``: its family, a folder on disk, not excluded
   by decode_check, ``smoke == True`` when the ``smoke`` param is on. Every series left out is
   listed with its reason in ``reports/project.json``.
2. the work dir ``<project.work>/project-<hash>/`` (gitignored, OUTSIDE the DVC output, which
   DVC deletes before a rerun) holds ``<family>.zarr`` and ``<family>.journal.jsonl``. The hash
   covers the params, the index, the decode report and this package's code, so a rerun after a
   kill finds the same dir and a change of anything starts a fresh one.
3. worker processes (``spawn``: Zarr runs an event-loop thread, which ``fork`` would not copy)
   open the store once each and write the whole chunks of their own series only; the parent
   appends one journal line per finished series (after its chunks are written) and fsyncs it.
   A rerun skips every series in the journal, so only unfinished series are redone.
4. the parent finalizes each store once (instance_z, attrs, consolidated metadata), validates it
   and renames it to ``<project.out>/<family>.zarr``; then the montage PNGs.

A series that fails is recorded (journal, store attrs ``failed``, ``reports/project.json``) and
the run goes on. A worker that dies (killed, out of memory) stops the run with an error; rerun it.
What a worker does with one series is ``willis.projections.worker`` (shared with the Dask executor).
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from tqdm import tqdm

from willis.decode_check import load_exclusions
from willis.index.tables import index_path, read_index
from willis.params.project import ProjectParams
from willis.projections import worker
from willis.projections.store import create_store, family_path, finalize_store, validate_store
from willis.projections.windows import channel_defs, channel_names
from willis.projections.worker import IN_FLIGHT_PER_WORKER, task_args
from willis.projections.workdir import CODE_ROOT, read_journal, record_result, select_series, store_params, work_hash

log = logging.getLogger(__name__)


class ProjectInterrupted(RuntimeError):
    """The run stopped before every series was projected (a worker died); a rerun resumes it."""


# ---------------------------------------------------------------- parent

def run_project(
    params: ProjectParams,
    *,
    index_dir: str | Path,
    decode_report: str | Path,
    root: str | Path,
    families: tuple[str, ...],
    smoke: bool,
    report_path: str | Path = "reports/project.json",
    montage_dir: str | Path | None = "reports/projections",
    code_root: str | Path = CODE_ROOT,
) -> dict:
    """Project every selected series into ``<params.out>/<family>.zarr``; returns the report dict."""
    t0 = time.perf_counter()
    index_dir, root = Path(index_dir), Path(root)
    series = read_index(index_dir, "series")
    excluded = load_exclusions(decode_report)
    chosen, left_out = select_series(series, families, excluded, smoke)
    key = work_hash(params, {"smoke": smoke, "root": str(root), "families": list(families)},
                    [index_path(index_dir, "series"), index_path(index_dir, "files"), Path(decode_report)],
                    Path(code_root))
    work = Path(params.work) / f"project-{key}"
    work.mkdir(parents=True, exist_ok=True)
    log.info("work dir %s (resumable)", work)

    files = read_index(index_dir, "files")
    want = set().union(*chosen.values()) if chosen else set()
    by_uid = {u: g for u, g in files[files["SeriesInstanceUID"].isin(want)].groupby("SeriesInstanceUID")}
    rows_by_uid = series.set_index("SeriesInstanceUID")

    state = {}
    tasks = []
    for fam, uids in chosen.items():
        store, journal = family_path(work, fam), work / f"{fam}.journal.jsonl"
        done, failed = read_journal(journal)
        if not (store / "zarr.json").exists() or not journal.exists():
            create_store(store, fam, uids, channel_names(fam, params.vesselness), params.size, params.instances,
                         store_params(params), channel_defs(fam, params.vesselness))
            journal.write_text("")
            done, failed = {}, {}
        state[fam] = {"store": store, "journal": journal, "done": done, "failed": failed}
        todo = [u for u in uids if u not in done and u not in failed]
        log.info("%s: %d series, %d already done, %d to project", fam, len(uids), len(done) + len(failed), len(todo))
        row_of = {u: i for i, u in enumerate(uids)}
        tasks += [(fam, row_of[u], u) for u in todo]

    if params.executor == "dask":
        from willis.projections.dask_executor import run_tasks_dask

        run_tasks_dask(tasks, state, by_uid, rows_by_uid, root, params)
    else:
        _run_tasks(tasks, state, by_uid, rows_by_uid, root, params)

    report: dict[str, Any] = {"totals": {}, "failed": {}, "left_out": left_out}
    out = Path(params.out)
    out.mkdir(parents=True, exist_ok=True)
    for fam, st in state.items():
        finalize_store(st["store"], st["done"], st["failed"])
        counts = validate_store(st["store"])
        dest = family_path(out, fam)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(st["store"], dest)
        report["failed"].update(st["failed"])
        report["totals"][fam] = {"series": counts["series"], "complete": counts["complete"], "failed": counts["failed"]}
    report["totals"]["left_out"] = len(left_out)
    # the wall time goes to the log, never into the report: a tracked output must be byte-identical
    # across identical runs, or no cache can ever restore it (docs/reproducibility.md)
    log.info("project: %d series in %.1f s", sum(report["totals"][f]["series"] for f in state),
             time.perf_counter() - t0)
    shutil.rmtree(work)
    Path(report_path).parent.mkdir(parents=True, exist_ok=True)
    Path(report_path).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    if montage_dir is not None and params.montage_series > 0:
        from willis.projections.montage import write_montages

        write_montages(out, index_dir, montage_dir, families, params.montage_series)
    return report


def _run_tasks(tasks, state, by_uid, rows_by_uid, root: Path, params: ProjectParams) -> None:
    if not tasks:
        return
    stores = {f: str(s["store"]) for f, s in state.items()}
    journals = {f: open(s["journal"], "a") for f, s in state.items()}
    ctx = mp.get_context("spawn")
    pending: set = set()
    it = iter(tasks)
    try:
        with ProcessPoolExecutor(params.workers, mp_context=ctx, initializer=worker.init,
                                 initargs=(stores, str(root), params)) as pool, \
                tqdm(total=len(tasks), desc="project", unit="series") as bar:
            def submit_next() -> bool:
                for fam, row, uid in it:
                    fut = pool.submit(worker.work, *task_args(fam, row, uid, by_uid, rows_by_uid))
                    fut.family = fam  # type: ignore[attr-defined]
                    pending.add(fut)
                    return True
                return False

            for _ in range(params.workers * IN_FLIGHT_PER_WORKER):
                submit_next()
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    pending.discard(fut)
                    try:
                        uid, status, payload = fut.result()
                    except BrokenProcessPool as e:
                        raise ProjectInterrupted(
                            f"a worker process died (killed or out of memory); {sum(len(s['done']) + len(s['failed']) for s in state.values())} "
                            f"series are journaled in {Path(next(iter(stores.values()))).parent}: rerun to resume") from e
                    record_result(state, journals, fut.family, uid, status, payload)  # type: ignore[attr-defined]
                    bar.update(1)
                    submit_next()
    finally:
        for j in journals.values():
            j.close()
