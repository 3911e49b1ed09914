"""Forward runs that report progress after every save interval.

``run_in_intervals`` gives the same ``SimulationResult`` as ``simulation.run`` but advances one
save interval at a time, calling ``on_interval(t, volume)`` in between (the console script
drives a progress bar with it). Every interval is one call of ``simulation.run`` with the same
static save times ``(0, save_every)``, so the solver compiles once (plus once for a shorter last
interval); the caller carries the thickness, the time offset and the cumulative volumes.

Compared with one ``simulation.run`` over all save times, the step sizes are the same but the
clock restarts at 0 in every interval, so the last step of each interval can differ in the last
bits: results agree to round-off, and each way is deterministic on its own.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from . import simulation
from . import solver as slv
from .domains import Domain


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _Shifted:
    """A mass-balance model seen from a clock that starts at ``offset`` years."""

    smb: Any
    offset: Any

    def __call__(self, S, t=0.0):
        return self.smb(S, t + self.offset)


def _intervals(times: tuple[float, ...]) -> list[float]:
    """Interval lengths, with lengths equal to the first to round-off made exactly equal (so
    that the solver, whose save times are static, compiles once for all of them)."""
    lengths = [b - a for a, b in itertools.pairwise(times)]
    first = lengths[0]
    return [first if abs(d - first) <= 1e-9 * first else d for d in lengths]


def run_in_intervals(domain: Domain, *, physics: dict[str, float], times: tuple[float, ...],
                     stepping: slv.Stepping, dtype: str = "float64",
                     area_threshold: float = 1.0,
                     on_interval: Callable[[float, float], None] | None = None,
                     ) -> simulation.SimulationResult:
    """``simulation.run`` one save interval at a time (same arguments, same result layout).

    Args:
        domain, physics, times, stepping, dtype, area_threshold: as ``simulation.run``.
        on_interval: called as ``on_interval(t, volume)`` [a, m^3] after each interval.

    On a numerical failure the states up to the last good save are kept and ``failure`` names
    the interval, in the run's absolute times.
    """
    lengths = _intervals(tuple(float(t) for t in times))
    H = np.asarray(domain.thickness)
    parts: list[simulation.SimulationResult] = []
    smb_offset = out_offset = 0.0
    wall = 0.0
    failure = None
    for i, dt in enumerate(lengths):
        t0 = float(times[i])
        piece = dataclasses.replace(domain, thickness=H, smb=_Shifted(domain.smb, t0))
        res = simulation.run(piece, physics=physics, times=(0.0, dt), stepping=stepping,
                             dtype=dtype, area_threshold=area_threshold)
        wall += res.wall_time
        res = dataclasses.replace(res, smb_volume=res.smb_volume + smb_offset,
                                  outflow_volume=res.outflow_volume + out_offset)
        parts.append(res)
        if res.failure is not None:
            reason = res.failure.split(" in the interval")[0]
            failure = (f"{reason} in the interval from t = {t0:g} a to t = {times[i + 1]:g} a;"
                       f" states up to t = {t0:g} a are kept")
            break
        H = res.thickness[-1]
        smb_offset, out_offset = float(res.smb_volume[-1]), float(res.outflow_volume[-1])
        if on_interval is not None:
            on_interval(float(times[i + 1]), float(res.volume[-1]))

    def joined(name):
        first = getattr(parts[0], name)[:1]
        rest = [getattr(p, name)[1:] for p in parts]
        return np.concatenate([first, *rest], axis=0)

    kept = 1 + sum(len(p.times) - 1 for p in parts)
    return simulation.SimulationResult(
        domain=domain, times=np.asarray(times[:kept], np.float64),
        thickness=joined("thickness"), surface=joined("surface"), velocity=joined("velocity"),
        smb=joined("smb"), volume=joined("volume"), area=joined("area"),
        smb_volume=joined("smb_volume"), outflow_volume=joined("outflow_volume"),
        steps=joined("steps"), physics=dict(physics), wall_time=wall, failure=failure,
    )
