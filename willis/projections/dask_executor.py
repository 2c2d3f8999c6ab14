"""``project.executor: dask``: the same tasks on a Dask distributed cluster, one task per series.

Each task projects one series and writes its whole chunks straight into the store (the same
``willis.projections.worker.work`` as the local executor; each Dask worker process opens a store
once and keeps it). The
parent still journals every finished series and finalizes the stores, so resuming, failure
reporting and the store contents are exactly those of ``executor: local``.

``project.scheduler``: the address of a running scheduler (``tcp://host:8786``); then
``project.work`` must be a path every worker can write (shared file system). Empty: a
``LocalCluster`` of ``project.workers`` single-threaded processes on this machine.
Needs ``dask[distributed]`` (an optional dependency).
"""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm import tqdm

from willis.params.project import ProjectParams
from willis.projections import worker
from willis.projections.workdir import record_result

log = logging.getLogger(__name__)


def _dask_work(stores: dict[str, str], root: str, params: ProjectParams, fam: str, row: int, srow: dict, files):
    """Runs on a Dask worker: set up the per-process state once, then the shared ``worker.work``."""
    if not worker.ready_for(stores, params):
        worker.init(stores, root, params)
    return worker.work(fam, row, srow, files)


def run_tasks_dask(tasks, state, by_uid, rows_by_uid, root: Path, params: ProjectParams) -> None:
    if not tasks:
        return
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError as e:
        raise RuntimeError("project.executor is 'dask' but dask[distributed] is not installed: "
                           "pip install 'dask[distributed]'") from e
    stores = {f: str(s["store"]) for f, s in state.items()}
    journals = {f: open(s["journal"], "a") for f, s in state.items()}
    cluster = None
    try:
        if params.scheduler:
            client = Client(params.scheduler)
        else:
            cluster = LocalCluster(n_workers=params.workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            client = Client(cluster)
        with client, tqdm(total=len(tasks), desc="project (dask)", unit="series") as bar:
            window = max(1, params.workers * worker.IN_FLIGHT_PER_WORKER)
            it = iter(tasks)
            family_of = {}

            def submit_next(ac) -> None:
                for fam, row, uid in it:
                    args = worker.task_args(fam, row, uid, by_uid, rows_by_uid)
                    fut = client.submit(_dask_work, stores, str(root), params, *args, key=f"project-{fam}-{uid}", pure=False)
                    family_of[fut.key] = fam
                    ac.add(fut)
                    return

            ac = as_completed([])
            for _ in range(window):
                submit_next(ac)
            for fut in ac:
                uid, status, payload = fut.result()
                record_result(state, journals, family_of.pop(fut.key), uid, status, payload)
                bar.update(1)
                submit_next(ac)
    finally:
        for j in journals.values():
            j.close()
        if cluster is not None:
            cluster.close()
