"""willis: intracranial aneurysm detection on head CT/CTA and MR/MRA DICOM series, as a DVC pipeline.

The stages (``stages/*.py``, wired in ``dvc.yaml``) are thin; this package does the work. Its map,
floors (which package may import which) and artifact contracts: ``docs/ARCHITECTURE.md``.
"""
