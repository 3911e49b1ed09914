"""Writers of ``glacier-train``'s files: ``training.nc``, ``law.nc`` and the multi-glacier
``simulation.nc`` (CONTRACT.md), each CF-1.8 and written atomically (temporary file + rename).

- ``training.nc``: dimension ``epoch`` (1-based: the loss of epoch k is that of the parameters
  before the k-th optimizer step) and ``glacier`` (the glaciers' names as a string coordinate);
  ``loss(epoch)``, ``loss_glacier(epoch, glacier)``, ``learning_rate(epoch)`` (NaN in the L-BFGS
  phase), ``wall_time(epoch)`` [s], ``phase(epoch)`` ("adam" or "lbfgs").
- ``law.nc``: for laws of temperature, coordinate ``temperature`` [degC] with
  ``A_learned(temperature)`` and (twin experiments) ``A_true(temperature)`` [Pa^-3 a^-1], plus
  ``glacier_temperature(glacier)``; for a diffusivity network, ``A_learned(H, slope)`` on a grid
  of its inputs (thickness [m], surface slope [1]) at the mean training temperature.
- ``simulation.nc``: the trained model on the training glaciers, on the padded common grid:
  ``thickness(glacier, time, y, x)`` and the other fields of ``glacier-simulate``'s file that
  apply, ``thickness_obs`` and (twins) ``thickness_true``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from .cf import attr_value, common_attrs, write_dataset

if TYPE_CHECKING:
    from ..train import History
from .netcdf import FIELD_ATTRS, SERIES_ATTRS

A_UNITS = "Pa-3 a-1"


def _glacier_coord(names) -> tuple:
    return ("glacier", np.asarray(list(names), dtype=object),
            dict(long_name="glacier name", cf_role="timeseries_id"))


# --------------------------------------------------------------------------------------------
# training.nc


def training_dataset(history: History, names, *, config_yaml: str,
                     provenance: dict[str, Any], attrs: dict[str, Any] | None = None,
                     weights=None) -> xr.Dataset:
    """The ``training.nc`` dataset of ``history`` (padding glaciers beyond ``names`` dropped)."""
    n = len(history.loss)
    g = len(names)
    per = np.full((n, g), np.nan)
    for i, row in enumerate(history.loss_glacier):
        row = np.asarray(row, np.float64).ravel()[:g]
        per[i, :row.size] = row
    coords = {
        "epoch": ("epoch", np.arange(1, n + 1, dtype=np.int32),
                  dict(long_name="epoch (optimizer step), 1-based; its loss is that of the "
                                 "parameters before the step", units="1")),
        "glacier": _glacier_coord(names),
    }
    data_vars = {
        "loss": (("epoch",), np.asarray(history.loss, np.float64),
                 dict(units="1", long_name="total loss: weighted mean over glaciers of the "
                                           "normalised thickness misfit, plus regularisation")),
        "loss_glacier": (("epoch", "glacier"), per,
                         dict(units="1", long_name="normalised thickness misfit of each "
                                                   "glacier: mean of ((H - H_obs) / scale)^2")),
        "learning_rate": (("epoch",), np.asarray(history.learning_rate, np.float64),
                          dict(units="1", long_name="learning rate of Adam (NaN in the "
                                                    "L-BFGS phase)")),
        "wall_time": (("epoch",), np.asarray(history.wall_time, np.float64),
                      dict(units="s", long_name="wall-clock time since the start of training "
                                                "at the end of the epoch")),
        "phase": (("epoch",), np.asarray(list(history.phase), dtype=object),
                  dict(long_name="optimizer of the epoch: adam or lbfgs")),
    }
    if weights is not None:
        data_vars["glacier_weight"] = (
            ("glacier",), np.asarray(weights, np.float64).ravel()[:g],
            dict(units="1", long_name="weight of each glacier in the loss: loss = "
                                      "sum(w loss_glacier) / sum(w) + regularisation"))
    out = common_attrs("glacier-train: training history", config_yaml, provenance)
    for key, value in (attrs or {}).items():
        out[key] = attr_value(value)
    return xr.Dataset(data_vars, coords=coords, attrs=out)


def write_training(path: str | os.PathLike, history: History, names, *, config_yaml: str,
                   provenance: dict[str, Any], attrs: dict[str, Any] | None = None,
                   weights=None) -> Path:
    """Write ``training.nc`` atomically."""
    return write_dataset(path, training_dataset(history, names, config_yaml=config_yaml,
                                                provenance=provenance, attrs=attrs,
                                                weights=weights))


# --------------------------------------------------------------------------------------------
# law.nc


def law_of_temperature_dataset(temperature, A_learned, *, A_true=None, names=(),
                               glacier_temperature=(), config_yaml: str,
                               provenance: dict[str, Any],
                               attrs: dict[str, Any] | None = None) -> xr.Dataset:
    """``law.nc`` of a law of temperature: A_learned(temperature) [and A_true(temperature)]."""
    coords = {
        "temperature": ("temperature", np.asarray(temperature, np.float64),
                        dict(units="degC", long_name="long-term mean air temperature")),
        "glacier": _glacier_coord(names),
    }
    data_vars = {
        "A_learned": (("temperature",), np.asarray(A_learned, np.float64),
                      dict(units=A_UNITS, long_name="Glen's rate factor of the learned law")),
        "glacier_temperature": (("glacier",), np.asarray(glacier_temperature, np.float64),
                                dict(units="degC", long_name="long-term mean air temperature "
                                                             "of each training glacier")),
    }
    if A_true is not None:
        data_vars["A_true"] = (("temperature",), np.asarray(A_true, np.float64),
                               dict(units=A_UNITS, long_name="Glen's rate factor of the true "
                                                             "law (Cuffey & Paterson 2010)"))
    out = common_attrs("glacier-train: learned rate factor A(T)", config_yaml, provenance)
    for key, value in (attrs or {}).items():
        out[key] = attr_value(value)
    return xr.Dataset(data_vars, coords=coords, attrs=out)


def law_of_inputs_dataset(H, slope, A_learned, *, temperature: float, A_true=None, names=(),
                          glacier_temperature=(), config_yaml: str,
                          provenance: dict[str, Any],
                          attrs: dict[str, Any] | None = None) -> xr.Dataset:
    """``law.nc`` of a diffusivity network: A_learned(H, slope) at one temperature."""
    coords = {
        "H": ("H", np.asarray(H, np.float64), dict(units="m", long_name="ice thickness",
                                                  standard_name="land_ice_thickness")),
        "slope": ("slope", np.asarray(slope, np.float64),
                  dict(units="1", long_name="surface slope |grad S|")),
        "glacier": _glacier_coord(names),
    }
    data_vars = {
        "A_learned": (("H", "slope"), np.asarray(A_learned, np.float64),
                      dict(units=A_UNITS, long_name="creep factor of the learned diffusivity "
                                                    "at the mean training temperature")),
        "glacier_temperature": (("glacier",), np.asarray(glacier_temperature, np.float64),
                                dict(units="degC", long_name="long-term mean air temperature "
                                                             "of each training glacier")),
    }
    out = common_attrs("glacier-train: learned creep factor A(H, slope)", config_yaml,
                        provenance)
    out["temperature"] = float(temperature)
    out["temperature_units"] = "degC"
    if A_true is not None:
        out["A_true_at_temperature"] = float(A_true)
    for key, value in (attrs or {}).items():
        out[key] = attr_value(value)
    return xr.Dataset(data_vars, coords=coords, attrs=out)


def law_of_diffusivity_dataset(thickness, slope, D_learned, state_density, *, D_true=None,
                               temperature: float, names=(), config_yaml: str,
                               provenance: dict[str, Any],
                               attrs: dict[str, Any] | None = None) -> xr.Dataset:
    """``law.nc`` of the diffusivity twin: D_learned [and D_true] [m2 a-1] and the density of
    the training glaciers' visited states on bin centres of thickness [m] and slope [-]."""
    dims = ("thickness", "slope")
    coords = {
        "thickness": ("thickness", np.asarray(thickness, np.float64),
                      dict(units="m", long_name="ice thickness (bin centre)",
                           standard_name="land_ice_thickness")),
        "slope": ("slope", np.asarray(slope, np.float64),
                  dict(units="1", long_name="surface slope |grad S| (bin centre)")),
        "glacier": _glacier_coord(names),
    }
    data_vars = {
        "D_learned": (dims, np.asarray(D_learned, np.float64),
                      dict(units="m2 a-1", long_name="SIA diffusivity of the learned law at "
                                                     "the training temperature")),
        "state_density": (dims, np.asarray(state_density, np.float64),
                          dict(units="1", long_name="fraction of the training glaciers' "
                               "visited (thickness, slope) states in each bin (ice cells, "
                               "all observed times)")),
    }
    if D_true is not None:
        data_vars["D_true"] = (dims, np.asarray(D_true, np.float64),
                               dict(units="m2 a-1", long_name="SIA diffusivity of the true "
                                                              "law of the twin"))
    out = common_attrs("glacier-train: learned diffusivity D(thickness, slope)", config_yaml,
                       provenance)
    out["temperature"] = float(temperature)
    out["temperature_units"] = "degC"
    for key, value in (attrs or {}).items():
        out[key] = attr_value(value)
    return xr.Dataset(data_vars, coords=coords, attrs=out)


def write_law(path: str | os.PathLike, ds: xr.Dataset) -> Path:
    """Write a ``law.nc`` dataset atomically."""
    return write_dataset(path, ds)


# --------------------------------------------------------------------------------------------
# simulation.nc of many glaciers


def batch_simulation_dataset(*, names, x, y, times, thickness, bed, velocity=None,
                             thickness_obs=None, thickness_true=None, ice_free=None,
                             temperature=None, cell_area: float, area_threshold: float = 1.0,
                             config_yaml: str, provenance: dict[str, Any],
                             attrs: dict[str, Any] | None = None) -> xr.Dataset:
    """The multi-glacier ``simulation.nc``: fields (glacier, time, y, x) on a common grid.

    Args:
        names: the glaciers (G).
        x, y: cell centres [m] of the common (padded) grid.
        times: save times [a] (nt).
        thickness: (G, nt, ny, nx) modelled thickness [m].
        bed: (G, ny, nx) bed [m].
        velocity: optional (G, nt, ny, nx) surface speed [m a-1].
        thickness_obs: optional (G, nt, ny, nx) observed thickness (NaN: not observed).
        thickness_true: optional (G, nt, ny, nx) thickness of the true model (twins).
        ice_free: optional (G, ny, nx) cells held ice-free (padding and masks).
        temperature: optional (G,) long-term mean air temperature [degC].
        cell_area: [m2] for volume and area.
        area_threshold: thickness [m] above which a cell counts in ``area``.
    """
    H = np.asarray(thickness)
    dims4 = ("glacier", "time", "y", "x")
    coords = {
        "glacier": _glacier_coord(names),
        "time": ("time", np.asarray(times, np.float64),
                 dict(units="a", long_name="time since the start of the simulation", axis="T",
                      comment="model years counted from the initial state")),
        "y": ("y", np.asarray(y, np.float64),
              dict(units="m", long_name="y coordinate of cell centres of the common grid",
                   standard_name="projection_y_coordinate", axis="Y")),
        "x": ("x", np.asarray(x, np.float64),
              dict(units="m", long_name="x coordinate of cell centres of the common grid",
                   standard_name="projection_x_coordinate", axis="X")),
    }
    bed = np.asarray(bed, H.dtype)
    data_vars: dict[str, Any] = {
        "thickness": (dims4, H, FIELD_ATTRS["thickness"]),
        "surface": (dims4, H + bed[:, None], FIELD_ATTRS["surface"]),
        "bed": (("glacier", "y", "x"), bed,
                dict(units="m", long_name="bed elevation", standard_name="bedrock_altitude")),
        "volume": (("glacier", "time"), H.sum(axis=(-2, -1)).astype(np.float64) * cell_area,
                   SERIES_ATTRS["volume"]),
        "area": (("glacier", "time"),
                 (H > area_threshold).sum(axis=(-2, -1)).astype(np.float64) * cell_area,
                 SERIES_ATTRS["area"]),
    }
    if velocity is not None:
        data_vars["velocity"] = (dims4, np.asarray(velocity, H.dtype), FIELD_ATTRS["velocity"])
    if thickness_obs is not None:
        data_vars["thickness_obs"] = (dims4, np.asarray(thickness_obs, H.dtype), dict(
            units="m", long_name="observed ice thickness (NaN: not observed)",
            standard_name="land_ice_thickness"))
    if thickness_true is not None:
        data_vars["thickness_true"] = (dims4, np.asarray(thickness_true, H.dtype), dict(
            units="m", long_name="ice thickness of the true model (twin experiment)",
            standard_name="land_ice_thickness"))
    if ice_free is not None:
        data_vars["ice_free"] = (("glacier", "y", "x"), np.asarray(ice_free, np.int8), dict(
            units="1", long_name="1 where the cell is held ice-free (outside the glacier's "
                                 "own grid or mask)"))
    if temperature is not None:
        data_vars["temperature"] = (("glacier",), np.asarray(temperature, np.float64), dict(
            units="degC", long_name="long-term mean air temperature of the glacier"))
    out = common_attrs("glacier-train: the trained model on the training glaciers",
                        config_yaml, provenance)
    out["comment"] = ("Every glacier is centred on a common grid padded with ice-free cells; "
                      "x and y are the coordinates of that grid.")
    for key, value in (attrs or {}).items():
        out[key] = attr_value(value)
    return xr.Dataset(data_vars, coords=coords, attrs=out)


def write_batch_simulation(path: str | os.PathLike, ds: xr.Dataset) -> Path:
    """Write the multi-glacier ``simulation.nc`` atomically (fields compressed)."""
    fields = [n for n in ("thickness", "surface", "velocity", "thickness_obs", "thickness_true",
                          "bed") if n in ds]
    return write_dataset(path, ds, compress=tuple(fields))
