"""Inversion of thickness (bed) and flow parameter against observed thickness, with
cross-validation and a classic baseline.

Controls (any combination, by ``InvertOptions``):

- the thickness H on the grid, i.e. the bed B = S_obs - H; H = s softplus(p / s) on the
  glacier mask and 0 elsewhere, so it is non-negative and confined to the mask by construction;
- Glen's A as one scalar (log-parameterised), as a smooth field (log A on the grid), or
  through a learned law's parameters (``glacier.laws``; functional inversion);
- Budd sliding fs as one scalar or a smooth field, non-negative and below
  ``fs_max_factor`` invert.fs by construction (``cost.sliding_factor``);
- the start of a transient run is that thickness itself.

Cost (each term reported separately):

    J_obs    = sum_i w_i ((H_i - H_obs,i) / sigma_H)^2 / sum_i w_i      (w_i: points per cell)
    J_surf   = mean over the mask of ((S(T) - S_obs - T dhdt) / sigma_S)^2
    J_smooth = lambda_H mean((dH / sigma_H)^2) + lambda_A mean((d ln A)^2)   (neighbour diffs)
    J_A      = mean(((ln A - ln A_prior) / sigma_lnA)^2)                (prior on A)
    J_s      = mean((fs / fs_ref / sigma_s)^2) + lambda_s mean((d fs / fs_ref)^2)  (sliding)

where S(T) is the surface after a relaxation run of T years of the SIA from (S_obs - H, H) with
the mass balance (optionally shifted to zero glacier-wide balance, the "apparent" mass balance
of Farinotti et al. 2009), so that J_surf asks for a glacier in balance with its mass balance
(or thinning at ``dhdt``: the file's field, else ``invert.dhdt``; the shift then leaves a
glacier-wide balance equal to the mean dhdt, since no ice leaves through the outline). The
gradient comes from the checkpointed adjoint of the solver. ln A - ln A_prior is bounded by
+-ln(``A_max_factor``); S_obs may be the DEM smoothed over ``slope_smoothing`` metres.

Cross-validation splits the observed cells into K folds of whole spatial blocks, inverts K
times without one fold, and scores the held-out cells; the spread of the K inversions is the
thickness uncertainty. The baseline is the perfect-plasticity thickness H = tau / (rho g |grad
S|) (``domains.real.estimate_thickness``) with tau calibrated on the same training cells.
No files here: ``glacier.io`` writes the results.

Layout (imports go one way, top to bottom):

- ``options``: ``InvertOptions`` (the ``invert`` config node) and its enums ``InvertA``,
  ``Optimizer``.
- ``data``: ``InversionData``, the glacier as plain arrays.
- ``baseline``: the perfect-plasticity baseline and the spatial folds.
- ``cost``: the cost terms, the thickness / A parameterisation, one compiled optimiser step.
- ``loop``: ``Inverter`` (the minimisation), ``InversionResult``, ``invert``.
- ``cv``: ``cross_validate`` and its scores (``CrossValidation``).
- ``diagnostics``: glacier-scale balance of flux divergence and mass balance
  (``BalanceCheck``).
"""

from .baseline import baseline, spatial_folds
from .cv import CrossValidation, cross_validate
from .data import InversionData
from .loop import InversionResult, Inverter, invert
from .options import InvertA, InvertOptions, Optimizer

__all__ = ["CrossValidation", "InversionData", "InversionResult", "InvertA", "InvertOptions",
           "Inverter", "Optimizer", "baseline", "cross_validate", "invert", "spatial_folds"]
