"""Shared helpers of the numerical tests (no fixtures: plain functions)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from glacier.domains import Domain
from glacier.physics import native
from glacier.schemes import ExplicitMUSCL
from glacier.simulation import SimulationResult, run
from glacier.solver import SaveAt

needs_kernel = pytest.mark.skipif(
    jax.default_backend() != "cpu" or not native.load(),
    reason="the native kernels are CPU custom calls: they need the CPU backend (not a GPU "
           "run of scripts/gpu_check.sh) and a C++ compiler")
"""The mark of the tests that call the native kernels directly (their FFI targets exist on
the CPU only)."""


def run_domain(domain: Domain, times, *, dtype: str = "float64", max_dt: float | None = None,
               **stepping) -> SimulationResult:
    """Run ``domain`` with its default physics and ``max_dt`` at the save ``times``."""
    max_dt = domain.solver["max_dt"] if max_dt is None else max_dt
    result = run(domain, save_at=SaveAt(tuple(times)),
                 scheme=ExplicitMUSCL(max_dt=max_dt, **stepping), dtype=dtype)
    assert result.failure is None, result.failure
    return result


def budget_residual(result: SimulationResult) -> np.ndarray:
    """|V(t) - V(0) - (smb_volume - outflow_volume)| / max V at every save, shape (nt,)."""
    change = result.volume - result.volume[0]
    booked = result.smb_volume - result.outflow_volume
    scale = max(float(np.max(result.volume)), float(np.max(np.abs(result.smb_volume))), 1e-300)
    return np.abs(change - booked) / scale


def fitted_order(dx, errors) -> float:
    """Least-squares slope p of log(error) = p log(dx) + c."""
    return float(np.polyfit(np.log(np.asarray(dx, float)), np.log(np.asarray(errors, float)),
                            1)[0])
