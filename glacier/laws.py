"""Rheology laws with one call signature, physical or learned.

Two levels:

- a *rheology* is what the solver calls: ``diffusivity(H, slope2, axis)`` at faces and
  ``surface_speed(H, slope2)`` at cell centres (``physics.sia.Rheology``). ``GlenLaw`` (Glen's
  flow law with a rate factor A) and ``LearnedDiffusivity`` are the two kinds; the solver cannot
  tell them apart (the pattern of jax-cfd's learned viscosities);
- a *law* is what the configuration names (``law=``): ``ConstantA``, ``CuffeyPaterson``,
  ``NeuralAofT``, ``NeuralDiffusivity``. ``law.rheology(temperature, physics)`` gives the
  rheology of one glacier from its long-term mean air temperature [degC] and its
  ``physics.params.Physics`` (n, rho, g, fs; A where the law has none of its own). Laws
  are pytrees whose leaves are exactly their trainable parameters, so
  ``jax.grad`` of a loss with respect to a law is its parameter gradient.

Gridded parameters are averaged to the faces with ``grid.cell_to_face``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import nn
from .constants import GLEN_N, GRAVITY, RHO_ICE, SECONDS_PER_YEAR
from .grid import cell_to_face, faces_within
from .physics import sia
from .physics.params import Physics

# --------------------------------------------------------------------------------------------
# Rheologies (what the solver sees)


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

    def native_coefficients(self):
        """The coefficients for ``sia.fluxes``'s native kernel (n = 3; A and fs scalars or
        (ny, nx) fields), or None (the law's own ``diffusivity`` then runs as XLA
        expressions)."""
        return sia.glen3_coefficients(self.A, self.fs, n=self.n, rho=self.rho, g=self.g)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LearnedDiffusivity:
    """SIA with a creep factor from a network of local inputs.

    D = Gamma(A_nn) H^(n+2) |grad S|^(n-1), Gamma(A) = 2 A (rho g)^n / (n + 2).

    A_nn = log_bounded(net(features)) with features (H / H_scale, |grad S| / slope_scale,
    (T - T_mean) / T_scale), so D stays positive and A within [A_min, A_max] by construction.
    """

    params: Any
    temperature: jax.Array | float
    graphdef: Any = dataclasses.field(metadata=dict(static=True))
    scales: tuple[float, float, float, float] = dataclasses.field(metadata=dict(static=True))
    bounds: tuple[float, float] = dataclasses.field(metadata=dict(static=True))
    n: float = dataclasses.field(default=GLEN_N, metadata=dict(static=True))
    rho: float = dataclasses.field(default=RHO_ICE, metadata=dict(static=True))
    g: float = dataclasses.field(default=GRAVITY, metadata=dict(static=True))

    def rate_factor(self, H, slope2, temperature):
        H_scale, slope_scale, T_mean, T_scale = self.scales
        slope = jnp.sqrt(slope2 + 1e-12)
        T = jnp.broadcast_to(temperature, jnp.shape(H))
        x = jnp.stack([H / H_scale, slope / slope_scale, (T - T_mean) / T_scale], axis=-1)
        raw = nn.apply(self.graphdef, self.params, x.astype(_param_dtype(self.params)))[..., 0]
        return nn.log_bounded(raw.astype(jnp.result_type(H)), *self.bounds)

    def diffusivity(self, H, slope2, axis):
        A = self.rate_factor(H, slope2, cell_to_face(self.temperature, axis))
        d, _ = sia.glen_diffusivity_parts(H, slope2, A, n=self.n, rho=self.rho, g=self.g)
        return d

    def surface_speed(self, H, slope2):
        A = self.rate_factor(H, slope2, self.temperature)
        return sia.glen_surface_speed(H, slope2, A, n=self.n, rho=self.rho, g=self.g)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ScaledDiffusivity:
    """SIA diffusivity from a network, scaled by Glen's law: D = D_glen(H, |grad S|) F.

    D_glen = Gamma(A_ref) H^5 |grad S|^2 is Glen's law with n = 3 and the reference rate factor
    ``A_ref``; F = log_bounded(net(x), F_min, F_max) with x = (ln(H / H_scale),
    ln(|grad S| / slope_scale), (T - T_mean) / T_scale). In these inputs Glen's law with any
    exponent n is ln F = c + (n - 3)(ln H + ln |grad S|), a plane, and Budd-type sliding adds
    ln(1 + c' H^-2), a smooth ramp: both are easy for the network and inside [F_min, F_max]
    over the states glaciers visit (see ``NeuralScaledDiffusivity``). Positive by construction.
    The surface speed is that of Glen's law with A = A_ref F (a deformation profile). The
    network's output is shifted so that 0 gives F = 1 (``unit_offset``).
    """

    params: Any
    temperature: jax.Array | float
    graphdef: Any = dataclasses.field(metadata=dict(static=True))
    scales: tuple[float, float, float, float] = dataclasses.field(metadata=dict(static=True))
    bounds: tuple[float, float] = dataclasses.field(metadata=dict(static=True))
    A_ref: float = dataclasses.field(default=1.1e-17, metadata=dict(static=True))
    rho: float = dataclasses.field(default=RHO_ICE, metadata=dict(static=True))
    g: float = dataclasses.field(default=GRAVITY, metadata=dict(static=True))

    def _inputs(self, H, slope2, temperature):
        """The network's inputs (ln H/H_scale, ln |grad S|/slope_scale, (T - T_mean)/T_scale)."""
        H_scale, slope_scale, T_mean, T_scale = self.scales
        h = jnp.log(jnp.maximum(H, 1.0) / H_scale)
        s = 0.5 * jnp.log(jnp.maximum(slope2, 1e-6) / slope_scale**2)
        T = jnp.broadcast_to(temperature, jnp.shape(H))
        return jnp.stack([h, s, (T - T_mean) / T_scale], axis=-1).astype(
            _param_dtype(self.params))

    def factor(self, H, slope2, temperature):
        """F [-] at thickness H [m], squared slope, temperature [degC]."""
        x = self._inputs(H, slope2, temperature)
        raw = nn.apply(self.graphdef, self.params, x)[..., 0]
        return nn.log_bounded(raw.astype(jnp.result_type(H)) + unit_offset(self.bounds),
                              *self.bounds)

    def rate_factor(self, H, slope2, temperature):
        return self.A_ref * self.factor(H, slope2, temperature)

    def diffusivity(self, H, slope2, axis):
        A = self.rate_factor(H, slope2, cell_to_face(self.temperature, axis))
        d, _ = sia.glen_diffusivity_parts(H, slope2, A, n=GLEN_N, rho=self.rho, g=self.g)
        return d

    def stiffness(self, H, slope2, axis):
        """How much stiffer the linearised flux is than Glen's (n = 3) at the same D, >= 1:
        max((3 + dlnF/dln|grad S|) / 3, (5 + dlnF/dlnH) / 5). Glen's step limits assume
        D grows as |grad S|^2 H^5; where the network makes it grow faster, the explicit
        step shrinks accordingly, or the forward run oscillates and its gradient is
        meaningless. No derivative is taken through it."""
        x = jax.lax.stop_gradient(
            self._inputs(H, slope2, cell_to_face(self.temperature, axis)))
        params = jax.lax.stop_gradient(self.params)

        def raw(x):
            return nn.apply(self.graphdef, params, x)[..., 0] + unit_offset(self.bounds)

        e = jnp.zeros_like(x)
        r, d_h = jax.jvp(raw, (x,), (e.at[..., 0].set(1.0),))
        _, d_s = jax.jvp(raw, (x,), (e.at[..., 1].set(1.0),))
        lo, hi = self.bounds
        sig = jax.nn.sigmoid(r)
        dlnF = math.log(hi / lo) * sig * (1.0 - sig)  # d ln F / d raw
        k = jnp.maximum(1.0 + dlnF * d_s / 3.0, 1.0 + dlnF * d_h / 5.0)
        return jnp.maximum(k, 1.0).astype(jnp.result_type(H))

    def surface_speed(self, H, slope2):
        A = self.rate_factor(H, slope2, self.temperature)
        return sia.glen_surface_speed(H, slope2, A, n=GLEN_N, rho=self.rho, g=self.g)


def unit_offset(bounds) -> float:
    """The input of ``nn.log_bounded`` at which it is 1 within ``bounds`` (lo < 1 < hi), so
    that a network whose output is 0 gives a factor of exactly 1."""
    lo, hi = bounds
    p = math.log(1.0 / lo) / math.log(hi / lo)
    return math.log(p / (1.0 - p))


def _param_dtype(params):
    leaves = jax.tree_util.tree_leaves(params)
    return leaves[0].dtype if leaves else jnp.float32


# --------------------------------------------------------------------------------------------
# Laws (what the configuration names)

CUFFEY_PATERSON_T = np.array([-50, -45, -40, -35, -30, -25, -20, -15, -10, -5, -2, 0.0])
CUFFEY_PATERSON_A = np.array([2.6e-27, 5.2e-27, 1.0e-26, 2.0e-26, 3.7e-26, 6.8e-26, 1.2e-25,
                              2.1e-25, 3.5e-25, 9.3e-25, 1.7e-24, 2.4e-24])
"""Cuffey & Paterson (2010), Table 3.4: A [s^-1 Pa^-3] for n = 3 at temperatures [degC]."""


def _natural_cubic_spline(x, y):
    """Second derivatives M of the natural cubic spline through (x, y) (NumPy, once)."""
    n = len(x)
    h = np.diff(x)
    mat = np.zeros((n, n))
    rhs = np.zeros(n)
    mat[0, 0] = mat[-1, -1] = 1.0
    for i in range(1, n - 1):
        mat[i, i - 1] = h[i - 1]
        mat[i, i] = 2 * (h[i - 1] + h[i])
        mat[i, i + 1] = h[i]
        rhs[i] = 6 * ((y[i + 1] - y[i]) / h[i] - (y[i] - y[i - 1]) / h[i - 1])
    return np.linalg.solve(mat, rhs)


_CP_LOG_A = np.log(CUFFEY_PATERSON_A * SECONDS_PER_YEAR)
_CP_M = _natural_cubic_spline(CUFFEY_PATERSON_T, _CP_LOG_A)


def cuffey_paterson_A(T):
    """Glen's A(T) [Pa^-3 a^-1] through Cuffey & Paterson's Table 3.4, smooth in T.

    A natural cubic spline of ln A through the twelve table values (exact at them, C2 in
    between; Bolibar et al. 2023 use a smooth fit through the same table as synthetic truth).
    Outside [-50, 0] degC the end intervals' cubics are clamped to the nearest table end.
    """
    T = jnp.clip(jnp.asarray(T), CUFFEY_PATERSON_T[0], CUFFEY_PATERSON_T[-1])
    x = jnp.asarray(CUFFEY_PATERSON_T)
    i = jnp.clip(jnp.searchsorted(x, T, side="right") - 1, 0, len(x) - 2)
    x0, x1 = x[i], x[i + 1]
    y0, y1 = jnp.asarray(_CP_LOG_A)[i], jnp.asarray(_CP_LOG_A)[i + 1]
    m0, m1 = jnp.asarray(_CP_M)[i], jnp.asarray(_CP_M)[i + 1]
    h = x1 - x0
    a, b = (x1 - T) / h, (T - x0) / h
    log_A = a * y0 + b * y1 + ((a**3 - a) * m0 + (b**3 - b) * m1) * h * h / 6.0
    return jnp.exp(log_A)


def glen_law(physics: Physics, A=None) -> GlenLaw:
    """Glen's law with the parameters of ``physics`` (A from ``physics`` unless given)."""
    return GlenLaw(A=physics.A if A is None else A, fs=physics.fs, n=physics.n,
                   rho=physics.rho, g=physics.g)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ClosedOutline:
    """``rheology`` whose ice does not cross the outline ``mask`` (0/1, (ny, nx)): the
    diffusivity is 0 on every face between a cell of the mask and one outside, so the flux
    there is 0 (a land-terminating glacier's outline is its margin or a drainage divide,
    which no ice crosses); everything else is ``rheology``'s (its surface speed, its
    ``stiffness`` when it has one). The domain's own edges stay as they are."""

    rheology: Any
    mask: jax.Array

    def diffusivity(self, H, slope2, axis):
        return self.rheology.diffusivity(H, slope2, axis) * faces_within(self.mask, axis)

    def native_coefficients(self):
        """The wrapped law's coefficients for the native kernel as cell fields, with the mask
        as their outline weight (``sia.glen3_coefficients``), or None when the wrapped law
        has none (looked up on its class, as ``sia.fluxes`` does)."""
        inner = getattr(type(self.rheology), "native_coefficients", None)
        coef = inner(self.rheology) if inner is not None else None
        if coef is None:
            return None
        mask = jnp.asarray(self.mask)
        if coef.ndim == 1:
            coef = jnp.concatenate([sia.coefficients_to_cells(coef, mask.shape),
                                    jnp.ones((1, *mask.shape), coef.dtype)])
        if coef.shape[1:] != mask.shape:
            return None
        return coef.at[2].multiply(mask.astype(coef.dtype))

    def surface_speed(self, H, slope2):
        return self.rheology.surface_speed(H, slope2)

    def __getattr__(self, name):  # stiffness, rate_factor ... of the wrapped law
        if name in ("rheology", "mask") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.rheology, name)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ConstantA:
    """One rate factor for every glacier: A = exp(log_A) [Pa^-3 a^-1] (trainable ``log_A``)."""

    log_A: jax.Array | float

    @classmethod
    def from_value(cls, A: float) -> ConstantA:
        return cls(log_A=jnp.log(jnp.asarray(A)))

    def rate_factor(self, T):
        return jnp.exp(self.log_A) * jnp.ones_like(jnp.asarray(T, dtype=jnp.result_type(float)))

    def rheology(self, temperature, physics: Physics) -> GlenLaw:
        return glen_law(physics, jnp.exp(self.log_A))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class CuffeyPaterson:
    """A(T) of Cuffey & Paterson (2010) Table 3.4 (``cuffey_paterson_A``); nothing to train."""

    def rate_factor(self, T):
        return cuffey_paterson_A(T)

    def rheology(self, temperature, physics: Physics) -> GlenLaw:
        return glen_law(physics, cuffey_paterson_A(temperature))


A_BOUNDS = (1e-28 * SECONDS_PER_YEAR, 1e-23 * SECONDS_PER_YEAR)
"""Physical range of A [Pa^-3 a^-1] for the learned laws: 1e-28 to 1e-23 s^-1 Pa^-3, which
brackets Cuffey & Paterson's table (2.6e-27 at -50 degC to 2.4e-24 at 0 degC) by a decade."""


def prior_bounds(A_prior: float, factor: float) -> tuple[float, float]:
    """Bounds (A_prior / factor, A_prior * factor) [Pa^-3 a^-1]: a learned A then starts at
    ``A_prior`` (the geometric middle) and stays within ``factor`` of it by construction."""
    if not (A_prior > 0 and factor > 1):
        raise ValueError(f"need A_prior > 0 and factor > 1, got {A_prior}, {factor}.")
    return (A_prior / factor, A_prior * factor)


A_PRIOR = 3.5e-25 * SECONDS_PER_YEAR
"""Prior guess of A [Pa^-3 a^-1]: Cuffey & Paterson's A at -10 degC (3.5e-25 s^-1 Pa^-3)."""

PRIOR_BOUNDS = prior_bounds(A_PRIOR, 10.0)
"""Default bounds of the learned laws: within a factor 10 of ``A_PRIOR`` (3.5e-26 to 3.5e-24
s^-1 Pa^-3, which brackets the table from -30 to 0 degC); a fresh network starts at the prior.
The bound also caps the cost of a training step: the step budget grows with the largest A."""


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class NeuralAofT:
    """A(T) = log_bounded(net((T - T_mean) / T_scale)): one A per glacier from its long-term
    mean air temperature T [degC] (Bolibar et al. 2023, GMD 16, 6671-6687, the flagship UDE)."""

    params: Any
    graphdef: Any = dataclasses.field(metadata=dict(static=True))
    T_mean: float = dataclasses.field(default=-12.5, metadata=dict(static=True))
    T_scale: float = dataclasses.field(default=12.5, metadata=dict(static=True))
    bounds: tuple[float, float] = dataclasses.field(default=A_BOUNDS, metadata=dict(static=True))

    @classmethod
    def create(cls, *, hidden=(16, 16), seed: int = 0, activation: str = "tanh",
               T_mean: float = -12.5, T_scale: float = 12.5, bounds=A_BOUNDS,
               param_dtype=jnp.float64) -> NeuralAofT:
        """A fresh network; it starts at the geometric middle of ``bounds`` for every T (see
        ``prior_bounds`` to centre the range on a prior guess of A)."""
        _check_bounds(bounds)
        if not T_scale > 0:
            raise ValueError(f"T_scale must be positive, got {T_scale}.")
        net = nn.MLP(1, hidden, 1, seed=seed, activation=activation, param_dtype=param_dtype)
        graphdef, params = nn.split(net)
        return cls(params=params, graphdef=graphdef, T_mean=float(T_mean),
                   T_scale=float(T_scale), bounds=tuple(float(b) for b in bounds))

    def rate_factor(self, T):
        T = jnp.asarray(T, dtype=_param_dtype(self.params))
        x = ((T - self.T_mean) / self.T_scale)[..., None]
        return nn.log_bounded(nn.apply(self.graphdef, self.params, x)[..., 0], *self.bounds)

    def rheology(self, temperature, physics: Physics) -> GlenLaw:
        return glen_law(physics, self.rate_factor(temperature))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class NeuralDiffusivity:
    """A creep factor on the grid from local (H, |grad S|, T): see ``LearnedDiffusivity``."""

    params: Any
    graphdef: Any = dataclasses.field(metadata=dict(static=True))
    scales: tuple[float, float, float, float] = dataclasses.field(
        default=(100.0, 0.2, -12.5, 12.5), metadata=dict(static=True))
    bounds: tuple[float, float] = dataclasses.field(default=A_BOUNDS, metadata=dict(static=True))

    @classmethod
    def create(cls, *, hidden=(16, 16), seed: int = 0, activation: str = "tanh",
               scales=(100.0, 0.2, -12.5, 12.5), bounds=A_BOUNDS,
               param_dtype=jnp.float64) -> NeuralDiffusivity:
        _check_bounds(bounds)
        if scales[0] <= 0 or scales[1] <= 0 or scales[3] <= 0:
            raise ValueError(f"input scales must be positive, got {scales}.")
        net = nn.MLP(3, hidden, 1, seed=seed, activation=activation, param_dtype=param_dtype)
        graphdef, params = nn.split(net)
        return cls(params=params, graphdef=graphdef, scales=tuple(float(s) for s in scales),
                   bounds=tuple(float(b) for b in bounds))

    def rheology(self, temperature, physics: Physics) -> LearnedDiffusivity:
        return LearnedDiffusivity(params=self.params, temperature=temperature,
                                  graphdef=self.graphdef, scales=self.scales, bounds=self.bounds,
                                  n=physics.n, rho=physics.rho, g=physics.g)

    def rate_factor_on(self, H, slope, temperature):
        """A [Pa^-3 a^-1] on arrays of H [m], |grad S| [-] and T [degC] (for law.nc)."""
        law = self.rheology(temperature, Physics(A=A_PRIOR))
        return law.rate_factor(jnp.asarray(H), jnp.asarray(slope) ** 2, temperature)


def _check_bounds(bounds):
    lo, hi = bounds
    if not (0 < lo < hi and math.isfinite(hi)):
        raise ValueError(f"bounds must satisfy 0 < lo < hi < inf, got {bounds}.")


SCALED_BOUNDS = (0.001, 1000.0)
"""Default range of the factor F of ``NeuralScaledDiffusivity`` around Glen's law (n = 3,
A_ref = ``A_PRIOR``): it holds Glen's law with n from 2 to 4 (A chosen to match n = 3 at
-10 degC, 100 m and a slope of 0.1) and A from -25 to 0 degC over 10-600 m of ice and slopes
0.02-0.5, and Glen's law (n = 3) from -25 to -5 degC with Budd sliding up to ten times the
deformation at 100 m over 20-600 m (checked in tests/unit/test_scaled_diffusivity.py).
A_ref fitted to the glaciers (``law.A_ref=null``) centres it further."""


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class NeuralScaledDiffusivity:
    """``law=nn_D``: the diffusivity D(H, |grad S|, T) from a network, as a factor F of Glen's
    law with n = 3 (``ScaledDiffusivity``); what Glen's law with one A cannot express (another
    exponent, sliding, a thickness-dependent softness) is what F learns."""

    params: Any
    graphdef: Any = dataclasses.field(metadata=dict(static=True))
    scales: tuple[float, float, float, float] = dataclasses.field(
        default=(100.0, 0.1, -12.5, 12.5), metadata=dict(static=True))
    bounds: tuple[float, float] = dataclasses.field(default=SCALED_BOUNDS,
                                                    metadata=dict(static=True))
    A_ref: float = dataclasses.field(default=A_PRIOR, metadata=dict(static=True))

    @classmethod
    def create(cls, *, hidden=(16, 16), seed: int = 0, activation: str = "tanh",
               scales=(100.0, 0.1, -12.5, 12.5), bounds=SCALED_BOUNDS, A_ref: float = A_PRIOR,
               param_dtype=jnp.float64) -> NeuralScaledDiffusivity:
        """A fresh network: F = 1 everywhere (Glen's law with n = 3 and A = A_ref)."""
        _check_bounds(bounds)
        if not bounds[0] < 1.0 < bounds[1]:
            raise ValueError(f"bounds of the factor F must enclose 1, got {tuple(bounds)}.")
        if scales[0] <= 0 or scales[1] <= 0 or scales[3] <= 0:
            raise ValueError(f"input scales must be positive, got {scales}.")
        if not A_ref > 0:
            raise ValueError(f"A_ref must be positive, got {A_ref}.")
        net = nn.MLP(3, hidden, 1, seed=seed, activation=activation, param_dtype=param_dtype)
        graphdef, params = nn.split(net)
        return cls(params=params, graphdef=graphdef, scales=tuple(float(s) for s in scales),
                   bounds=tuple(float(b) for b in bounds), A_ref=float(A_ref))

    def rheology(self, temperature, physics: Physics) -> ScaledDiffusivity:
        return ScaledDiffusivity(params=self.params, temperature=temperature,
                                 graphdef=self.graphdef, scales=self.scales, bounds=self.bounds,
                                 A_ref=self.A_ref, rho=physics.rho, g=physics.g)

    def rate_factor_on(self, H, slope, temperature):
        """A_ref F [Pa^-3 a^-1] on arrays of H [m], |grad S| [-] and T [degC]: the rate factor
        of Glen's law (n = 3) with the same diffusivity (for the inversion)."""
        law = self.rheology(temperature, Physics(A=A_PRIOR))
        return law.rate_factor(jnp.asarray(H), jnp.asarray(slope) ** 2, temperature)


def diffusivity_on(rheology, H, slope):
    """D [m2 a-1] of a rheology on arrays of H [m] and |grad S| [-] (for law.nc)."""
    H = jnp.asarray(H, jnp.float64)
    return rheology.diffusivity(H, jnp.asarray(slope, H.dtype) ** 2, None)


def glen_A_for_exponent(A3, n: float, *, rho: float = RHO_ICE, g: float = GRAVITY,
                        H_ref: float = 100.0, slope_ref: float = 0.1):
    """The rate factor [Pa^-n a^-1] of Glen's law with exponent ``n`` whose diffusivity equals
    that of n = 3 with ``A3`` [Pa^-3 a^-1] at ``H_ref`` [m] and ``slope_ref``:
    A_n = A3 (n + 2) / 5 (rho g H_ref slope_ref)^(3 - n)."""
    return A3 * (n + 2.0) / 5.0 * (rho * g * H_ref * slope_ref) ** (3.0 - n)


def budd_fs_for_ratio(A, ratio: float, *, n: float = GLEN_N, H_ref: float = 100.0):
    """The Budd sliding parameter fs [Pa^-n m^2 a^-1] whose diffusivity is ``ratio`` times
    Glen's deformation diffusivity (rate factor A) at ``H_ref`` [m]: the ratio of the two is
    fs (n + 2) / (2 A H^2), so sliding matters most under thin ice."""
    return ratio * 2.0 * A * H_ref**2 / (n + 2.0)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class GlenTruth:
    """The true law of ``experiment=twin_diffusivity``: Glen's law with exponent ``n`` and
    Cuffey & Paterson's A(T) (carried to n by ``glen_A_for_exponent``), plus Budd sliding with
    a fixed ``fs`` [Pa^-n m^2 a^-1]. Nothing to train (no leaves)."""

    fs: float = dataclasses.field(default=0.0, metadata=dict(static=True))
    n: float = dataclasses.field(default=GLEN_N, metadata=dict(static=True))

    def rate_factor(self, T):
        A3 = cuffey_paterson_A(T)
        return A3 if self.n == GLEN_N else glen_A_for_exponent(A3, self.n)

    def rheology(self, temperature, physics: Physics) -> GlenLaw:
        A3 = cuffey_paterson_A(temperature)
        A = A3 if self.n == GLEN_N else glen_A_for_exponent(A3, self.n, rho=physics.rho,
                                                             g=physics.g)
        return GlenLaw(A=A, fs=self.fs, n=self.n, rho=physics.rho, g=physics.g)
