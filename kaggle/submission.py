r"""Kaggle submission: ``willis.predict`` inside the competition's inference server.

Runs only in a Kaggle notebook attached to the competition and to two datasets (docs/kaggle.md):
``willis-wheels`` (the project's wheel + the runtime wheels missing from the Kaggle image) and
``willis-models`` (the ``models/`` bundle: ``ct/`` and ``mr/`` with calibration.json and
folds/<k>/{model.pt, meta.json}). Notebook cells::

    !pip install -q --no-index --find-links /kaggle/input/willis-wheels pydicom pylibjpeg pylibjpeg-libjpeg \
        pylibjpeg-openjpeg pylibjpeg-rle python-gdcm zarr numcodecs donfig google-crc32c
    !pip install -q --no-index --no-deps /kaggle/input/willis-wheels/willis-*.whl
    %run /kaggle/input/willis-wheels/submission.py

Importing this module is safe anywhere (nothing is loaded or served); ``serve()`` does the work.
"""

from __future__ import annotations

import os
import shutil
import sys

COMPETITION_DIR = "/kaggle/input/rsna-intracranial-aneurysm-detection"  # holds kaggle_evaluation/
MODELS_DIR = "/kaggle/input/willis-models/models"
SHARED_DIR = "/kaggle/shared"  # where the gateway puts each series; the demo notebook empties it after each


def predict(series_path: str):
    """The server's callback: one series folder -> one-row pandas DataFrame of the 14 label columns."""
    from willis.labels import LABELS
    from willis.predict import predict as willis_predict

    try:
        return willis_predict(series_path)[list(LABELS)]  # never raises for a bad series (prior + warning)
    finally:
        shutil.rmtree(SHARED_DIR, ignore_errors=True)  # as the competition's demo: keep the disk free


def serve() -> None:
    """Load both models, then serve (competition rerun) or run the local gateway (interactive)."""
    from willis.predict import ENV_MODELS, load_bundle

    os.environ.setdefault(ENV_MODELS, MODELS_DIR)
    sys.path.insert(0, COMPETITION_DIR)
    import kaggle_evaluation.rsna_inference_server as rsna  # only exists on Kaggle

    load_bundle()  # both families, once, before the first series arrives (the 1st call is not timed twice)
    server = rsna.RSNAInferenceServer(predict)
    if os.getenv("KAGGLE_IS_COMPETITION_RERUN"):
        server.serve()
    else:
        server.run_local_gateway()  # writes /kaggle/working/submission.parquet from the sample test set


if __name__ == "__main__":
    serve()
