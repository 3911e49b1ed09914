"""Rheology laws with one call signature.

A law is a pytree with two methods, ``diffusivity(H, slope2, axis)`` at faces and
``surface_speed(H, slope2)`` at cell centres (see ``physics.sia.Rheology``). The solver calls
only these, so a learned law is a drop-in for a physical one (the pattern of jax-cfd's learned
viscosities). Gridded parameters are averaged to the faces with ``grid.cell_to_face``.
"""

from __future__ import annotations

import dataclasses

import jax

from .constants import GLEN_N, GRAVITY, RHO_ICE
from .grid import cell_to_face
from .physics import sia


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class GlenLaw:
    """Glen's law with a rate factor A (scalar or field) and optional Budd-type sliding.

    Args:
        A: rate factor [Pa^-n a^-1], scalar or (ny, nx) field.
        fs: sliding parameter [Pa^-n m^2 a^-1], scalar or (ny, nx); 0 disables sliding.
        n, rho, g: static physical constants.
    """

    A: jax.Array | float
    fs: jax.Array | float = 0.0
    n: float = dataclasses.field(default=GLEN_N, metadata=dict(static=True))
    rho: float = dataclasses.field(default=RHO_ICE, metadata=dict(static=True))
    g: float = dataclasses.field(default=GRAVITY, metadata=dict(static=True))

    def __post_init__(self):
        if not (isinstance(self.n, int | float) and self.n >= 1):
            raise ValueError(f"Glen exponent n must be a number >= 1, got {self.n!r}.")

    def diffusivity(self, H, slope2, axis):
        d, s = sia.glen_diffusivity_parts(
            H, slope2, cell_to_face(self.A, axis), n=self.n, rho=self.rho, g=self.g,
            fs=cell_to_face(self.fs, axis),
        )
        return d + s

    def surface_speed(self, H, slope2):
        return sia.glen_surface_speed(H, slope2, self.A, n=self.n, rho=self.rho, g=self.g,
                                      fs=self.fs)
