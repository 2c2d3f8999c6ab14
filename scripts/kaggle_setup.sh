#!/usr/bin/env bash
# Kaggle mode for willis (docs/remote.md, "Kaggle"): DVC cache in /kaggle/working, symlink links,
# data.root on the read-only competition input, and resuming a previous session's finished stages.
#
#   First session (run from the repo copied or cloned into /kaggle/working):
#     bash scripts/kaggle_setup.sh --data-root /kaggle/input/rsna-intracranial-aneurysm-detection
#   Later session (the previous notebook's output attached as an input):
#     bash /kaggle/input/<prev>/willis/scripts/kaggle_setup.sh --resume /kaggle/input/<prev>
#   Seed the cache from a DVC remote (a Kaggle dataset holding `dvc push` output, or s3://...):
#     bash scripts/kaggle_setup.sh --pull-from /kaggle/input/willis-dvc-remote
#
# Then: cd /kaggle/working/willis && dvc repro    (finished stages print "didn't change, skipping")
# DVC settings go to .dvc/config.local (git-ignored); --data-root edits params.yaml in place.
set -euo pipefail

WORK=/kaggle/working
REPO=""          # default: the repo holding this script, or the copy made by --resume
CACHE=""         # default: $WORK/dvc-cache
DATA_ROOT=""
RESUME=""
PULL_FROM=""

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-0}"; }
die() { echo "kaggle_setup: $*" >&2; exit 1; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --work) WORK="$2"; shift 2 ;;
    --repo) REPO="$2"; shift 2 ;;
    --cache) CACHE="$2"; shift 2 ;;
    --data-root) DATA_ROOT="$2"; shift 2 ;;
    --resume) RESUME="$2"; shift 2 ;;
    --pull-from) PULL_FROM="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "kaggle_setup: unknown argument '$1'" >&2; usage 2 ;;
  esac
done
CACHE="${CACHE:-$WORK/dvc-cache}"
command -v dvc >/dev/null || die "dvc is not on PATH (pip install -e . first, or activate the venv)"
mkdir -p "$WORK"

if [[ -n "$RESUME" ]]; then
  # The previous session's /kaggle/working, read-only: <prev>/<repo>/dvc.yaml and <prev>/dvc-cache.
  shopt -s nullglob
  found=("$RESUME"/*/dvc.yaml)
  [[ ${#found[@]} -eq 1 ]] || die "--resume $RESUME: expected exactly one <dir>/dvc.yaml there, found ${#found[@]}"
  prev_repo="$(dirname "${found[0]}")"
  REPO="${REPO:-$WORK/$(basename "$prev_repo")}"
  [[ -e "$REPO" ]] && die "--resume: $REPO already exists; remove it or pass --repo elsewhere"
  # The old cache: where this script put it, or inside the repo if session 1 skipped the script.
  if [[ -z "$PULL_FROM" ]]; then
    for c in "$RESUME/$(basename "$CACHE")" "$prev_repo/.dvc/cache"; do
      [[ -d "$c/files" ]] && { PULL_FROM="$c"; break; }
    done
    [[ -n "$PULL_FROM" ]] || die "--resume: no DVC cache (files/md5/...) in $RESUME/$(basename "$CACHE") or $prev_repo/.dvc/cache"
  fi
  # Copy the repo (code, params, dvc.lock) but not an in-repo cache, nor
  # .dvc/tmp: its rwlock names session 1's pids, and a container reuses small pids. Then drop
  # the links into the old cache: `dvc pull` below recreates them into the new one.
  mkdir -p "$REPO"
  tar -C "$prev_repo" --exclude=./.dvc/cache --exclude=./.dvc/tmp -cf - . | tar -C "$REPO" -xf -
  find "$REPO" -type l -delete
  chmod -R u+w "$REPO"
fi
REPO="${REPO:-$(cd "$(dirname "$0")/.." && pwd)}"
[[ -f "$REPO/dvc.yaml" ]] || die "$REPO has no dvc.yaml: run this from the willis repo or pass --repo"
cd "$REPO"

# DVC needs git history for dvc.lock, `exp run` and `metrics diff`; a copied repo may lack it.
if ! git rev-parse --git-dir >/dev/null 2>&1; then
  git init -q
  git config user.name "${GIT_AUTHOR_NAME:-kaggle}"
  git config user.email "${GIT_AUTHOR_EMAIL:-kaggle@localhost}"
  [[ -d .dvc ]] || dvc init -q
  git add -A && git commit -q -m "willis snapshot (kaggle_setup.sh)"
  echo "kaggle_setup: no git history found; made one snapshot commit"
fi
[[ -d .dvc ]] || { dvc init -q; echo "kaggle_setup: .dvc was missing; ran dvc init"; }

# Cache outside the repo so it survives as its own folder of the notebook output, and symlinks
# so a 1 GB store is not held twice in the 20 GB of /kaggle/working.
mkdir -p "$CACHE"
dvc cache dir --local "$CACHE"
dvc config --local cache.type symlink

if [[ -n "$DATA_ROOT" ]]; then
  [[ -f "$DATA_ROOT/train.csv" ]] || echo "kaggle_setup: warning: $DATA_ROOT/train.csv not found" >&2
  # Edit data.root in place, keeping the file's comments (no YAML round-trip).
  python - "$DATA_ROOT" <<'PY'
import re, sys
path, root = "params.yaml", sys.argv[1]
text = open(path).read()
new, n = re.subn(r"(?m)^(data:[^\n]*\n(?:[ \t]+[^\n]*\n|\n)*?[ \t]+root:[ \t]*)[^\s#]+", lambda m: m.group(1) + root, text, count=1)
if n != 1:
    sys.exit(f"kaggle_setup: could not find data.root in {path}")
open(path, "w").write(new)
print(f"kaggle_setup: data.root = {root}")
PY
fi

if [[ -n "$PULL_FROM" ]]; then
  # A read-only folder (old cache, Kaggle dataset) or a URL works as a remote, never as the cache:
  # repro writes to the cache. --allow-missing: stages that never finished have nothing to pull.
  dvc remote add --local --force seed "$PULL_FROM"
  dvc pull -r seed --allow-missing
  # Outputs copied as plain files (a session 1 without symlinks) become links: no second copy.
  dvc checkout --relink --allow-missing -q
  dvc status || true   # what is left to run
fi

echo "kaggle_setup: ready. Next: cd $REPO && dvc repro"
