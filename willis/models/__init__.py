"""Models: a compact 2D backbone, the tri-planar ``mip_cnn`` baseline and the 2.5D attention ``mil``.

Every model has the same forward contract, so training, inference and the checkpoint format do
not care which one they hold::

    model(mip, instances, modality_id) -> {"logits": (B, 14), "attention": (B, K)}

``mip`` is (B, 3, C, S, S) (views axial, coronal, sagittal), ``instances`` is (B, K, C, S, S)
(axial thin-slab MIPs), both float in [0, 1]; ``modality_id`` is (B,) int64, an index into the
family's modality vocabulary (``willis.labels.modality_vocab``). Logits follow
``willis.labels.LABELS`` (13 locations, then Aneurysm Present).

Modules: ``backbone``, ``mip_cnn``, ``mil``, ``heat`` (the networks), ``checkpoint`` (``model.pt`` +
``meta.json``: ``save_model``, ``load_model``), ``infer`` (logits from a checkpoint, the device
policy), ``logits`` (the logits table contract: ``read_logits``, ``write_logits``), ``folds`` (where
the cross-validation folds live, their out-of-fold logits), ``ensemble`` (the fold ensemble: mean
of the folds' raw logits, ``FoldEnsemble``). Kept import-free
so that reading a logits table (``calibrate``) does not import torch or the networks.
"""
