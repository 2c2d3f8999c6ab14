"""The model bundle ``<models>/{ct,mr}/``: loaded once per process, reused for every series.

Each family directory holds what the ``train`` and ``calibrate`` stages write: ``calibration.json``
and the fold models ``folds/<k>/{model.pt, meta.json}`` (architecture, labels, sub-modality
vocabulary, training prior, the ``project`` params the model was trained on), or one ``model.pt`` +
``meta.json`` beside calibration.json (a bundle from before folds). K fold models are served as one
``FoldEnsemble``: the mean of their raw logits, then the calibration. The directory is the ``models_dir`` argument,
else ``$WILLIS_MODELS``, else the repo's ``models/``. A family without a directory is skipped with
a warning (its series then get a prior); an empty or incomplete bundle raises ``BundleError``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from willis.labels import FAMILIES, LABELS

LOG = logging.getLogger(__name__)

ENV_MODELS = "WILLIS_MODELS"
DEFAULT_MODELS = Path(__file__).resolve().parents[2] / "models"  # the repo's models/ (editable install)


class BundleError(RuntimeError):
    """A model bundle that cannot be used; the message names the file and the reason."""


@dataclass
class FamilyModel:
    family: str
    model: object               # torch.nn.Module in eval mode, on the bundle's device (K folds: FoldEnsemble)
    meta: dict                  # meta.json (of fold 0) as written by willis.models.checkpoint
    calibration: object         # willis.calibration.Calibration
    prior: np.ndarray           # (14,) training positive rate per label, LABELS order
    project_params: object      # willis.params.project.ProjectParams the model was trained with


@dataclass
class Bundle:
    path: Path
    device: str
    families: dict[str, FamilyModel] = field(default_factory=dict)

    def prior(self, family: str | None) -> np.ndarray:
        """(14,) prior for a family; the mean of the loaded families' priors when it is unknown."""
        if family in self.families:
            return self.families[family].prior
        return np.mean([fm.prior for fm in self.families.values()], axis=0)


_BUNDLES: dict[tuple[str, str], Bundle] = {}


def resolve_models_dir(models_dir: str | Path | None = None) -> Path:
    """``models_dir`` argument, else ``$WILLIS_MODELS``, else the repo's ``models/``."""
    return Path(models_dir or os.environ.get(ENV_MODELS) or DEFAULT_MODELS).resolve()


def _meta_prior(meta: dict, path: Path) -> np.ndarray:
    """(14,) training prior from meta.json, reordered to LABELS by name when stored as a mapping."""
    prior = meta.get("prior")
    if isinstance(prior, dict):
        missing = [lab for lab in LABELS if lab not in prior]
        if missing:
            raise BundleError(f"{path}: meta.json prior lacks labels {missing}")
        prior = [prior[lab] for lab in LABELS]
    if prior is None or len(prior) != len(LABELS):
        raise BundleError(f"{path}: meta.json has no 14-value 'prior' (training positive rate per label)")
    return np.clip(np.asarray(prior, dtype=np.float64), 0.0, 1.0)


def _meta_project_params(meta: dict, path: Path):
    """The ``project`` params the model was trained with, rebuilt and checked as a dataclass.

    Preferred: ``meta["project"]``, the whole ``project`` section (the store's ``attrs["params"]``).
    Older checkpoints carry only ``size`` and ``instances``: the other keys then take the
    ProjectParams defaults (never today's params.yaml), with a warning.
    """
    from willis.params.schema import ParamsError, build
    from willis.params.project import ProjectParams

    section = meta.get("project")
    if not isinstance(section, dict):
        LOG.warning("%s: meta.json has no 'project' section; projecting with size=%s, instances=%s and "
                    "the ProjectParams defaults for every other key", path, meta.get("size"), meta.get("instances"))
        section = {"size": meta["size"], "instances": meta["instances"]}
    try:
        return build(ProjectParams, section, "project")
    except ParamsError as e:
        raise BundleError(f"{path}: meta.json project params: {e}") from e


def _load_family(family_dir: Path, family: str, device: str) -> FamilyModel:
    """The family's calibration and its fold ensemble (``willis.models.ensemble``): one checkpoint,
    or K in ``folds/<k>/`` whose raw logits are averaged before calibration."""
    from willis.calibration import Calibration
    from willis.models.checkpoint import load_model
    from willis.models.ensemble import FoldEnsemble, member_dirs

    if not (family_dir / "calibration.json").is_file():
        raise BundleError(f"{family_dir / 'calibration.json'}: missing from the model bundle")
    try:
        members = member_dirs(family_dir)
    except (FileNotFoundError, ValueError) as e:
        raise BundleError(f"{family_dir}: {e}") from e
    for d in members:
        for name in ("model.pt", "meta.json"):
            if not (d / name).is_file():
                raise BundleError(f"{d / name}: missing from the model bundle")
    try:
        loaded = [load_model(d, device) for d in members]
        calibration = Calibration.load(family_dir / "calibration.json")
    except Exception as e:  # noqa: BLE001 - re-raised with the bundle path and the cause chained
        raise BundleError(f"{family_dir}: cannot load model/calibration: {e}") from e
    meta = loaded[0][1]
    for d, (_, m) in zip(members[1:], loaded[1:]):
        for key in ("labels", "modalities", "channels", "size", "instances", "project"):
            if m.get(key) != meta.get(key):
                raise BundleError(f"{d}/meta.json: {key} differs from {members[0]}/meta.json: the fold models "
                                  f"of one family must take the same inputs")
    model = loaded[0][0] if len(loaded) == 1 else FoldEnsemble([m for m, _ in loaded]).eval()
    model.eval()
    if str(device).startswith("cuda"):
        _warm_up(model, meta)
    return FamilyModel(family, model, meta, calibration, _meta_prior(meta, family_dir),
                       _meta_project_params(meta, family_dir))


def _warm_up(model, meta: dict) -> None:
    """One forward pass on zeros at load time, so CUDA context / cuDNN start-up (~1 s, measured on
    an H200) is paid before serving rather than inside the first series' call."""
    from willis.models.infer import infer_arrays, reads_fine

    c, s, k = len(meta["channels"]), int(meta["size"]), int(meta["instances"])
    if reads_fine(meta):   # fine_cnn: channels/size/instances describe the fine slabs
        infer_arrays(model, meta, None, None, meta["modalities"][0], fine=np.zeros((3, k, c, s, s), np.uint8))
        return
    infer_arrays(model, meta, np.zeros((3, c, s, s), np.uint8), np.zeros((k, c, s, s), np.uint8),
                 meta["modalities"][0])


def load_bundle(models_dir: str | Path | None = None, device: str = "auto") -> Bundle:
    """Load ``<models_dir>/{ct,mr}`` once per process (cached by resolved path and device).

    A family without a model directory is skipped with a warning (its series then get a prior);
    a bundle with no family at all, or a family directory that is incomplete, raises BundleError.
    """
    from willis.models.infer import resolve_device  # imported here: torch only once a bundle loads

    path, dev = resolve_models_dir(models_dir), str(resolve_device(device))
    key = (str(path), dev)
    if key in _BUNDLES:
        return _BUNDLES[key]
    bundle = Bundle(path, dev)
    for family in FAMILIES:
        family_dir = path / family
        if not family_dir.is_dir():
            LOG.warning("model bundle %s has no %s/ model; %s series will get the prior", path, family, family)
            continue
        bundle.families[family] = _load_family(family_dir, family, dev)
    if not bundle.families:
        raise BundleError(f"{path}: no model bundle here (expected {'/, '.join(FAMILIES)}/ with calibration.json "
                          f"and folds/<k>/model.pt + meta.json); set --models or ${ENV_MODELS}")
    LOG.info("loaded model bundle %s (%s) on %s", path, ", ".join(bundle.families), dev)
    _BUNDLES[key] = bundle
    return bundle
