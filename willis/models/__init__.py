"""Models: a compact 2D backbone, the tri-planar ``mip_cnn`` baseline and the 2.5D attention ``mil``.

Every model has the same forward contract, so training, inference and the checkpoint format do
not care which one they hold::

    model(mip, instances, modality_id) -> {"logits": (B, 14), "attention": (B, K)}

``mip`` is (B, 3, C, S, S) (views axial, coronal, sagittal), ``instances`` is (B, K, C, S, S)
(axial thin-slab MIPs), both float in [0, 1]; ``modality_id`` is (B,) int64, an index into the
family's modality vocabulary (``willis.models.checkpoint.modality_vocab``). Logits follow
``willis.labels.LABELS`` (13 locations, then Aneurysm Present).
"""

from willis.models.checkpoint import build_model, load_model, save_model

__all__ = ["build_model", "load_model", "save_model"]
