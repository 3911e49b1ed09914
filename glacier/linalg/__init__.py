"""Matrix-free linear algebra for the implicit SIA step (pure JAX, jit- and vmap-able).

- ``krylov.gmres``: restarted, right-preconditioned GMRES that reports its iterations;
- ``multigrid``: five-point operators on the grid (``FivePoint``), their Galerkin coarsening
  and a V-cycle preconditioner (``VCycle``).

Nothing here knows about ice: the SIA builds the operators (``glacier.implicit``).
"""

from .krylov import GmresResult, gmres
from .multigrid import FivePoint, VCycle

__all__ = ["FivePoint", "GmresResult", "VCycle", "gmres"]
