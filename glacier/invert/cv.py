"""Spatial K-fold cross-validation of the inversion and of the baseline
(``cross_validate``), then the final inversion on all observations."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from .baseline import baseline, spatial_folds
from .data import InversionData
from .loop import InversionResult, invert
from .options import InvertOptions


@dataclasses.dataclass
class CrossValidation:
    """Held-out scores of the adjoint inversion and of the baseline, and the final inversion.

    ``held_out`` is the prediction of each observed cell by the inversion without its fold
    (NaN elsewhere); ``predictions[k]`` is the thickness of the inversion without fold k;
    ``thickness_std`` the standard deviation of the K inversions (the uncertainty map);
    ``within_spread`` the fraction of held-out cells whose observation lies within
    prediction +- 2 std; ``error_floor`` the error [m] to add in quadrature to the spread so
    that 95 % of the held-out cells lie within 2 sqrt(std^2 + floor^2) (the spread of K
    inversions that share most of their data underestimates the error).
    """

    folds: np.ndarray
    predictions: list[np.ndarray]
    held_out: np.ndarray
    baseline_predictions: list[np.ndarray]
    rmse: float
    bias: float
    within_spread: float
    error_floor: float
    baseline_rmse: float
    baseline_bias: float
    thickness_std: np.ndarray
    final: InversionResult
    baseline_thickness: np.ndarray
    baseline_tau: float
    failures: list[str] = dataclasses.field(default_factory=list)
    baseline_held_out: np.ndarray | None = None
    observed: np.ndarray | None = None

    def against(self, reference: np.ndarray) -> dict[str, float]:
        """An independent thickness product ``reference`` [m] (NaN = none) scored on the
        held-out cells where it has a value, beside the inversion's and the baseline's
        held-out predictions on the same cells: RMSE and bias [m] of each and the number of
        cells. The product never saw our folds (it may have seen the radar: then it is a
        fit, not a prediction, and the README says so)."""
        held = (self.folds >= 0) & np.isfinite(reference)
        if not held.any():
            nan = float("nan")
            return dict(reference_cv_rmse=nan, reference_cv_bias=nan, reference_cells=0,
                        cv_rmse_on_reference_cells=nan, baseline_cv_rmse_on_reference_cells=nan)
        obs = self.observed
        ref_rmse, ref_bias = _scores(reference, obs, held)
        return dict(reference_cv_rmse=ref_rmse, reference_cv_bias=ref_bias,
                    reference_cells=int(held.sum()),
                    cv_rmse_on_reference_cells=_scores(self.held_out, obs, held)[0],
                    baseline_cv_rmse_on_reference_cells=_scores(self.baseline_held_out, obs,
                                                                 held)[0])


def _error_floor(residual, std, coverage: float = 0.95) -> float:
    """Smallest s >= 0 with a fraction ``coverage`` of |residual| <= 2 sqrt(std^2 + s^2)."""
    def covered(s):
        return np.mean(residual <= 2.0 * np.sqrt(std * std + s * s))

    if covered(0.0) >= coverage:
        return 0.0
    lo, hi = 0.0, float(np.max(residual)) + 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if covered(mid) >= coverage else (mid, hi)
    return hi


def _scores(pred, obs, held):
    r = (pred - obs)[held]
    return float(np.sqrt(np.mean(r * r))), float(np.mean(r))


def cross_validate(data: InversionData, options: InvertOptions, k: int | None = None, *,
                   block: float | None = None, seed: int = 0,
                   on_fold: Callable[[int, dict], None] | None = None,
                   callback: Callable[[int, dict], None] | None = None,
                   law=None) -> CrossValidation:
    """K-fold spatial cross-validation, then the final inversion with all observations.

    ``on_fold(k, scores)`` is called after each fold, ``callback(iteration, terms)`` after
    each optimiser iteration of every inversion. ``k`` and ``block`` default to
    ``options.cv_folds`` and ``options.cv_block``."""
    k = options.cv_folds if k is None else k
    block = options.cv_block if block is None else block
    folds = spatial_folds(data, k, block=block, seed=seed)
    obs = np.nan_to_num(data.thickness_obs)
    held_pred = np.full(data.grid.shape, np.nan)
    held_base = np.full(data.grid.shape, np.nan)
    preds, bases = [], []
    failures: list[str] = []
    for f in range(k):
        w = np.where(folds == f, 0.0, data.obs_count)
        H_b, _ = baseline(data, w)
        res = invert(data, options, weights=w, H_init=H_b, law=law, callback=callback)
        if res.failure:
            failures.append(f"fold {f + 1}: {res.failure}")
        held = folds == f
        held_pred[held] = res.thickness[held]
        held_base[held] = H_b[held]
        preds.append(res.thickness)
        bases.append(H_b)
        if on_fold is not None:
            on_fold(f, dict(rmse=_scores(res.thickness, obs, held)[0],
                            baseline_rmse=_scores(H_b, obs, held)[0]))
    held_all = folds >= 0
    rmse, bias = _scores(held_pred, obs, held_all)
    b_rmse, b_bias = _scores(held_base, obs, held_all)
    std = np.std(np.stack(preds), axis=0)
    res_held, std_held = np.abs(held_pred - obs)[held_all], std[held_all]
    within = float(np.mean(res_held <= 2 * std_held))
    floor = _error_floor(res_held, std_held)
    H_b, tau = baseline(data, data.obs_count)
    final = invert(data, options, H_init=H_b, law=law, callback=callback)
    if final.failure:
        failures.append(f"final: {final.failure}")
    return CrossValidation(folds=folds, predictions=preds, baseline_predictions=bases,
                           held_out=held_pred,
                           rmse=rmse, bias=bias, within_spread=within, error_floor=floor,
                           baseline_rmse=b_rmse,
                           baseline_bias=b_bias, thickness_std=std, final=final,
                           baseline_thickness=H_b, baseline_tau=tau, failures=failures,
                           baseline_held_out=held_base,
                           observed=np.where(held_all, data.thickness_obs, np.nan))
