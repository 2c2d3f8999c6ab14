"""``synthesize``: the embedded default dataset (synthetic, RSNA layout). Owned by willis/synth."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from willis.params import require

PROFILES = ("default", "heldout")          # willis.synth.profiles.PROFILES
LESION_MODES = ("realistic", "exaggerated")  # willis.synth.lesion.LESION_MODES


@dataclass(frozen=True)
class SynthesizeParams:
    out: str = "data/synthetic"      # where the RSNA-layout folder is written
    n_series: int = 600              # series in the dataset (one patient may own several)
    positive_rate: float = 0.42      # fraction of series with at least one aneurysm
    workers: int = 2                 # worker processes
    broken_per_kind: int = 1         # deliberately broken series per breakage kind (see MANIFEST.json)
    max_slices: int = 128            # cap on slices per series (thicker slices, same coverage, above it)
    max_matrix: int = 224            # cap on the in-plane matrix (longer side), same field of view; 0 = no cap
    lesion: Literal["realistic", "exaggerated"] = "realistic"   # aneurysm look (willis.synth.lesion)
    profile: Literal["default", "heldout"] = "default"          # nuisance ranges (willis.synth.profiles)

    def check(self) -> None:
        require(self.n_series > 0, "synthesize.n_series", "must be > 0")
        require(0.0 <= self.positive_rate <= 1.0, "synthesize.positive_rate", "must be in [0, 1]")
        require(self.workers >= 1, "synthesize.workers", "must be >= 1")
        require(self.broken_per_kind >= 0, "synthesize.broken_per_kind", "must be >= 0")
        require(self.max_slices >= 16, "synthesize.max_slices", "must be >= 16")
        require(self.max_matrix == 0 or self.max_matrix >= 32, "synthesize.max_matrix", "must be 0 (no cap) or >= 32")
        require(self.lesion in LESION_MODES, "synthesize.lesion", f"must be one of {list(LESION_MODES)}, got {self.lesion!r}")
        require(self.profile in PROFILES, "synthesize.profile", f"must be one of {list(PROFILES)}, got {self.profile!r}")
