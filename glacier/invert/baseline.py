"""The classic baseline (perfect-plasticity thickness with a calibrated basal stress) and the
spatial folds of the cross-validation."""

from __future__ import annotations

import numpy as np

from ..domains.real import estimate_thickness
from ..errors import ConfigError, InputDataError
from .data import InversionData


def baseline(data: InversionData, weights: np.ndarray) -> tuple[np.ndarray, float]:
    """Perfect-plasticity thickness with tau calibrated on the cells where ``weights`` > 0.

    H = tau f with f = estimate_thickness(tau = 1 Pa) (linear in tau); least squares gives
    tau = sum w H_obs f / sum w f^2. Returns (H [m], tau [Pa]).
    """
    f = estimate_thickness(data.surface, data.mask, data.grid.dx, basal_stress=1.0,
                           rho=data.physics.rho, g=data.physics.g)
    w = np.where(np.isfinite(data.thickness_obs), weights, 0.0)
    obs = np.nan_to_num(data.thickness_obs)
    denom = np.sum(w * f * f)
    if denom <= 0:
        raise InputDataError(f"glacier {data.name!r}: no observed cell inside the mask to "
                             "calibrate the baseline on.")
    tau = float(np.sum(w * obs * f) / denom)
    return tau * f, tau


def spatial_folds(data: InversionData, k: int, *, block: float = 500.0,
                  seed: int = 0) -> np.ndarray:
    """Fold index (0..k-1) of every observed cell, -1 elsewhere.

    The grid is cut into square blocks of ``block`` metres; blocks holding observations are
    shuffled (seeded) and dealt to the folds so that the folds hold similar numbers of
    observed cells. Whole blocks go to one fold, so neighbouring radar points do not leak
    between training and held-out cells.
    """
    if k < 2:
        raise ConfigError(f"invert.cv_folds={k}: cross-validation needs at least 2 folds "
                          "(0 switches it off).")
    nb = max(1, int(round(block / data.grid.dx)))
    jj, ii = np.indices(data.grid.shape)
    block_id = (jj // nb) * (data.grid.nx // nb + 1) + ii // nb
    obs = data.observed
    ids, counts = np.unique(block_id[obs], return_counts=True)
    if len(ids) < k:
        raise ConfigError(f"invert.cv_folds={k}: the observations fall in only {len(ids)} "
                          f"blocks of {block:g} m; use fewer folds or a smaller "
                          "invert.cv_block.")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ids))
    load = np.zeros(k)
    fold_of_block = {}
    for j in order:  # greedy: next block to the lightest fold
        f = int(np.argmin(load))
        fold_of_block[ids[j]] = f
        load[f] += counts[j]
    folds = np.full(data.grid.shape, -1, dtype=np.int32)
    for b, f in fold_of_block.items():
        folds[(block_id == b) & obs] = f
    return folds
