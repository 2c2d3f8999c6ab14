"""The worker side of stage ``project``: one series -> its whole chunks in the family store.

Both executors run ``work`` in their worker processes (``willis.projections.executor``: a local
process pool; ``willis.projections.dask_executor``: a Dask cluster). A process calls ``init`` once
(stores, data root, params), opens each family store at most once, and writes only the rows of the
series it is given, as whole chunks; the parent journals the result (``willis.projections.workdir``).

Fault injection for tests: env ``WILLIS_PROJECT_DIE_AFTER=N`` makes each worker exit hard after
writing N series (as ``kill -9`` would).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pandas as pd

from willis.params.project import ProjectParams
from willis.projections.store import open_store, write_projection

log = logging.getLogger(__name__)

DIE_AFTER_ENV = "WILLIS_PROJECT_DIE_AFTER"
IN_FLIGHT_PER_WORKER = 3   # bounded submission: the parent never holds every series' file table at once

STATE: dict[str, Any] = {}  # per process: stores, root, params, open groups, series written


def init(stores: dict[str, str], root: str, params: ProjectParams) -> None:
    """Set up this process: ``stores`` family -> store path, the data ``root`` and the params."""
    logging.basicConfig(level=logging.WARNING)
    STATE.update(stores=stores, root=root, params=params, groups={}, written=0)


def ready_for(stores: dict[str, str], params: ProjectParams) -> bool:
    """Whether this process was set up (``init``) for these stores and params."""
    return STATE.get("stores") == stores and STATE.get("params") == params


def work(family: str, row: int, series_row: dict, files: pd.DataFrame) -> tuple[str, str, Any]:
    """Project one series into row ``row`` of its family store: ``(uid, "ok", (instance_z, attrs))``
    or ``(uid, "failed", reason)``; never raises for a bad series."""
    from willis.projections.streaming import ProjectionError, project_series  # imported in the worker

    uid = series_row["SeriesInstanceUID"]
    try:
        proj = project_series(series_row, files, STATE["root"], STATE["params"], family)
        groups = STATE["groups"]
        if family not in groups:  # open each store once per worker
            groups[family] = open_store(STATE["stores"][family], "r+")
        write_projection(groups[family], row, proj)
    except ProjectionError as e:  # a bad series: reported, never stops the run
        return uid, "failed", str(e)
    except Exception as e:  # an unexpected error (a bug, a full disk): keep the traceback in the log too
        log.exception("series %s failed", uid)
        return uid, "failed", f"series {uid}: {type(e).__name__}: {e}"
    STATE["written"] += 1
    die_after = os.environ.get(DIE_AFTER_ENV)
    if die_after and STATE["written"] >= int(die_after):
        os._exit(137)  # fault injection: die like kill -9 (after the chunks, before the parent journals it)
    return uid, "ok", (proj.instance_z.tolist(), proj.attrs)


def task_args(fam: str, row: int, uid: str, by_uid: dict, rows_by_uid: pd.DataFrame) -> tuple:
    """(family, row, series_row dict, files of the series): what ``work`` needs for one series."""
    srow = rows_by_uid.loc[uid].to_dict()
    srow["SeriesInstanceUID"] = uid
    return fam, row, srow, by_uid.get(uid, pd.DataFrame())
