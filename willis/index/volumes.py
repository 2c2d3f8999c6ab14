"""One volume out of a 4-D group: frames that share a slice position are never all kept.

A consistent group (one series, modality, shape and orientation) can still hold several frames per
position: Enhanced MR with positions x dynamics, classic series with several echoes, acquisitions
or temporal positions. Interpolating between them (what a resampler does with duplicates) mixes
different images, so ``choose_volume`` keeps exactly one frame per position:

1. The first key of ``willis.dicom.geometry.SPLIT_KEYS`` (TemporalPositionIndex,
   TemporalPositionIdentifier, EchoNumbers, EffectiveEchoTime, DiffusionBValue, TriggerTime,
   AcquisitionNumber, StackID, DimensionIndexValues less the in-stack position) that every frame
   carries, that takes exactly as many values as frames share the most crowded position, and under
   which no two frames of one value share a position, splits the group; failing that, all such keys together. The kept volume is the value
   with the most frames, ties to the lowest value: normally the first dynamic / echo. The others
   are set aside, each with ``4-D series: <key> <value> set aside (kept <key> <kept value>)``, and
   the choice is recorded (``volume_choice``, e.g. ``TemporalPositionIndex 1 of 4 values``).
2. Duplicates no key tells apart (two copies of a slice, or volumes without any index) keep the
   first frame by (InstanceNumber, path, frame) at each position, set the rest aside
   (``duplicate position ...``) and flag ``duplicate_positions``. All frames at ONE position stay
   ``positions_identical`` (the series is excluded by the decode check).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from willis.dicom.geometry import SPLIT_KEYS

POSITION_DECIMALS = 3    # positions equal to 1 micrometre count as one slice position


def _unique_positions(frames: list[dict]) -> bool:
    pos = [round(f["position"], POSITION_DECIMALS) for f in frames]
    return len(set(pos)) == len(pos)


def _sortable(v):
    """Values of one key compare among themselves; str() keeps mixed types from raising."""
    return (0, v) if isinstance(v, (int, float)) else (1, str(v))


def _split(frames: list[dict], key) -> dict | None:
    """value -> frames when ``key`` (one name or a tuple of names) separates every shared position."""
    names = key if isinstance(key, tuple) else (key,)
    values = [tuple(f[n] for n in names) for f in frames]
    if any(v is None for vs in values for v in vs) or len(set(values)) < 2:
        return None
    groups: dict = defaultdict(list)
    for v, f in zip(values, frames):
        groups[v if len(names) > 1 else v[0]].append(f)
    # as many volumes as frames share the most crowded position: a key that also varies WITHIN a
    # volume (e.g. an AcquisitionNumber per slice) would split one volume into slices
    crowd = max(np.unique(np.round([f["position"] for f in frames], POSITION_DECIMALS), return_counts=True)[1])
    if len(groups) != crowd:
        return None
    return groups if all(_unique_positions(g) for g in groups.values()) else None


def choose_volume(frames: list[dict]) -> tuple[list[dict], list[tuple[dict, str]], str, list[str]]:
    """``frames`` (with ``position``) -> (kept, [(frame, reason) set aside], volume_choice, flags)."""
    if _unique_positions(frames):
        return frames, [], "", []
    varying = [k for k in SPLIT_KEYS if _split(frames, k) is not None]
    key = varying[0] if varying else None
    groups = _split(frames, key) if key else None
    if groups is None:
        present = tuple(k for k in SPLIT_KEYS
                        if all(f[k] is not None for f in frames) and len({f[k] for f in frames}) > 1)
        if len(present) > 1:
            groups, key = _split(frames, present), present
    if groups is not None:
        ranked = sorted(groups, key=lambda v: (-len(groups[v]), _sortable(v)))
        best = ranked[0]
        name = "+".join(key) if isinstance(key, tuple) else key
        aside = [(f, f"4-D series: {name} {v} set aside (kept {name} {best}: one volume per position)")
                 for v in ranked[1:] for f in groups[v]]
        choice = f"{name} {best} of {len(groups)} values"
        kept = groups[best]
        if not _unique_positions(kept):   # cannot happen: _split checked it
            raise AssertionError("volume split left duplicate positions")
        return kept, aside, choice, []
    return _first_per_position(frames)


def _first_per_position(frames: list[dict]) -> tuple[list[dict], list[tuple[dict, str]], str, list[str]]:
    by_pos: dict = defaultdict(list)
    for f in frames:
        by_pos[round(f["position"], POSITION_DECIMALS)].append(f)
    if len(by_pos) == 1:        # all at one position: nothing to choose, the series is unusable
        return frames, [], "", ["positions_identical"]
    kept, aside = [], []
    for p, group in by_pos.items():
        group = sorted(group, key=lambda f: (f["instance_number"], f["path"], f["frame"]))
        first = group[0]
        kept.append(first)
        where = first["path"] + (f" frame {first['frame']}" if first["n_frames"] > 1 else "")
        aside += [(f, f"duplicate position {p:.3f} mm: kept {where} (no temporal, echo, acquisition or stack "
                      "index tells these frames apart)") for f in group[1:]]
    return kept, aside, "first frame per position", ["duplicate_positions"]


def tilt_degrees(kept: list[dict], normal: np.ndarray) -> float:
    """Angle (deg) between the slice normal and the line through the slice origins: gantry tilt.

    0 for an ordinary stack (slices move along their normal); NaN with fewer than two positions.
    """
    if len(kept) < 2:
        return float("nan")
    ordered = sorted(kept, key=lambda f: f["position"])
    d = np.asarray(ordered[-1]["ipp"], float) - np.asarray(ordered[0]["ipp"], float)
    n = np.linalg.norm(d)
    if n < 1e-6:
        return float("nan")
    return float(np.degrees(np.arccos(min(1.0, abs(float(np.dot(d / n, normal)))))))
