"""The static, hashable grid and staggering helpers.

Cells are squares of side ``dx`` metres; arrays are indexed ``[y, x]`` with ``y`` ascending (row 0 =
south), as in the NetCDF conventions of ``data/README.md``. Faces normal to x ("x-faces") have shape
``(ny, nx + 1)`` and include the two domain edges; faces normal to y have shape ``(ny + 1, nx)``.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Grid:
    """A regular grid of ``ny`` by ``nx`` square cells.

    Args:
        ny, nx: number of cells along y and x.
        dx: cell size in metres (the same along x and y).
        x0, y0: coordinates of the centre of cell ``[0, 0]`` in metres.
        periodic: (along y, along x): whether the domain wraps around in that direction.
            Non-periodic edges are outflow edges: ghost cells beyond them hold no ice and
            repeat the edge cell's bed, so ice that reaches the edge leaves the domain.
    """

    ny: int
    nx: int
    dx: float
    x0: float = 0.0
    y0: float = 0.0
    periodic: tuple[bool, bool] = (False, False)

    def __post_init__(self):
        if self.ny < 3 or self.nx < 3:
            raise ValueError(f"Grid needs at least 3 x 3 cells, got {self.ny} x {self.nx}.")
        if not (self.dx > 0 and np.isfinite(self.dx)):
            raise ValueError(f"Grid spacing dx must be positive and finite, got {self.dx}.")
        object.__setattr__(self, "dx", float(self.dx))
        object.__setattr__(self, "x0", float(self.x0))
        object.__setattr__(self, "y0", float(self.y0))
        object.__setattr__(self, "periodic", tuple(bool(p) for p in self.periodic))

    @property
    def shape(self) -> tuple[int, int]:
        return (self.ny, self.nx)

    @property
    def cell_area(self) -> float:
        return self.dx * self.dx

    @property
    def x(self) -> np.ndarray:
        """Cell-centre x coordinates in metres, ascending, shape (nx,)."""
        return self.x0 + self.dx * np.arange(self.nx)

    @property
    def y(self) -> np.ndarray:
        """Cell-centre y coordinates in metres, ascending, shape (ny,)."""
        return self.y0 + self.dx * np.arange(self.ny)

    def meshgrid(self) -> tuple[np.ndarray, np.ndarray]:
        """(X, Y) cell-centre coordinates, each of shape (ny, nx)."""
        return np.meshgrid(self.x, self.y)

    def transpose(self) -> Grid:
        return Grid(ny=self.nx, nx=self.ny, dx=self.dx, x0=self.y0, y0=self.x0,
                    periodic=self.periodic[::-1])


def _face_neighbours(field, axis: int):
    """The two cells beside every face normal to ``axis`` (low side, high side), the domain
    edges repeating the adjacent cell."""
    pad = [(0, 0), (0, 0)]
    pad[axis] = (1, 1)
    fp = jnp.pad(field, pad, mode="edge")
    lo = [slice(None), slice(None)]
    hi = [slice(None), slice(None)]
    lo[axis] = slice(None, -1)
    hi[axis] = slice(1, None)
    return fp[tuple(lo)], fp[tuple(hi)]


def cell_to_face(field, axis: int):
    """Average a cell field to the faces normal to ``axis`` (0: y-faces, 1: x-faces).

    The domain edges take the value of the adjacent cell. A scalar passes through unchanged.
    """
    field = jnp.asarray(field)
    if field.ndim == 0:
        return field
    lo, hi = _face_neighbours(field, axis)
    return 0.5 * (lo + hi)


def faces_within(mask, axis: int):
    """1 on the faces normal to ``axis`` between two cells of ``mask`` (0/1), 0 on the faces
    between a cell of the mask and one outside (the domain edges take the adjacent cell's
    value, as in ``cell_to_face``)."""
    lo, hi = _face_neighbours(jnp.asarray(mask), axis)
    return lo * hi


def edge_cells(shape: tuple[int, ...]) -> np.ndarray:
    """Boolean (ny, nx) mask of the outermost ring of cells of a grid of ``shape`` (the last
    two axes): where ice leaves a non-periodic domain."""
    ring = np.zeros(shape[-2:], dtype=bool)
    ring[0, :] = ring[-1, :] = ring[:, 0] = ring[:, -1] = True
    return ring
