"""Unit tests of glacier.physics.params.Physics: defaults, validation, replace, hashing."""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
import pytest

from glacier.constants import GLEN_N, GRAVITY, RHO_ICE
from glacier.physics.params import RANGES, Physics


def test_defaults():
    p = Physics(A=1e-16)
    assert p.A == 1e-16
    assert p.n == GLEN_N == 3.0
    assert p.rho == RHO_ICE == 910.0
    assert p.g == GRAVITY == 9.81
    assert p.fs == 0.0


def test_a_is_required():
    with pytest.raises(TypeError):
        Physics()


def test_values_become_floats():
    p = Physics(A=1e-16, n=3, rho=917, g=10, fs=0)
    for name in ("A", "n", "rho", "g", "fs"):
        assert type(getattr(p, name)) is float
    assert p == Physics(A=1e-16, n=3.0, rho=917.0, g=10.0, fs=0.0)
    assert type(Physics(A=np.float64(1e-16)).A) is float


def test_as_dict():
    p = Physics(A=2e-17, n=3.5, rho=900.0, g=9.8, fs=5e-20)
    d = p.as_dict()
    assert d == {"A": 2e-17, "n": 3.5, "rho": 900.0, "g": 9.8, "fs": 5e-20}
    assert Physics(**d) == p


@pytest.mark.parametrize("key, value", [
    ("A", 0.0), ("A", -1e-16), ("A", 1e-4), ("A", math.nan), ("A", math.inf),
    ("n", 1.0), ("n", 0.5), ("n", 5.5), ("n", math.nan),
    ("rho", 100.0), ("rho", 2500.0), ("rho", -910.0), ("rho", math.inf),
    ("g", 0.0), ("g", 0.1), ("g", 981.0), ("g", math.nan),
])
def test_out_of_range_values_are_rejected_naming_the_key(key, value):
    kwargs = {"A": 1e-16, key: value}
    with pytest.raises(ValueError, match=rf"^{key}=.*outside the physically possible range"):
        Physics(**kwargs)


@pytest.mark.parametrize("value", [-1e-20, -math.inf, math.inf, math.nan])
def test_bad_sliding_parameter_is_rejected_naming_fs(value):
    with pytest.raises(ValueError, match=r"^fs=.*must be >= 0"):
        Physics(A=1e-16, fs=value)


@pytest.mark.parametrize("key", ["A", "n", "rho", "g", "fs"])
@pytest.mark.parametrize("value", ["3", None, True, [1.0]])
def test_non_numbers_are_rejected_naming_the_key(key, value):
    kwargs = {"A": 1e-16, key: value}
    with pytest.raises(ValueError, match=rf"^{key}=.*must be a number"):
        Physics(**kwargs)


def test_upper_bounds_are_inclusive_lower_bounds_exclusive():
    for key, (lo, hi) in RANGES.items():
        kwargs = {"A": 1e-16, key: hi}
        assert getattr(Physics(**kwargs), key) == hi
        with pytest.raises(ValueError, match=key):
            Physics(**{"A": 1e-16, key: lo})
    assert Physics(A=1e-16, fs=0.0).fs == 0.0
    assert Physics(A=1e-16, fs=1e-20).fs == 1e-20


def test_literature_values_are_accepted():
    # Bueler's tests, temperate ice (C&P 2.4e-24 s^-1 Pa^-3 in a^-1), and n = 1 + eps
    Physics(A=1e-16)
    Physics(A=2.4e-24 * 365.25 * 86400.0, n=3.0, rho=917.0, g=9.81)
    Physics(A=1e-16, n=1.0001, fs=5.7e-20)


def test_replace_overrides_and_keeps_the_rest():
    p = Physics(A=1e-16, fs=1e-20)
    q = p.replace(A=2e-16, rho=917.0)
    assert (q.A, q.rho) == (2e-16, 917.0)
    assert (q.n, q.g, q.fs) == (p.n, p.g, p.fs)
    assert p.A == 1e-16 and p.rho == 910.0  # the original is unchanged


def test_replace_with_none_keeps_values():
    p = Physics(A=3e-17, n=3.2, rho=900.0, g=9.8, fs=1e-20)
    assert p.replace(A=None, n=None, rho=None, g=None, fs=None) == p
    q = p.replace(A=None, n=4.0)
    assert q.A == 3e-17 and q.n == 4.0
    assert p.replace() == p


def test_replace_validates_new_values():
    p = Physics(A=1e-16)
    with pytest.raises(ValueError, match="^rho="):
        p.replace(rho=1e5)
    with pytest.raises(ValueError, match="^fs="):
        p.replace(fs=-1.0)
    assert type(p.replace(n=4).n) is float


def test_replace_rejects_unknown_keys():
    p = Physics(A=1e-16)
    with pytest.raises(ValueError, match="unknown physical parameter.*T, mu"):
        p.replace(mu=1.0, T=-5.0)
    with pytest.raises(ValueError, match="valid: A, fs, g, n, rho"):
        p.replace(glen_n=3.0)
    # an unknown key is rejected even when its value is None
    with pytest.raises(ValueError, match="unknown physical parameter"):
        p.replace(B=None)


def test_frozen_and_hashable():
    a = Physics(A=1e-16)
    b = Physics(A=1e-16, n=3, rho=910, g=9.81, fs=0)
    c = a.replace(fs=1e-20)
    assert a == b and hash(a) == hash(b)
    assert a != c
    assert len({a, b, c}) == 2
    assert {a: "x"}[b] == "x"
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.A = 2e-16


def test_usable_as_static_jit_argument():
    traces = []

    def f(x, physics):
        traces.append(physics)
        return x * physics.rho * physics.g

    jf = jax.jit(f, static_argnums=1)
    assert float(jf(1.0, Physics(A=1e-16))) == pytest.approx(910.0 * 9.81)
    assert float(jf(2.0, Physics(A=1e-16))) == pytest.approx(2 * 910.0 * 9.81)
    assert len(traces) == 1
    assert float(jf(1.0, Physics(A=1e-16, rho=917.0))) == pytest.approx(917.0 * 9.81)
    assert len(traces) == 2


def test_implausible_values_set_by_a_user_are_named():
    from glacier.physics.params import implausible

    ok = Physics(A=2.4e-24 * 365.25 * 86400.0, fs=1.8e-12)
    assert implausible(ok, ["A", "n", "rho", "g", "fs"]) == []
    assert "strain rate" in implausible(Physics(A=1e-6), ["A"])[0]
    assert "strain rate" in implausible(Physics(A=2.4e-24), ["A"])[0]  # per second
    assert implausible(Physics(A=1e-6), []) == []  # only what the user set is judged
    assert "rho=100.5" in implausible(Physics(A=1e-16, rho=100.5), ["rho"])[0]
    assert "sliding speed" in implausible(Physics(A=1e-16, fs=1e-5), ["fs"])[0]


def test_signed_summary_numbers_never_read_minus_zero():
    from glacier.apps.invert import _signed

    assert [_signed(v) for v in (-0.04, 0.04, 0.0, -1.26, 2.0)] == [
        "0.0", "0.0", "0.0", "-1.3", "+2.0"]


def test_a_refused_runs_folder_is_removed_only_when_it_holds_nothing_else(tmp_path):
    from glacier.config.command_line import remove_if_only_record

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("a: 1\n")
    (run / "simulate.log").write_text("")
    keep = tmp_path / "keep"
    (keep / "checkpoints").mkdir(parents=True)
    (keep / "train.log").write_text("")
    assert remove_if_only_record(run) and not run.exists()
    assert not remove_if_only_record(keep) and keep.exists()
