"""The MR sub-modality (MRA / MRI T2 / MRI T1post) guessed from one DICOM header.

The MR model takes the CSV sub-modality as an input, but the competition's test data has no CSV
and the DICOM ``Modality`` tag only says MR; ``mr_submodality`` documents the rules.
"""

from __future__ import annotations

# MR sub-modality heuristic (see mr_submodality). Echo time of a T2-weighted spin echo is long
# (typically 80-120 ms); TOF-MRA and contrast-enhanced T1 gradient echoes have TE < 10 ms.
TE_T2_MIN_MS = 60.0
MR_DEFAULT = "MRA"
# description words of a T1-weighted series (the label set's only T1 class is MRI T1post)
T1_WORDS = ("T1", "MPRAGE", "MP-RAGE", "SPGR", "BRAVO")

# the header tags the rules read (pydicom specific_tags: everything else, pixels included, is skipped)
MR_TAGS = ["SeriesDescription", "ProtocolName", "SequenceName", "AngioFlag", "ContrastBolusAgent", "EchoTime",
           "SharedFunctionalGroupsSequence"]


def _echo_time(ds) -> float | None:
    """EchoTime (ms): top level (classic) or inside the shared functional groups (Enhanced MR);
    the first value when several echoes are listed; None when absent or unreadable."""
    for get in (lambda: ds.EchoTime, lambda: ds.SharedFunctionalGroupsSequence[0].MREchoSequence[0].EffectiveEchoTime):
        try:
            value = get()
            value = value[0] if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else value
            if value not in (None, ""):
                return float(value)
        except (AttributeError, IndexError, KeyError, TypeError, ValueError):
            continue
    return None


def mr_submodality(ds) -> tuple[str, str]:
    """Guess the CSV sub-modality of an MR series from one header: ``(modality, why)``.

    Heuristic, in order (not validated on the real hidden set; the real DICOMs are anonymised and
    may lack the descriptive tags, in which case the default decides):
      1. SeriesDescription / ProtocolName / SequenceName text: TOF, MRA, ANGIO -> MRA; T2 or FLAIR ->
         MRI T2; T1 (or MPRAGE, SPGR, BRAVO) -> MRI T1post, with or without POST / +C / GAD: the
         dataset's label set has no pre-contrast T1, so a T1-weighted head series in it is MRI T1post.
      2. AngioFlag == 'Y' -> MRA.
      3. EchoTime >= TE_T2_MIN_MS (60 ms; T2 spin echoes use ~80-120 ms) -> MRI T2.
      4. ContrastBolusAgent present (TE short) -> MRI T1post.
      5. AngioFlag == 'N' (the scanner states it is not an angiogram; Siemens writes it on every
         series) with a short or unknown TE -> MRI T1post, the label set's one non-angiographic,
         non-T2 class (a real sagittal ``t1_fl2d_sag`` says AngioFlag N, TE 2.46 ms).
      6. otherwise MRA, the most common MR sub-modality in train.csv (1,252 of 2,540 MR series).
    """
    text = " ".join(str(ds.get(t, "") or "") for t in ("SeriesDescription", "ProtocolName", "SequenceName")).upper()
    if any(k in text for k in ("TOF", "MRA", "ANGIO")):
        return "MRA", f"description {text.strip()!r}"
    if any(k in text for k in ("T2", "FLAIR")):
        return "MRI T2", f"description {text.strip()!r}"
    if any(k in text for k in T1_WORDS):
        return "MRI T1post", f"description {text.strip()!r}"
    angio = str(ds.get("AngioFlag", "") or "").strip().upper()
    if angio == "Y":
        return "MRA", "AngioFlag=Y"
    te = _echo_time(ds)
    if te is not None and te >= TE_T2_MIN_MS:
        return "MRI T2", f"EchoTime {te:g} ms >= {TE_T2_MIN_MS:g}"
    if str(ds.get("ContrastBolusAgent", "") or "").strip():
        return "MRI T1post", "ContrastBolusAgent present"
    if angio == "N":
        return "MRI T1post", "AngioFlag=N and a short or unknown EchoTime: not an angiogram, not T2"
    return MR_DEFAULT, "no distinguishing header; default"
