"""The header-only series index (stage ``index``), one concept per module:

* ``willis.index.scan``: ``scan_series`` (the headers of one series folder -> its record and files
  table; ``predict`` reuses it) and ``scan_all`` (every folder, in worker processes);
* ``willis.index.volumes``: ``choose_volume`` (one volume of a 4-D group) and ``tilt_degrees``;
* ``willis.index.csvs``: ``read_train_csv`` / ``read_localizers_csv`` (validated; ``CsvError``);
* ``willis.index.tables``: the tables: column constants, the CSV / localizer joins, ``validate_index``
  and the stage entry ``build_index``. Its docstring is the schema (the artifact contract).

The public names are re-exported here.
"""

from willis.index.csvs import CsvError, read_localizers_csv, read_train_csv
from willis.index.scan import (
    FILES_COLUMNS,
    FLAGS,
    GAP_RATIO,
    NAN2,
    NAN3,
    NAN6,
    ORIENT_TOL,
    POSITION_DECIMALS,
    scan_all,
    scan_series,
)
from willis.index.tables import (
    LOCALIZER_COLUMNS,
    SERIES_COLUMNS,
    build_index,
    join_csv,
    join_localizers,
    validate_index,
)
from willis.index.volumes import choose_volume, tilt_degrees

__all__ = [
    "CsvError",
    "FILES_COLUMNS",
    "FLAGS",
    "GAP_RATIO",
    "LOCALIZER_COLUMNS",
    "NAN2",
    "NAN3",
    "NAN6",
    "ORIENT_TOL",
    "POSITION_DECIMALS",
    "SERIES_COLUMNS",
    "build_index",
    "choose_volume",
    "join_csv",
    "join_localizers",
    "read_localizers_csv",
    "read_train_csv",
    "scan_all",
    "scan_series",
    "tilt_degrees",
    "validate_index",
]
