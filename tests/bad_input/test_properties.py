"""Property-based tests (hypothesis) of the two doors into the program: glacier files and config
overrides.

Every generated case must end either in a clear error (``InputDataError`` naming the file, a
variable and a fix; a config message naming the key) or in a correct domain, never in another
exception and never in a silently wrong field. Each example records its class and outcome as a
hypothesis event: ``python -m pytest tests/bad_input/test_properties.py
--hypothesis-show-statistics`` prints the counts.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from glacier.domains import build_domain
from glacier.errors import InputDataError
from glacier.io.readers import read_glacier_file

from .test_netcdf_validation import NX, NY, make_dataset

GRID_VARS = ["surface", "mask", "thickness_obs", "smb"]
ALL_VARS = [*GRID_VARS, "clim_temp_annual", "x", "y"]
UNITS = {  # units attribute -> factor to the model's unit (None: must be refused)
    "surface": {"m": 1.0, "km": 1e3, "ft": 0.3048, "degC": None, "m a-1": None},
    "thickness_obs": {"m": 1.0, "cm": 0.01, "kg": None},
    "smb": {"m w.e. a-1": 1.0, "mm w.e. a-1": 1e-3, "kg m-2 s-1": 31557.6, "m a-1": None,
            "K": None},
    "x": {"m": 1.0, "km": 1e3, "degrees_east": None},
}

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def mutations():
    """(class, function of a dataset -> dataset, whether it must be refused or None: either)."""
    var = st.sampled_from(GRID_VARS)
    cell = st.tuples(st.integers(0, NY - 1), st.integers(0, NX - 1))

    def drop(name):
        return ("missing variable", lambda ds: ds.drop_vars(name), name in ("surface", "x", "y"))

    def patch(name, where, value):
        def f(ds):
            a = ds[name].values.astype(np.float64)
            a[where] = value
            return ds.assign({name: (ds[name].dims, a, ds[name].attrs)})
        label = "Inf patch" if np.isinf(value) else "NaN patch"
        must = True if np.isinf(value) else (name == "surface" or None)
        return (label, f, must)

    def units(name, u):
        def f(ds):
            if name == "x":
                ds = ds.assign_coords(x=("x", ds["x"].values / UNITS[name][u], dict(units=u))
                                      if UNITS[name][u] else ds["x"].values)
                ds["x"].attrs["units"] = u
                return ds
            scale = UNITS[name][u] or 1.0
            out = ds.assign({name: (ds[name].dims, ds[name].values / scale, dict(units=u))})
            return out
        return ("units attribute", f, UNITS[name][u] is None)

    def transpose(name):
        return ("swapped axes", lambda ds: ds.assign({name: (("x", "y"), ds[name].values.T)}),
                True)

    def flip(axis):
        def f(ds):
            return ds.assign_coords({axis: (axis, ds[axis].values[::-1], dict(units="m"))})
        return ("flipped axis", f, True)

    def non_uniform(axis, k):
        def f(ds):
            c = ds[axis].values.astype(np.float64).copy()
            c[k:] += 7.0
            return ds.assign_coords({axis: (axis, c, dict(units="m"))})
        return ("non-uniform coordinate", f, True)

    def duplicated(axis, k):
        def f(ds):
            c = ds[axis].values.astype(np.float64).copy()
            c[k + 1] = c[k]
            return ds.assign_coords({axis: (axis, c, dict(units="m"))})
        return ("duplicated coordinate", f, True)

    def as_text(name):
        return ("string dtype", lambda ds: ds.assign({name: (ds[name].dims,
                np.full(ds[name].shape, "a"))}), True)

    def mask(value):
        return ("empty mask" if value == 0 else "full mask",
                lambda ds: ds.assign(mask=(("y", "x"), np.full((NY, NX), value, np.int8))),
                None if value else True)

    def absurd(name, factor):
        def f(ds):
            return ds.assign({name: (ds[name].dims, ds[name].values * factor, ds[name].attrs)})
        return ("absurd values", f, True if name in ("surface", "smb") else None)

    return st.one_of(
        st.sampled_from(ALL_VARS).map(drop),
        st.builds(patch, var, cell, st.sampled_from([np.nan, np.inf, -np.inf])),
        st.sampled_from(sorted(UNITS)).flatmap(
            lambda n: st.sampled_from(sorted(UNITS[n])).map(lambda u: units(n, u))),
        var.map(transpose),
        st.sampled_from(["x", "y"]).map(flip),
        st.builds(non_uniform, st.sampled_from(["x", "y"]), st.integers(1, 4)),
        st.builds(duplicated, st.sampled_from(["x", "y"]), st.integers(0, 4)),
        st.sampled_from(["surface", "smb", "mask"]).map(as_text),
        st.sampled_from([0, 1]).map(mask),
        st.builds(absurd, st.sampled_from(["surface", "smb"]), st.sampled_from([1e3, -1e3])),
    )


@SETTINGS
@given(st.lists(mutations(), min_size=1, max_size=2, unique_by=lambda m: m[0]))
def test_glacier_files_load_correctly_or_fail_clearly(changes):
    ds = make_dataset()
    classes = " + ".join(c for c, _, _ in changes)
    try:
        for _, f, _ in changes:
            ds = f(ds)
    except (KeyError, ValueError):  # e.g. swapping the axes of a variable already dropped
        event(f"{classes}: not applicable (skipped)")
        return
    must_fail = any(m is True for _, _, m in changes)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "generated.nc"
        try:
            ds.to_netcdf(path)
        except (ValueError, TypeError):
            event(f"{classes}: not writable as NetCDF (skipped)")
            return
        try:
            fields = read_glacier_file(path)
            domain = build_domain("netcdf", path=str(path))
        except InputDataError as e:
            message = str(e)
            assert "generated.nc" in message and ("Fix:" in message or "Check" in message), \
                message
            event(f"{classes}: clear error")
            return
        except Exception as e:  # noqa: BLE001 - the property: nothing else escapes
            pytest.fail(f"{classes}: {type(e).__name__} instead of a clear error: {e}")
    assert not must_fail, f"{classes}: accepted a file that must be refused"
    event(f"{classes}: loaded")
    # Loaded: the fields are the template's in model units (conversions applied, not guessed).
    reference = read_glacier_file_template()
    assert np.all(np.isfinite(domain.bed)) and np.all(domain.thickness >= 0)
    if "surface" in fields and not any(c in ("absurd values",) for c, _, _ in changes):
        finite = np.isfinite(fields["surface"])
        np.testing.assert_allclose(fields["surface"][finite], reference["surface"][finite],
                                   rtol=1e-6)
    assert fields["dx"] == pytest.approx(reference["dx"])


_TEMPLATE: dict = {}


def read_glacier_file_template() -> dict:
    if not _TEMPLATE:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "template.nc"
            make_dataset().to_netcdf(path)
            _TEMPLATE.update(read_glacier_file(path))
    return _TEMPLATE


# --------------------------------------------------------------------------------------------
# Config overrides

KEYS = ["physics.A", "physics.n", "physics.rho", "solver.t_end", "solver.cfl", "solver.dt",
        "solver.scheme", "solver.max_steps", "solver.dtype", "seed", "glacier.dx",
        "solver.cfll", "physic.A", "solver", "glacier"]
VALUES = ["1e-16", "-1", "0", "abc", "null", "[1,2]", "3", "0.1", "1e300", "nan", "inf",
          "implicit", "rkl2", "float16", "true", "halfar", "nowhere", ""]


@settings(max_examples=80, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from(VALUES)), min_size=1,
                max_size=3))
def test_config_overrides_compose_or_name_the_key(pairs):
    from glacier import config

    overrides = [f"{k}={v}" for k, v in pairs]
    try:
        problem = config.check_overrides(["glacier=halfar", "solver.t_end=10", *overrides],
                                         primary="simulate", command="glacier-simulate")
    except Exception as e:  # noqa: BLE001 - the property: nothing escapes
        pytest.fail(f"{overrides}: {type(e).__name__}: {e}")
    if problem is None:
        event("overrides: accepted")
        return
    event("overrides: clear error")
    assert any(k.split(".")[0] in problem for k, _ in pairs), (overrides, problem)
