"""Deterministic DICOM UIDs: the same parts always give the same UID, on every machine."""

from __future__ import annotations

import uuid

UID_NAMESPACE = uuid.UUID("6f1c2a4e-5b7d-4e8a-9c3f-0d2b8e7a1c55")  # fixed: UIDs depend on their parts only


def uid_from(*parts) -> str:
    """Deterministic DICOM UID ``2.25.<int>`` (PS3.5 B.2) of a name-based UUID of ``parts``.

    Not ``pydicom.uid.generate_uid(prefix=None, ...)``: that returns a random UUID and ignores
    ``entropy_srcs``.
    """
    return f"2.25.{uuid.uuid5(UID_NAMESPACE, chr(31).join(str(p) for p in parts)).int}"
