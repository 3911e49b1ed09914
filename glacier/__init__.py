"""glacier: 2D shallow-ice glacier flow with learned laws (universal differential equations).

Layout (imports go one way, top to bottom):

- ``constants``, ``grid``, ``errors``: units, the static grid, the error types.
- ``physics``: pure array functions (SIA fluxes, mass balance, exact solutions).
- ``laws``: rheology laws with one call signature (physical or learned).
- ``solver``: adaptive explicit time stepping, save times, differentiation strategy.
- ``domains``: built-in domains and the validated NetCDF loader.
- ``io``: the only place that touches files (NetCDF writers, provenance).
- ``config``/``cli``: Hydra schemas and the thin console-script entry points.
"""

__version__ = "0.1.0"
