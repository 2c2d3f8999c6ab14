"""willis.decode_check: every kind of bad input gets its exact status, and the run always completes."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file
from index.test_tables import csv_row, write_csv, write_one

from willis.decode_check import (DecodeCheckError, check_series, load_exclusions, run_decode_check, usable_uids)
from willis.index import build_index, scan_series

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _testfile(name: str) -> Path:
    p = get_testdata_file(name, download=False)
    if p is None:
        pytest.skip(f"pydicom test file {name} not shipped")
    return Path(p)


def _folder_of(root: Path, uid: str, names: list[str]) -> None:
    d = root / "series" / uid
    d.mkdir(parents=True)
    for i, n in enumerate(names):
        shutil.copy(_testfile(n), d / f"{i}_{n}")


def _truncate(path: Path, keep: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - keep])


# uid -> (expected status, reason kinds that must appear)
EXPECTED = {
    "1.1.1": ("ok", set()),                                          # clean CT, 3 single-frame files
    "1.1.2": ("ok", set()),                                          # clean multi-frame MR (JPEG 2000)
    "1.1.3": ("partial", {"unreadable file"}),                        # + a text file
    "1.1.4": ("partial", {"set aside"}),                              # + a colour image
    "1.1.5": ("partial", {"decode failed"}),                          # middle slice's JPEG 2000 stream corrupt
    "1.1.6": ("partial", {"geometry"}),                      # ImagePositionPatient removed
    "1.1.7": ("excluded", {"unusable"}),                              # all slices at one position
    "1.1.8": ("excluded", {"unreadable file", "unusable"}),           # no_meta, rtstruct, zipMR.gz, badVR
    "1.1.9": ("excluded", {"set aside", "unusable"}),                 # MR_truncated.dcm only
    "1.1.10": ("ok", set()),                                          # real JPEG-LS MR file (gdcm decodes it)
    "1.1.11": ("partial", {"geometry"}),                     # image_dfl.dcm as MR (deflate, no geometry)
    "1.1.12": ("ok", {"not in train.csv"}),                           # orphan folder
    "1.1.13": ("excluded", {"no folder"}),                            # csv row, no folder
    "1.1.14": ("ok", set()),                                          # real CT file (CT_small.dcm)
    "1.1.15": ("excluded", {"unusable"}),                             # 4 encodings of one MR slice: one position
    "1.1.16": ("partial", {"set aside"}),                             # a native file cut short (found unread)
    "1.1.17": ("partial", {"set aside"}),                             # a file without Pixel Data
    "1.1.18": ("partial", {"set aside"}),                             # + 2 slices of another shape and a scout
}


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dc")
    root = tmp / "data"
    write_one(root, "1.1.1", n=3, matrix=32)
    write_one(root, "1.1.2", modality="MRA", n=5, matrix=32, multiframe=True, encoding="jpeg2000")
    d, _ = write_one(root, "1.1.3", n=3)
    (d / "README.txt").write_text("not an image")
    d, _ = write_one(root, "1.1.4", n=3)
    shutil.copy(_testfile("SC_rgb_rle.dcm"), d / "colour.dcm")
    d, _ = write_one(root, "1.1.5", n=3, matrix=32, encoding="jpeg2000")
    rec, files = scan_series(d, root)
    victim = root / files.sort_values("order")["path"].iloc[1]
    data = bytearray(victim.read_bytes())
    soc = data.find(b"\xff\x4f\xff\x51")            # JPEG 2000 SOC + SIZ markers: break the codestream header
    data[soc:soc + 40] = bytes(40)
    victim.write_bytes(bytes(data))
    d, _ = write_one(root, "1.1.16", n=4)
    _truncate(sorted(d.iterdir())[1], 100)
    d, _ = write_one(root, "1.1.17", n=4)
    ds = pydicom.dcmread(sorted(d.iterdir())[2])
    del ds.PixelData
    ds.save_as(sorted(d.iterdir())[2])
    write_one(root, "1.1.18", n=4, matrix=16)
    write_one(root, "1.1.18", n=2, matrix=12, uid_salt="other")
    write_one(root, "1.1.18", n=1, matrix=16, plane="sagittal", uid_salt="scout",
              extra_tags={"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]})
    d, _ = write_one(root, "1.1.6", n=3)
    for p in d.iterdir():
        ds = pydicom.dcmread(p)
        del ds.ImagePositionPatient
        ds.save_as(p)
    write_one(root, "1.1.7", n=3, spacing=0.0)
    _folder_of(root, "1.1.8", ["no_meta.dcm", "rtstruct.dcm", "zipMR.gz", "badVR.dcm"])
    _folder_of(root, "1.1.9", ["MR_truncated.dcm"])
    _folder_of(root, "1.1.10", ["MR_small_jpeg_ls_lossless.dcm"])
    _folder_of(root, "1.1.14", ["CT_small.dcm"])
    _folder_of(root, "1.1.15", ["MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm"])
    _folder_of(root, "1.1.11", ["image_dfl.dcm"])
    (dfl,) = (root / "series" / "1.1.11").iterdir()
    ds = pydicom.dcmread(dfl)                        # a Secondary Capture: relabelled MR, still deflated
    ds.SOPClassUID, ds.Modality = "1.2.840.10008.5.1.4.1.1.4", "MR"
    ds.save_as(dfl, enforce_file_format=True)
    assert pydicom.dcmread(dfl).file_meta.TransferSyntaxUID == pydicom.uid.DeflatedExplicitVRLittleEndian
    write_one(root, "1.1.12", n=3)
    rows = [csv_row(u, "MRA" if u in ("1.1.2", "1.1.9", "1.1.10", "1.1.11", "1.1.15") else "CTA", int(u.endswith(("1", "3", "5"))))
            for u in EXPECTED if u != "1.1.12"]
    write_csv(root, rows)
    build_index(root, tmp / "index", workers=1, val_fraction=0.2, test_fraction=0.2,
                smoke_sizes={"train": 2, "val": 1, "test": 1}, seed=0)
    report, metrics = tmp / "reports" / "dc.json", tmp / "reports" / "dc_metrics.json"
    run_decode_check(tmp / "index", root, report, metrics, workers=2, max_excluded_fraction=0.5)
    return root, tmp, report, metrics


@pytest.mark.parametrize("uid", list(EXPECTED))
def test_each_bad_input_gets_its_exact_status(checked, uid):
    _, _, report, _ = checked
    entry = json.loads(report.read_text())["series"][uid]
    status, kinds = EXPECTED[uid]
    assert entry["status"] == status, entry["reasons"]
    got_kinds = {r.split(":")[0] for r in entry["reasons"]}
    assert kinds <= got_kinds, entry["reasons"]
    if status == "ok" and not kinds:
        assert entry["reasons"] == []


def test_reasons_name_the_file(checked):
    _, _, report, _ = checked
    rep = json.loads(report.read_text())["series"]
    assert any("README.txt" in r and "not a DICOM file" in r for r in rep["1.1.3"]["reasons"])
    assert any("colour.dcm" in r and "SamplesPerPixel" in r for r in rep["1.1.4"]["reasons"])
    assert any("MR_truncated.dcm" in r and "file truncated" in r for r in rep["1.1.9"]["reasons"])
    assert any("file truncated" in r for r in rep["1.1.16"]["reasons"])
    assert any("no Pixel Data element" in r for r in rep["1.1.17"]["reasons"])
    assert any("12x12 differs" in r for r in rep["1.1.18"]["reasons"])
    assert any("localizer image" in r for r in rep["1.1.18"]["reasons"])
    assert any("decode failed" in r and "frame 0" in r for r in rep["1.1.5"]["reasons"])
    assert any("badVR.dcm" in r and "NumberOfFrames" in r for r in rep["1.1.8"]["reasons"])


def test_totals_metrics_and_readers(checked):
    _, _, report, metrics = checked
    rep = json.loads(report.read_text())
    want = {s: sum(v[0] == s for v in EXPECTED.values()) for s in ("ok", "partial", "excluded")}
    assert rep["totals"]["status"] == want
    assert rep["orphans"] == ["1.1.12"] and rep["missing"] == ["1.1.13"]
    assert rep["totals"]["reason"]["no folder"] == 1
    m = json.loads(metrics.read_text())
    assert {k: m[k] for k in want} == want and m["excluded_fraction"] == pytest.approx(want["excluded"] / len(EXPECTED))
    excl = load_exclusions(report)
    assert set(excl) == {u for u, v in EXPECTED.items() if v[0] == "excluded"}
    assert all(excl[u] for u in excl)
    assert usable_uids(report) == {u for u, v in EXPECTED.items() if v[0] != "excluded"}


def test_run_fails_only_above_the_excluded_fraction_and_still_writes(checked, tmp_path):
    root, tmp, _, _ = checked
    report = tmp_path / "r.json"
    with pytest.raises(DecodeCheckError, match=r"5 of 18 series excluded .*max_excluded_fraction"):
        run_decode_check(tmp / "index", root, report, tmp_path / "m.json", workers=1, max_excluded_fraction=0.25)
    assert json.loads(report.read_text())["totals"]["status"]["excluded"] == 5


def test_check_series_on_a_single_scanned_folder(checked):
    root, _, _, _ = checked
    rec, files = scan_series(root / "series" / "1.1.5", root)
    res = check_series(rec, files, root)
    assert res["status"] == "partial" and res["decoded"] == 2 and res["n_frames"] == 3
    rec, files = scan_series(root / "series" / "1.1.1", root)
    assert check_series(rec, files, root) == {"status": "ok", "reasons": [], "n_frames": 3, "decoded": 3}


def test_multiframe_file_with_one_corrupt_frame_names_that_frame(tmp_path):
    from pydicom.encaps import encapsulate, generate_frames

    d, _ = write_one(tmp_path, "1.3.2", modality="MRA", n=5, matrix=32, multiframe=True, encoding="rle",
                     instance_numbers="position")
    (path,) = list(d.iterdir())
    ds = pydicom.dcmread(path)
    frames = list(generate_frames(ds.PixelData, number_of_frames=5))
    frames[2] = bytes(64)                  # an RLE header with 0 segments: frame 2 (the middle one) cannot decode
    ds.PixelData = encapsulate(frames)
    ds.save_as(path)
    rec, files = scan_series(d, tmp_path)
    assert rec["n_frames"] == 5            # the fragments are all there: the index keeps every frame
    res = check_series(rec, files, tmp_path)
    assert res["status"] == "partial" and res["decoded"] == 2
    (reason,) = res["reasons"]
    assert reason.startswith("decode failed:") and f"{path.name} frame 2:" in reason


def test_a_crashing_folder_scan_is_reported_and_excluded_not_fatal(tmp_path, monkeypatch):
    import willis.index.scan as index

    root = tmp_path / "d"
    write_one(root, "1.4.1")
    write_one(root, "1.4.2")
    write_csv(root, [csv_row("1.4.1"), csv_row("1.4.2")])
    real = index.scan_series

    def flaky(folder, root_, *limits):
        if Path(folder).name == "1.4.2":
            raise OSError("disk hiccup; retry later")
        return real(folder, root_, *limits)

    monkeypatch.setattr(index, "scan_series", flaky)
    build_index(root, tmp_path / "i", workers=1, val_fraction=0.2, test_fraction=0.2, smoke_sizes={}, seed=0)
    series = pd.read_parquet(tmp_path / "i" / "series.parquet").set_index("SeriesInstanceUID")
    assert series.loc["1.4.2", "geometry_flag"] == "scan_failed: OSError: disk hiccup, retry later"
    assert series.loc["1.4.2", "split"] == "" and series.loc["1.4.1", "split"] != ""
    run_decode_check(tmp_path / "i", root, tmp_path / "r.json", tmp_path / "m.json", workers=1, max_excluded_fraction=1.0)
    entry = json.loads((tmp_path / "r.json").read_text())["series"]["1.4.2"]
    assert entry["status"] == "excluded" and entry["reasons"][0].startswith("unusable: the header scan failed")
