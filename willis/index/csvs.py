"""``train.csv`` and ``train_localizers.csv``, read as text and validated before anything is joined.

Both files are read with every column as a string (pandas never guesses a type, so a label ``yes``
cannot turn into a parser traceback), then checked; all findings (up to ``MAX_ERRORS``) are raised
together as one ``CsvError`` whose lines name the file, the line number (the header is line 1),
the SeriesInstanceUID and the column:

* ``train.csv``: exactly the columns of ``willis.labels.CSV_COLUMNS`` (none missing, none extra),
  a non-empty SeriesInstanceUID, Modality one of ``MODALITIES``, every label 0 or 1 (``0.0`` /
  ``1.0`` accepted), PatientAge a whole number or empty; no SeriesInstanceUID twice (named by UID);
* ``train_localizers.csv``: exactly ``LOCALIZER_COLUMNS``, non-empty UIDs, ``location`` one of the
  13 ``LOCATIONS``, ``coordinates`` a dict literal with numeric ``x`` and ``y`` (and an integer
  ``f`` >= 0 for a multi-frame file).

Returned: the train.csv table with labels as int and PatientAge as int (-1 when empty), and the
localizer table as read (strings).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd

from willis.labels import CSV_COLUMNS, LABELS, LOCALIZER_COLUMNS, LOCATIONS, MODALITIES

MAX_ERRORS = 20


class CsvError(ValueError):
    """A train.csv / train_localizers.csv that breaks its contract; one line per finding."""


def _read(path: Path, expected: tuple[str, ...]) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as e:  # noqa: BLE001 - unparseable CSV (quotes, encoding): name the file
        raise CsvError(f"{path}: not a readable CSV: {type(e).__name__}: {e}") from e
    missing = [c for c in expected if c not in df.columns]
    extra = [c for c in df.columns if c not in expected]
    if missing or extra:
        raise CsvError(f"{path}: columns must be exactly {list(expected)}; missing {missing}, unexpected {extra}")
    return df[list(expected)]


def _raise(path: Path, errors: list[str]) -> None:
    if errors:
        more = f"\n... and {len(errors) - MAX_ERRORS} more" if len(errors) > MAX_ERRORS else ""
        raise CsvError(f"{path}: {len(errors)} invalid value(s):\n" + "\n".join(errors[:MAX_ERRORS]) + more)


def _where(path: Path, i: int, uid: str, column: str) -> str:
    return f"{path.name} line {i + 2} (SeriesInstanceUID {uid or '(empty)'}), column {column!r}"


def _binary(text: str) -> int | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return int(v) if v in (0.0, 1.0) else None


def read_train_csv(path: str | Path) -> pd.DataFrame:
    """train.csv, validated (see the module doc); labels and PatientAge as int."""
    path = Path(path)
    df = _read(path, CSV_COLUMNS)
    errors = []
    uids = df["SeriesInstanceUID"].str.strip()
    for i, uid in enumerate(uids):
        if not uid:
            errors.append(f"{_where(path, i, uid, 'SeriesInstanceUID')}: empty")
    for i, (uid, m) in enumerate(zip(uids, df["Modality"])):
        if m not in MODALITIES:
            errors.append(f"{_where(path, i, uid, 'Modality')}: {m!r} is not one of {list(MODALITIES)}")
    labels = {}
    for c in LABELS:
        values = [_binary(v) for v in df[c]]
        for i, (uid, raw, v) in enumerate(zip(uids, df[c], values)):
            if v is None:
                errors.append(f"{_where(path, i, uid, c)}: {raw!r} is not 0 or 1")
        labels[c] = [-1 if v is None else v for v in values]
    ages = pd.to_numeric(df["PatientAge"].where(df["PatientAge"].str.strip() != ""), errors="coerce")
    for i, (uid, raw, age) in enumerate(zip(uids, df["PatientAge"], ages)):
        if raw.strip() and (pd.isna(age) or float(age) != int(age)):
            errors.append(f"{_where(path, i, uid, 'PatientAge')}: {raw!r} is not a whole number")
    _raise(path, errors)
    dup = uids[uids.duplicated()].tolist()
    if dup:
        raise CsvError(f"train.csv: {len(dup)} duplicated SeriesInstanceUID row(s), e.g. {dup[:5]}")
    out = df.assign(SeriesInstanceUID=uids, PatientAge=ages.fillna(-1).astype(int))
    for c in LABELS:
        out[c] = labels[c]
    return out


def read_localizers_csv(path: str | Path) -> pd.DataFrame:
    """train_localizers.csv, validated (see the module doc); an absent file is an empty table."""
    path = Path(path)
    if not path.exists():
        return pd.DataFrame(columns=list(LOCALIZER_COLUMNS))
    df = _read(path, LOCALIZER_COLUMNS)
    errors = []
    for i, r in enumerate(df.itertuples(index=False)):
        uid = r.SeriesInstanceUID.strip()
        for c in ("SeriesInstanceUID", "SOPInstanceUID"):
            if not getattr(r, c).strip():
                errors.append(f"{_where(path, i, uid, c)}: empty")
        if r.location not in LOCATIONS:
            errors.append(f"{_where(path, i, uid, 'location')}: {r.location!r} is not one of the 13 locations")
        why = _coordinates_problem(r.coordinates)
        if why:
            errors.append(f"{_where(path, i, uid, 'coordinates')}: {r.coordinates!r}: {why}")
    _raise(path, errors)
    return df


def _coordinates_problem(text: str) -> str:
    try:
        c = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return "not a dict literal such as {'x': 258.3, 'y': 261.4}"
    if not isinstance(c, dict):
        return "not a dict literal such as {'x': 258.3, 'y': 261.4}"
    for k in ("x", "y"):
        if isinstance(c.get(k), bool) or not isinstance(c.get(k), (int, float)):
            return f"{k!r} missing or not a number"
    if "f" in c and (isinstance(c["f"], bool) or not isinstance(c["f"], int) or c["f"] < 0):
        return "'f' (frame) must be an integer >= 0"
    return ""
