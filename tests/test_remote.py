"""DVC remotes round-trip a pipeline's outputs; the recipes of docs/remote.md work as written.

Each test builds a throwaway git + DVC repo in ``tmp_path`` holding a tiny two-stage pipeline
(``generate``: a read-only input CSV -> a Zarr v3 directory; ``reduce``: the store -> a cached
JSON and a git-tracked metric), runs it, pushes the outputs to a remote, clones the repo afresh
and pulls. The facts checked: the pulled outputs are byte-identical to the originals, ``dvc
status`` is clean, ``dvc repro`` is a no-op, and a stage is never recomputed once finished.

Remotes: a local directory (NAS-style), a real S3 API server (moto) on 127.0.0.1 and a free port,
and a read-only folder used as a local remote (a Kaggle dataset). Hermetic: HOME, the AWS config
files and DVC's global/system config point into tmp_path; nothing is reached beyond loopback.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

# The dvc CLI installed beside this interpreter (a venv's bin/, or where pip put its scripts).
SCRIPTS = Path(sysconfig.get_path("scripts"))
DVC = SCRIPTS / "dvc" if (SCRIPTS / "dvc").exists() else Path(shutil.which("dvc") or "dvc")
pytestmark = pytest.mark.skipif(not DVC.exists(), reason=f"dvc CLI not found at {DVC}")

# Dummy credentials: moto accepts any key; they must never end up in a git-tracked file.
KEY_ID = "willis-test-key"
SECRET = "willis-test-secret-0123456789"
BUCKET = "willis-dvc"
N_SERIES = 4  # rows of the input CSV = chunks of the store
GEN_LOG = "generate_runs.log"  # outside the repos: one line per run of the generate stage

GENERATE_PY = """\
import csv, os
import numpy as np, yaml, zarr

root = yaml.safe_load(open("params.yaml"))["data"]["root"]
with open(os.path.join(root, "input.csv")) as f:
    rows = list(csv.DictReader(f))
with open(os.environ["WILLIS_GEN_LOG"], "a") as log:  # counts real runs, across clones
    log.write("run\\n")
# One chunk file per series, '.' chunk keys: the layout of willis/projections/store.py.
g = zarr.open_group("data/store.zarr", mode="w", zarr_format=3)
a = g.create_array("mip", shape=(len(rows), 8, 8), chunks=(1, 8, 8), dtype="uint8",
                   chunk_key_encoding={"name": "default", "separator": "."})
for i, r in enumerate(rows):
    a[i] = ((np.arange(64).reshape(8, 8) * int(r["gain"])) % 251).astype(np.uint8)
g.attrs["uids"] = [r["uid"] for r in rows]
"""

REDUCE_PY = """\
import json
import numpy as np, zarr

g = zarr.open_group("data/store.zarr", mode="r")
mip = g["mip"][:]
sums = {u: int(mip[i].sum()) for i, u in enumerate(g.attrs["uids"])}
json.dump(sums, open("data/summary.json", "w"), indent=1, sort_keys=True)
json.dump({"total": int(mip.sum())}, open("metrics.json", "w"))
"""

DVC_YAML = """\
stages:
  generate:
    cmd: python generate.py
    deps:
      - generate.py
      - ${data.root}/input.csv
    params:
      - data.root
    outs:
      - data/store.zarr
  reduce:
    cmd: python reduce.py
    deps:
      - reduce.py
      - data/store.zarr
    outs:
      - data/summary.json
    metrics:
      - metrics.json:
          cache: false
"""


def _env(tmp_path: Path) -> dict[str, str]:
    """An environment that reads no user config and talks to nothing beyond loopback."""
    home = tmp_path / "home"
    for d in ("home", "dvc-global", "dvc-system", "dvc-site"):
        (tmp_path / d).mkdir(exist_ok=True)
    # `python` in the stages' cmd lines must be this interpreter (it has numpy and zarr).
    shim = tmp_path / "bin"
    if not shim.exists():
        shim.mkdir()
        # A script, not a symlink: a venv is found from the path the interpreter is started by.
        (shim / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        (shim / "python").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DVC_", "GIT_"))}
    env.update(
        PATH=os.pathsep.join([str(shim), str(SCRIPTS), env.get("PATH", "")]),
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        DVC_NO_ANALYTICS="1",
        DVC_GLOBAL_CONFIG_DIR=str(tmp_path / "dvc-global"),
        DVC_SYSTEM_CONFIG_DIR=str(tmp_path / "dvc-system"),
        DVC_SITE_CACHE_DIR=str(tmp_path / "dvc-site"),
        AWS_CONFIG_FILE=str(home / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",  # no credential probe of 169.254.169.254
        AWS_DEFAULT_REGION="us-east-1",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        WILLIS_GEN_LOG=str(tmp_path / GEN_LOG),
    )
    (tmp_path / "dvc-global" / "config").write_text("[core]\n    check_update = false\n")
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str], ok: bool = True) -> str:
    """Run a command; return stdout+stderr; fail with the full output if the exit code is wrong."""
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    out = p.stdout + p.stderr
    if (p.returncode == 0) != ok:
        raise AssertionError(f"{' '.join(map(str, cmd))} in {cwd} exited {p.returncode}:\n{out}")
    return out


def _dvc(*args: str, cwd: Path, env: dict[str, str], ok: bool = True) -> str:
    return _run([str(DVC), *args], cwd, env, ok)


def _git(*args: str, cwd: Path, env: dict[str, str]) -> str:
    return _run(["git", *args], cwd, env)


def _input_dir(tmp_path: Path) -> Path:
    """The 'competition data': a read-only folder outside the repo, like /kaggle/input/..."""
    d = tmp_path / "input"
    d.mkdir()
    rows = "".join(f"1.2.{i},{i + 2}\n" for i in range(N_SERIES))
    (d / "input.csv").write_text("uid,gain\n" + rows)
    _make_read_only(d)
    return d


def _make_read_only(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _make_writable(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        if not p.is_symlink():
            p.chmod(p.stat().st_mode | stat.S_IWUSR)


@pytest.fixture(scope="module")
def template_repo(tmp_path_factory) -> Path:
    """git init + dvc init + the two-stage pipeline, committed once per module (dvc init is the
    slow part); each test copies it and commits its own params.yaml."""
    tmp = tmp_path_factory.mktemp("template")
    env = _env(tmp)
    repo = tmp / "repo"
    repo.mkdir()
    (repo / "generate.py").write_text(GENERATE_PY)
    (repo / "reduce.py").write_text(REDUCE_PY)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    _git("init", "-q", "-b", "main", cwd=repo, env=env)
    # CI has no global git identity: set one in this repo only (copies keep .git/config).
    _git("config", "user.name", "willis-test", cwd=repo, env=env)
    _git("config", "user.email", "willis-test@example.invalid", cwd=repo, env=env)
    _dvc("init", "-q", cwd=repo, env=env)
    _git("add", "-A", cwd=repo, env=env)
    _git("commit", "-q", "-m", "pipeline", cwd=repo, env=env)
    return repo


def _pipeline_repo(template: Path, repo: Path, data_root: Path, env: dict[str, str]) -> Path:
    """A fresh copy of the template repo with params.yaml committed; nothing run yet."""
    repo.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(template, repo, symlinks=True)
    (repo / "params.yaml").write_text(f"data:\n  root: {data_root}\n")
    _git("add", "params.yaml", cwd=repo, env=env)
    _git("commit", "-q", "-m", "params", cwd=repo, env=env)
    return repo


def _run_and_commit(repo: Path, env: dict[str, str]) -> None:
    _dvc("repro", cwd=repo, env=env)
    _git("add", "-A", cwd=repo, env=env)  # dvc.lock, .gitignore, the cache:false metric
    _git("commit", "-q", "-m", "run", cwd=repo, env=env)


def _outputs(repo: Path) -> dict[str, bytes]:
    """Every pipeline output file (following cache links) -> its bytes."""
    files = [*sorted((repo / "data" / "store.zarr").rglob("*")), repo / "data" / "summary.json"]
    files.append(repo / "metrics.json")
    return {str(p.relative_to(repo)): p.read_bytes() for p in files if p.is_file()}


def _clone(repo: Path, dest: Path, env: dict[str, str]) -> Path:
    _git("clone", "-q", str(repo), str(dest), cwd=repo.parent, env=env)
    assert not (dest / "data" / "store.zarr").exists()  # outputs travel via the remote, not git
    return dest


def _assert_clean_and_no_op(clone: Path, original: dict[str, bytes], env: dict[str, str]) -> None:
    assert _outputs(clone) == original
    status = _dvc("status", cwd=clone, env=env)
    assert "up to date" in status, status
    repro = _dvc("repro", cwd=clone, env=env)
    assert "Running stage" not in repro, repro
    assert "didn't change, skipping" in repro, repro


def _reference_sums() -> dict[str, int]:
    """What reduce.py must write, computed straight from the input rows."""
    base = np.arange(64, dtype=np.int64).reshape(8, 8)
    return {f"1.2.{i}": int(((base * (i + 2)) % 251).sum()) for i in range(N_SERIES)}


def _runs_of_generate(tmp_path: Path) -> int:
    return len((tmp_path / GEN_LOG).read_text().splitlines())


def _assert_no_secret_tracked(repo: Path, env: dict[str, str]) -> None:
    tracked = _git("ls-files", cwd=repo, env=env).split()
    for rel in tracked:
        assert SECRET not in (repo / rel).read_text(errors="replace"), f"secret committed in {rel}"


def test_local_remote_round_trip(tmp_path, template_repo):
    env = _env(tmp_path)
    repo = _pipeline_repo(template_repo, tmp_path / "repo", _input_dir(tmp_path), env)
    _run_and_commit(repo, env)
    original = _outputs(repo)
    assert f"data/store.zarr/mip/c.{N_SERIES - 1}.0.0" in original  # one chunk file per series
    assert json.loads(original["data/summary.json"]) == _reference_sums()

    # A NAS mount looks the same: any directory path. The remote is in the committed config.
    _dvc("remote", "add", "-d", "nas", str(tmp_path / "nas"), cwd=repo, env=env)
    _git("commit", "-q", "-am", "remote", cwd=repo, env=env)
    _dvc("push", cwd=repo, env=env)
    assert "in sync" in _dvc("status", "--cloud", cwd=repo, env=env)

    clone = _clone(repo, tmp_path / "clone", env)
    _dvc("pull", cwd=clone, env=env)
    _assert_clean_and_no_op(clone, original, env)
    assert _runs_of_generate(tmp_path) == 1


@pytest.fixture
def s3_endpoint():
    """A real S3 API server (moto) on 127.0.0.1, a free port, with one empty bucket."""
    moto_server = pytest.importorskip("moto.server", reason="needs moto[server] (the test extra)")
    pytest.importorskip("dvc_s3", reason="needs dvc-s3 (the test extra)")
    boto3 = pytest.importorskip("boto3")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        s3 = boto3.client(
            "s3", endpoint_url=url, region_name="us-east-1",
            aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
        )
        s3.create_bucket(Bucket=BUCKET)
        yield url, s3
    finally:
        server.stop()


def test_s3_remote_round_trip(tmp_path, template_repo, s3_endpoint):
    url, s3 = s3_endpoint
    env = _env(tmp_path)
    repo = _pipeline_repo(template_repo, tmp_path / "repo", _input_dir(tmp_path), env)
    _run_and_commit(repo, env)
    original = _outputs(repo)

    # The endpoint is configuration (MinIO, Ceph, cloud): committed. Credentials are not.
    _dvc("remote", "add", "-d", "s3", f"s3://{BUCKET}/dvcstore", cwd=repo, env=env)
    _dvc("remote", "modify", "s3", "endpointurl", url, cwd=repo, env=env)
    _git("commit", "-q", "-am", "remote", cwd=repo, env=env)
    creds = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}
    _dvc("push", cwd=repo, env={**env, **creds})  # credentials from the environment
    # The bucket holds each cached output file under its md5 (computed here with hashlib), plus
    # the store's .dir listing; the cache:false metric stays in git.
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    md5s = {hashlib.md5(b).hexdigest() for k, b in original.items() if k.startswith("data/")}
    expected = {f"dvcstore/files/md5/{h[:2]}/{h[2:]}" for h in md5s}
    extra = keys - expected
    assert expected <= keys and len(extra) == 1 and extra.pop().endswith(".dir"), keys

    clone = _clone(repo, tmp_path / "clone", env)
    # Without credentials the pull fails, and says why; it does not hang probing for them.
    assert "credentials" in _dvc("pull", cwd=clone, env=env, ok=False).lower()
    # Credentials in .dvc/config.local (git-ignored) instead of the environment.
    _dvc("remote", "modify", "--local", "s3", "access_key_id", KEY_ID, cwd=clone, env=env)
    _dvc("remote", "modify", "--local", "s3", "secret_access_key", SECRET, cwd=clone, env=env)
    assert _git("status", "--porcelain", cwd=clone, env=env).strip() == ""
    _assert_no_secret_tracked(clone, env)
    _dvc("pull", cwd=clone, env=env)
    _assert_clean_and_no_op(clone, original, env)
    assert _runs_of_generate(tmp_path) == 1

    # --run-cache: a clone restores a stage for params its dvc.lock does not hold. The original
    # repo runs a second input (another dataset version), goes back, pushes its run-cache.
    alt = tmp_path / "input-alt"
    alt.mkdir()
    (alt / "input.csv").write_text("uid,gain\n" + "".join(f"1.2.{i},{i + 7}\n" for i in range(N_SERIES)))
    (repo / "params.yaml").write_text(f"data:\n  root: {alt}\n")
    _dvc("repro", cwd=repo, env=env)
    # `push --run-cache` uploads the run entries (runs/) but no output they name (dvc 3.67): the
    # outputs go up with a plain `dvc push` while they are the workspace's (or `dvc exp push`)
    _dvc("push", cwd=repo, env={**env, **creds})
    _git("checkout", "params.yaml", cwd=repo, env=env)
    assert "Running stage" not in _dvc("repro", cwd=repo, env=env)  # back: restored from the run-cache
    assert _runs_of_generate(tmp_path) == 2
    _dvc("push", "--run-cache", cwd=repo, env={**env, **creds})
    clone2 = _clone(repo, tmp_path / "clone2", env)
    _dvc("pull", "--run-cache", cwd=clone2, env={**env, **creds})  # the run-cache entries (runs/)
    (clone2 / "params.yaml").write_text(f"data:\n  root: {alt}\n")
    # --pull: download the outputs a run-cache entry names (pull --run-cache fetched only the entries)
    out = _dvc("repro", "--pull", cwd=clone2, env={**env, **creds})
    assert "Stage 'generate' is cached - skipping run" in out, out
    assert _runs_of_generate(tmp_path) == 2
    # ... but `reduce`, whose metric is `cache: false`, runs again: `push --run-cache` never uploads
    # cache:false files. This is why the willis pipeline caches every output (docs/reproducibility.md).
    assert "Running stage 'reduce'" in out, out


SETUP_SH = Path(__file__).resolve().parents[1] / "scripts" / "kaggle_setup.sh"


@pytest.mark.parametrize("session1_used_script", [True, False], ids=["script", "plain-dvc"])
def test_kaggle_mode_resumes_from_read_only_output(tmp_path, template_repo, session1_used_script):
    """docs/remote.md's Kaggle recipe, via scripts/kaggle_setup.sh. Session 1 sets data.root to a
    read-only input (keeping params.yaml's comments), keeps the cache in its working folder with
    symlinks, and finishes `generate` only. Its working folder, minus .git, is attached read-only
    to session 2, whose --resume copies the repo, makes a git snapshot, pulls from the old cache
    as a local remote, and runs only `reduce`. Also when session 1 kept its cache in .dvc/cache."""
    env = _env(tmp_path)
    data_root = _input_dir(tmp_path)
    work1 = tmp_path / "session1"
    repo1 = _pipeline_repo(template_repo, work1 / "repo", tmp_path / "nowhere", env)
    params = "seed: 1\ndata:\n  # the dataset\n  root: {}  # note\n"
    if session1_used_script:
        (repo1 / "params.yaml").write_text(params.format("nowhere"))
        setup = ["bash", str(SETUP_SH), "--work", str(work1), "--repo", str(repo1)]
        _run([*setup, "--data-root", str(data_root)], repo1, env)
        assert (repo1 / "params.yaml").read_text() == params.format(data_root)
        assert (work1 / "dvc-cache").is_dir()
    else:
        (repo1 / "params.yaml").write_text(params.format(data_root))
    _dvc("repro", "generate", cwd=repo1, env=env)  # the session ends after one stage
    old_cache = work1 / "dvc-cache" if session1_used_script else repo1 / ".dvc" / "cache"
    assert (old_cache / "files" / "md5").is_dir()
    session1_store = _outputs(repo1)
    assert session1_store and all("store.zarr" in k for k in session1_store)

    (repo1 / ".dvc" / "tmp" / "session1-marker").write_text("stands for session 1's rwlock")
    saved = tmp_path / "input-prev"
    shutil.copytree(work1, saved, symlinks=True, ignore=shutil.ignore_patterns(".git"))
    _make_read_only(saved)
    try:
        work2 = tmp_path / "session2"
        resume = ["bash", str(SETUP_SH), "--work", str(work2), "--resume", str(saved)]
        out = _run(resume, tmp_path, env)
        assert "made one snapshot commit" in out, out
        repo2 = work2 / "repo"
        assert not (repo2 / ".dvc" / "cache").exists()  # the old in-repo cache is not copied
        assert not (repo2 / ".dvc" / "tmp" / "session1-marker").exists()  # stale locks stay
        out = _dvc("repro", cwd=repo2, env=env)
        assert "Stage 'generate' didn't change, skipping" in out, out
        assert "Running stage 'reduce'" in out, out
        assert _runs_of_generate(tmp_path) == 1
        chunk = repo2 / "data" / "store.zarr" / "mip" / "c.0.0.0"
        assert chunk.resolve().is_relative_to(work2 / "dvc-cache")  # a link into the new cache
        # The store is session 1's, byte for byte; the summary matches a numpy reference.
        out2 = _outputs(repo2)
        assert {k: v for k, v in out2.items() if "store.zarr" in k} == session1_store
        assert json.loads(out2["data/summary.json"]) == _reference_sums()
        # A second --resume into the same place refuses instead of overwriting work.
        assert "already exists" in _run(resume, tmp_path, env, ok=False)
    finally:
        _make_writable(saved)
