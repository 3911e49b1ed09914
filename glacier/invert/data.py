"""``InversionData``: a glacier to invert, as plain arrays (from a ``Domain``)."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..domains import Domain
from ..errors import InputDataError
from ..grid import Grid
from ..physics.mass_balance import MassBalance
from ..physics.params import Physics


@dataclasses.dataclass(frozen=True, eq=False)
class InversionData:
    """A glacier to invert, as plain arrays (from a ``Domain``).

    ``surface`` is the observed surface [m]; ``mask`` 1 on the glacier; ``thickness_obs`` [m]
    NaN where not observed; ``obs_count`` points per cell (weights); ``velocity_obs`` and
    ``dhdt`` [m a^-1] NaN where unknown, or None when the glacier has none.
    """

    name: str
    grid: Grid
    surface: np.ndarray
    mask: np.ndarray
    smb: MassBalance
    thickness_obs: np.ndarray
    obs_count: np.ndarray
    physics: Physics
    temperature: float | None = None
    velocity_obs: np.ndarray | None = None
    dhdt: np.ndarray | None = None

    @classmethod
    def from_domain(cls, d: Domain, physics: Physics | None = None) -> InversionData:
        """The inversion's view of ``d``; ``physics`` defaults to the domain's own."""
        if d.mask is None or not np.any(d.mask > 0):
            raise InputDataError(f"glacier {d.name!r} has no glacier mask: the inversion "
                                 "needs `mask` (1 = glacier) in its file.")
        obs = (np.full(d.grid.shape, np.nan) if d.thickness_obs is None
               else np.asarray(d.thickness_obs, np.float64))
        if not np.any(np.isfinite(obs)):
            raise InputDataError(f"glacier {d.name!r}: thickness_obs is all NaN; the "
                                 "inversion needs thickness observations (radar points binned "
                                 "to cells). Add them to the file's `thickness_obs`.")
        if np.nanmin(obs) < 0:
            raise InputDataError(f"glacier {d.name!r}: thickness_obs has negative values "
                                 f"(min {np.nanmin(obs):.1f} m); thickness must be >= 0.")
        count = (np.where(np.isfinite(obs), 1.0, 0.0) if d.thickness_obs_count is None
                 else np.where(np.isfinite(obs), np.maximum(d.thickness_obs_count, 1), 0.0))
        mask = (np.asarray(d.mask) > 0).astype(np.float64)
        return cls(name=d.name, grid=d.grid, surface=np.asarray(d.surface, np.float64),
                   mask=mask, smb=d.smb, thickness_obs=obs, obs_count=count.astype(np.float64),
                   physics=d.physics if physics is None else physics,
                   temperature=d.temperature,
                   velocity_obs=_observed_or_none(d.velocity_obs),
                   dhdt=_observed_or_none(d.dhdt))

    @property
    def observed(self) -> np.ndarray:
        return np.isfinite(self.thickness_obs)


def _observed_or_none(field) -> np.ndarray | None:
    """An optional observed field as float64, or None when absent or all NaN (unobserved)."""
    if field is None or not np.any(np.isfinite(field)):
        return None
    return np.asarray(field, np.float64)
