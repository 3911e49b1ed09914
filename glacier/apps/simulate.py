"""``glacier-simulate``'s work: a forward run of one domain -> ``simulation.nc``."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from .. import solver as slv
from ..compile import CompileClock
from ..domains import Domain
from ..io import netcdf, provenance
from ..physics.params import Physics
from ..schemes import Scheme, scheme_name
from ..simulation import INTERRUPTED, run_in_intervals
from .common import bar, output_location, paragraph


@dataclasses.dataclass(frozen=True)
class SimulateJob:
    """Everything a forward run needs.

    Attributes:
        domain: the glacier (``glacier.domains.build_domain``).
        physics: the physical parameters (``domain.physics`` with overrides).
        save_at: save times; scheme: the time-stepping scheme.
        dtype: "float64" or "float32"; area_threshold: thickness [m] counted in ``area``.
        seed: the run's seed (recorded); config_yaml: the resolved config (recorded);
        argv: the command line (recorded).
    """

    domain: Domain
    physics: Physics
    save_at: slv.SaveAt
    scheme: Scheme
    dtype: str = "float64"
    area_threshold: float = 1.0
    seed: int = 0
    config_yaml: str = ""
    argv: tuple[str, ...] = ()


def run(job: SimulateJob, out_dir: Path) -> int:
    """See ``_run``; JAX's compile time during the run is measured (``CompileClock``)."""
    with CompileClock() as clock:
        return _run(job, out_dir, clock)


def _run(job: SimulateJob, out_dir: Path, clock: CompileClock) -> int:
    """The work of ``glacier-simulate`` in ``out_dir``; returns the exit status.

    domain, physics, scheme -> forward run (with a progress bar) -> ``simulation.nc`` +
    ``provenance.json`` -> one summary line on stdout (0), or the failure on stderr (3, with
    the good states written).
    """
    start = time.perf_counter()
    out_dir = output_location(out_dir, "simulation.nc", "provenance.json")
    domain = job.domain
    record = provenance.collect(list(job.argv), int(job.seed))
    progress = bar(job.save_at.t_end, domain.name, "{desc}: {percentage:3.0f}%|{bar}| "
                   "t = {n:g}/{total:g} a{postfix} [{elapsed}<{remaining}]", unit="a")

    def on_interval(t: float, volume: float, newton: int) -> None:
        progress.n = t
        its = f", {newton} Newton iterations" if newton else ""
        progress.set_postfix_str(f"V = {volume / 1e9:.4g} km3{its}")

    try:
        result = run_in_intervals(domain, save_at=job.save_at, scheme=job.scheme,
                                  physics=job.physics, dtype=job.dtype,
                                  area_threshold=job.area_threshold, on_interval=on_interval)
    finally:
        progress.close()

    path = out_dir / "simulation.nc"
    netcdf.write_simulation(path, result, config_yaml=job.config_yaml, provenance=record,
                            wall_time_s=time.perf_counter() - start)
    wall = time.perf_counter() - start
    steps = int(result.steps.sum())
    record.update(outputs=["simulation.nc"], steps=steps, scheme=scheme_name(job.scheme),
                  newton_iterations=int(result.iterations.sum()),
                  solve_wall_time_s=result.wall_time,
                  wall_time_s=wall, simulated_years=float(result.times[-1]),
                  mass_budget_error=result.budget_error, compile_time_s=clock.seconds,
                  programs_compiled=clock.programs,
                  status="completed" if result.failure is None else f"failed: {result.failure}")
    record["warnings"] = result.warnings
    provenance.write_json(out_dir / "provenance.json", record)
    newton = int(result.iterations.sum())
    its = f" ({newton} Newton iterations)" if newton else ""
    print(f"glacier-simulate: {domain.name}: {steps} steps{its}, "
          f"V = {result.volume[-1] / 1e9:.6g} "
          f"km3, mass-budget error {result.budget_error:.1e}, wall {wall:.3g} s (compiling "
          f"{clock.seconds:.3g} s) -> {path}",
          flush=True)
    for text in result.warnings:
        print(paragraph(f"glacier-simulate: warning: {text}."), file=sys.stderr)
    if result.failure is not None and result.failure.startswith(INTERRUPTED):
        print(paragraph(f"glacier-simulate: {result.failure} (written to {path}, status "
                        "'failed: interrupted ...'). Rerun with solver.t_end to go further."),
              file=sys.stderr)
        return 130
    if result.failure is not None:
        hint = ("Raise solver.max_steps (the step budget of one save interval) or save more "
                "often with a smaller solver.save_every." if "step budget" in result.failure
                else "Use a smaller solver.dt, or check the physics values."
                if "implicit step" in result.failure
                else "Lower solver.cfl or solver.max_dt, or check the physics values.")
        print(paragraph(f"glacier-simulate: error: the solution failed: {result.failure} "
                        f"(written to {path}). {hint}"), file=sys.stderr)
        return 3
    return 0
