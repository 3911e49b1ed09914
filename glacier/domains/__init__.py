"""Built-in domains and the loader for user NetCDF files.

A ``Domain`` is everything a run needs besides the configuration of physics and solver: the
grid, bed, initial thickness, surface mass balance, optional masks and observations, and the
defaults that make the case what it is in the literature (e.g. A = 1e-16 for Bueler's Test B).
``build_domain(name, **options)`` is the one factory; ``options`` are the ``glacier.*`` config
keys other than ``name``. Unknown options raise a ``ConfigError`` that lists the valid ones.

Synthetic cases live in ``domains.synthetic``; real glaciers and user files in ``domains.real``.
"""

from . import files, synthetic  # noqa: F401  (register the builders)
from .base import Domain, build_domain, names, options, options_class, register

__all__ = ["Domain", "build_domain", "names", "options", "options_class", "register"]
