"""Write ``inversion.nc`` (CONTRACT.md): the result of ``glacier-invert``, CF-1.8, atomically.

Grid variables ``(y, x)``: ``thickness``, ``bed``, ``A`` (a field, or a scalar variable when one
A was inverted), ``thickness_std`` (spread of the cross-validation inversions; NaN without
cross-validation), ``thickness_obs`` (NaN where not observed), ``residual`` (modelled minus
observed at the observed cells, NaN elsewhere), ``surface`` (observed), ``mask``,
``thickness_obs_count``, ``baseline_thickness``, ``cv_fold`` (fold of each observed cell, -1
elsewhere) and ``cv_prediction`` (the held-out prediction of each observed cell); ``fs``
(Budd sliding, a field or a scalar) when sliding was inverted. The cost history has dimension
``iteration``: ``cost_<term>(iteration)`` for every term of the final inversion. Global
attributes: ``cv_rmse``, ``cv_bias``, ``cv_within_spread``, ``sliding_fraction``,
``cv_error_floor`` (error to add in quadrature to ``thickness_std`` for 95 % coverage),
``baseline_cv_rmse``, ``baseline_cv_bias``, ``baseline_tau``, ``mean_obs_thickness``, the
resolved config and the provenance.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .cf import attr_value, common_attrs, write_dataset
from .netcdf import FIELD_ATTRS
from .training import A_UNITS

FS_UNITS = "Pa-3 m2 a-1"

TERM_NAMES = {
    "total": "total cost",
    "obs": "thickness misfit (weighted by points per cell, over obs_error^2)",
    "surface": "misfit of the relaxed surface to the observed one (over surface_error^2)",
    "smooth_thickness": "Tikhonov smoothness of the thickness",
    "prior_thickness": "departure from the baseline thickness (over prior_error^2)",
    "prior_A": "departure of ln A from the prior (over A_prior_error^2)",
    "smooth_A": "Tikhonov smoothness of log A",
    "smooth_sliding": "Tikhonov smoothness of fs / invert.fs",
    "velocity": "surface-speed misfit (over velocity_error^2)",
}


def inversion_dataset(*, x, y, thickness, bed, A, surface, mask, thickness_obs, obs_count,
                      baseline_thickness, history: dict[str, list[float]],
                      thickness_std=None, cv_fold=None, cv_prediction=None, fs=None,
                      attrs: dict[str, Any], config_yaml: str,
                      provenance: dict[str, Any], crs: str | None = None) -> xr.Dataset:
    """The ``inversion.nc`` dataset (see the module docstring)."""
    dims = ("y", "x")
    H = np.asarray(thickness, np.float64)
    obs = np.asarray(thickness_obs, np.float64)
    nan = np.full(H.shape, np.nan)

    def field(values, **a):
        return (dims, np.asarray(values, np.float64), a)

    data = {
        "thickness": field(H, **FIELD_ATTRS["thickness"]),
        "bed": field(bed, units="m", long_name="bed elevation (observed surface minus "
                                               "inverted thickness)",
                     standard_name="bedrock_altitude"),
        "surface": field(surface, units="m", long_name="observed ice surface elevation",
                         standard_name="surface_altitude"),
        "thickness_std": field(nan if thickness_std is None else thickness_std, units="m",
                               long_name="thickness uncertainty: standard deviation of the "
                                         "cross-validation inversions"),
        "thickness_obs": field(obs, units="m", long_name="observed ice thickness (cell mean of "
                                                         "the points; NaN: not observed)"),
        "residual": field(np.where(np.isfinite(obs), H - obs, np.nan), units="m",
                          long_name="inverted minus observed thickness at observed cells"),
        "thickness_obs_count": field(obs_count, units="1",
                                     long_name="observation points per cell"),
        "mask": field(mask, units="1", long_name="glacier mask (1 = glacier)"),
        "baseline_thickness": field(baseline_thickness, units="m",
                                    long_name="perfect-plasticity thickness with the basal "
                                              "stress calibrated on all observations"),
    }
    A = np.asarray(A, np.float64)
    a_attrs = dict(units=A_UNITS, long_name="Glen's rate factor (inverted)")
    data["A"] = (dims, A, a_attrs) if A.ndim == 2 else ((), A, a_attrs)
    if fs is not None:
        fs = np.asarray(fs, np.float64)
        f_attrs = dict(units=FS_UNITS, long_name="Budd sliding parameter (inverted): sliding "
                                                 "speed fs (rho g)^n H^(n-1) |grad S|^n")
        data["fs"] = (dims, fs, f_attrs) if fs.ndim == 2 else ((), fs, f_attrs)
    if cv_fold is not None:
        data["cv_fold"] = (dims, np.asarray(cv_fold, np.int32),
                           dict(units="1", long_name="cross-validation fold of the observed "
                                                     "cell (-1: not observed)"))
        data["cv_prediction"] = field(cv_prediction, units="m",
                                      long_name="held-out prediction: thickness of the "
                                                "inversion without the cell's fold")
    n_it = len(history.get("total", []))
    for term, values in history.items():
        data[f"cost_{term}"] = (("iteration",), np.asarray(values, np.float64),
                                dict(units="1", long_name=TERM_NAMES.get(term, term)))
    coords = {
        "x": ("x", np.asarray(x, np.float64), dict(units="m", long_name="x (cell centre)",
                                                   axis="X")),
        "y": ("y", np.asarray(y, np.float64), dict(units="m", long_name="y (cell centre)",
                                                   axis="Y")),
        "iteration": ("iteration", np.arange(1, n_it + 1, dtype=np.int32),
                      dict(long_name="optimiser iteration of the final inversion (cost at the "
                                     "parameters before the update)")),
    }
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update(common_attrs("glacier-invert: inversion", config_yaml, provenance))
    if crs:
        ds.attrs["crs"] = crs
    ds.attrs.update({k: attr_value(v) for k, v in attrs.items()})
    return ds


def write_inversion(path: str | os.PathLike, ds: xr.Dataset) -> Path:
    """Write ``inversion.nc`` atomically (temporary file + rename)."""
    return write_dataset(path, ds, compress=tuple(v for v in ds.data_vars
                                                  if ds[v].ndim == 2))
