"""glacier: 2D shallow-ice glacier flow with learned laws (universal differential equations).

The public API, for notebooks and scripts (the console scripts are built on the same names):

- domains: ``build_domain(name, **options)`` -> ``Domain`` (grid, bed, thickness, mass balance,
  observations, defaults); ``Grid``; ``Physics`` (A, n, rho, g, fs);
- the solver: ``simulate(H0, bed, grid=, rheology=, smb=, save_at=SaveAt(times),
  scheme=ExplicitMUSCL() | ExplicitRKL2(max_dt) | ImplicitEuler(dt),
  adjoint=ForwardOnly() | Checkpointed() | StoreAll())`` -> a
  ``Trajectory``;
- a domain's forward run with diagnostics: ``run`` / ``run_in_intervals`` ->
  ``SimulationResult``;
- laws (``law.rheology(temperature, physics)``): ``GlenLaw``, ``glen_law``, ``ConstantA``,
  ``CuffeyPaterson``, ``NeuralAofT``, ``NeuralDiffusivity``, ``NeuralScaledDiffusivity``;
- files: ``read_glacier_file`` (glacier NetCDF files, validated), ``write_simulation``
  (``simulation.nc``).

Layout (imports go one way; see the README's developer notes): ``constants``, ``grid``,
``errors``, ``options`` -> ``physics/`` (params, stencils, faces, faces_adjoint, sia,
mass_balance, exact) -> ``laws``, ``nn`` -> ``schemes`` -> ``solver`` -> ``domains/``,
``simulation``, ``train``, ``invert/``, ``experiments`` -> ``io/`` (the outer ring; only
``io.readers`` is used inside, by ``domains.files``) -> ``apps/`` -> ``config/`` -> ``cli``.
"""

from .domains import Domain, build_domain
from .grid import Grid
from .io.netcdf import write_simulation
from .io.readers import read_glacier_file
from .laws import (
                   ConstantA,
                   CuffeyPaterson,
                   GlenLaw,
                   NeuralAofT,
                   NeuralDiffusivity,
                   NeuralScaledDiffusivity,
                   glen_law,
)
from .physics.params import Physics
from .schemes import ExplicitMUSCL, ExplicitRKL2, ImplicitEuler, Scheme
from .simulation import SimulationResult, run, run_in_intervals
from .solver import Adjoint, Checkpointed, ForwardOnly, SaveAt, StoreAll, Trajectory, simulate
from .version import __version__

__all__ = [
    "Adjoint", "Checkpointed", "ConstantA", "CuffeyPaterson", "Domain", "ExplicitMUSCL",
    "ExplicitRKL2", "ForwardOnly", "GlenLaw", "Grid", "ImplicitEuler",
    "NeuralAofT", "NeuralDiffusivity", "NeuralScaledDiffusivity", "Physics", "SaveAt",
    "Scheme", "SimulationResult", "StoreAll", "Trajectory", "__version__", "build_domain",
    "glen_law", "read_glacier_file", "run", "run_in_intervals", "simulate", "write_simulation",
]
