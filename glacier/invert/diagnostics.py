"""Does the flux of an inverted glacier explain its mass balance? Glacier-scale measures of the
balance between the SIA flux divergence and the apparent mass balance.

In steady state (or thinning at dhdt) the flux divergence must equal b - dhdt. Compared cell by
cell that fails on any real DEM: the SIA flux follows cell-scale bumps of the DEM and of the
thickness, and its divergence is noise of tens of metres a year against a mass balance of one
(``scripts/diagnose_inversion.py``). A flowline model sees the glacier at the scale of its
elevation bands, and so do these measures:

- ``band_explained``: 1 - sum_k n_k (b_k - d_k)^2 / sum_k n_k b_k^2 over elevation bands k of
  ``band`` metres (b_k, d_k the band means of the target and of div q; n_k cells): 1 when the
  flux explains the target band by band, 0 no better than no flow, < 0 worse;
- ``flux_ratio``: the flux the SIA carries through the contour where the balance flux
  (the integral of the target above it) peaks, over that balance flux: 1 when the glacier moves
  the ice its mass balance delivers through its equilibrium line, < 1 too slow.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from ..physics import sia


@dataclasses.dataclass(frozen=True)
class BalanceCheck:
    """Glacier-scale balance of flux divergence and target (module docstring).

    ``target`` is b - dhdt [m a^-1] (the apparent mass balance when the balance was shifted),
    ``divergence`` div q [m a^-1] of the state checked; ``contour`` [m] the elevation where
    the balance flux ``flux`` [m3 a^-1] peaks; the RMS over the mask [m a^-1]."""

    band_explained: float
    flux_ratio: float
    contour: float
    flux: float
    rms_target: float
    rms_divergence: float

    def as_attrs(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}{k}": float(v) for k, v in dataclasses.asdict(self).items()}


def flux_divergence(H, surface, rheology, grid) -> np.ndarray:
    """div q [m a^-1] of ``rheology`` at thickness H [m] under ``surface`` [m]."""
    H = jnp.asarray(H)
    qx, qy, _ = sia.fluxes(H, jnp.asarray(surface) - H, rheology, grid)
    return np.asarray(sia.flux_divergence(qx, qy, grid.dx))


def balance_check(target, divergence, surface, mask, cell_area: float, *,
                  band: float = 50.0) -> BalanceCheck:
    """The glacier-scale balance of ``divergence`` against ``target`` over ``mask``, in
    elevation bands of ``band`` metres of ``surface``."""
    m = np.asarray(mask) > 0
    S, b, d = np.asarray(surface)[m], np.asarray(target)[m], np.asarray(divergence)[m]
    k = np.floor(S / band).astype(int)
    ids, inverse, n = np.unique(k, return_inverse=True, return_counts=True)
    b_k = np.bincount(inverse, b) / n
    d_k = np.bincount(inverse, d) / n
    explained = 1.0 - np.sum(n * (b_k - d_k) ** 2) / max(np.sum(n * b_k * b_k), 1e-30)
    # flux down through the contour at the bottom of band j: what lies above it
    above_b = np.cumsum((b_k * n)[::-1])[::-1] * cell_area
    above_d = np.cumsum((d_k * n)[::-1])[::-1] * cell_area
    j = int(np.argmax(above_b))
    ratio = float(above_d[j] / above_b[j]) if above_b[j] > 0 else float("nan")
    return BalanceCheck(band_explained=float(explained), flux_ratio=ratio,
                        contour=float(ids[j] * band), flux=float(above_b[j]),
                        rms_target=float(np.sqrt(np.mean(b * b))),
                        rms_divergence=float(np.sqrt(np.mean(d * d))))
