"""The cost of the inversion (the terms of the ``glacier.invert`` docstring) and one compiled
optimiser iteration.

The parameters are a dict: ``h`` (thickness control), ``a`` (A control, A="scalar"/"field") or
``law`` (A="law"), ``c`` (sliding control, sliding="scalar"/"field"); ``consts`` the arrays of
the glacier (``Inverter.consts``); ``st`` the hashable ``CostStatic``.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import losses
from .. import solver as slv
from ..grid import Grid
from ..laws import ClosedOutline, glen_law
from ..physics import sia
from ..physics.params import Physics
from ..schemes import make_scheme
from .options import InvertOptions


def softplus_inv(H, s):
    """The control p of thickness H: the inverse of H = s softplus(p / s) (H floored at 1 mm)."""
    H = np.maximum(H, 1e-3)
    return s * np.log(np.expm1(H / s))


@dataclasses.dataclass(frozen=True)
class CostStatic:
    """Static part of the cost (hashable): compiled code is shared by every inversion of the
    same glacier and settings, e.g. the K cross-validation folds."""

    grid: Grid
    options: InvertOptions
    budget: int
    physics: Physics


def compiled_options(o: InvertOptions) -> InvertOptions:
    """``o`` with the fields the compiled cost does not read set to their defaults: the
    iteration counts, the folds and what enters through ``consts`` (dhdt, the mass-balance
    shift, the smoothed DEM), so that runs differing only in those share one compiled step
    (the folds, a warm-up of another length, the final inversion)."""
    d = InvertOptions()
    return dataclasses.replace(o, iterations=d.iterations, A_warmup=d.A_warmup,
                               cv_folds=d.cv_folds, cv_block=d.cv_block, dhdt=d.dhdt,
                               apparent_smb=d.apparent_smb, slope_smoothing=d.slope_smoothing,
                               balance_contour=d.balance_contour)


def thickness(params, consts, st: CostStatic):
    """H = s softplus(h / s) on the mask, 0 elsewhere."""
    s = st.options.thickness_scale
    return consts["mask"] * s * jax.nn.softplus(params["h"] / s)


def _smooth(field, mask, sigma_cells: float):
    """Gaussian average of ``field`` over the mask (normalised convolution), sigma in cells."""
    r = max(1, int(math.ceil(3 * sigma_cells)))
    k = jnp.exp(-0.5 * (jnp.arange(-r, r + 1) / sigma_cells) ** 2)
    k = (k / k.sum()).astype(field.dtype)

    def conv(f):
        f = jax.vmap(lambda row: jnp.convolve(row, k, mode="same"))(f)
        return jax.vmap(lambda col: jnp.convolve(col, k, mode="same"), in_axes=1,
                        out_axes=1)(f)

    return conv(field * mask) / jnp.maximum(conv(mask), 1e-12) * mask


def log_A_departure(a, o: InvertOptions):
    """ln A - ln A_prior of the control ``a``: ``A_step`` a, squashed into +-ln R by
    ln R tanh(A_step a / ln R) when ``A_max_factor`` R is set (identity to first order)."""
    if not o.A_max_factor:
        return o.A_step * a
    L = math.log(o.A_max_factor)
    return L * jnp.tanh(o.A_step * a / L)


def A_control(log_ratio: float, o: InvertOptions) -> float:
    """The control ``a`` of ln A - ln A_prior = ``log_ratio`` (inside the bounds: clipped to
    99.9 % of ln R); the inverse of ``log_A_departure``."""
    if not o.A_max_factor:
        return log_ratio / o.A_step
    L = math.log(o.A_max_factor)
    return L * math.atanh(max(-0.999, min(0.999, log_ratio / L))) / o.A_step


def log_rate_factor(params, consts, st: CostStatic):
    """ln A: the prior's plus the departure of the control ``a`` (a = 0 at the prior). The
    step scales the control against the thickness controls, so that the first quasi-Newton
    steps do not throw A across orders of magnitude; ``A_max_factor`` bounds it."""
    return jnp.log(consts["A_fixed"]) + log_A_departure(params["a"], st.options)


def rate_factor(params, consts, st: CostStatic):
    """A: from the control ``a`` when A is inverted, else the fixed A."""
    return jnp.exp(log_rate_factor(params, consts, st)) if "a" in params else consts["A_fixed"]


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


FS_START = 0.01
"""The sliding control starts at fs = ``FS_START`` invert.fs (c = 0): little sliding, so that
deformation explains the flow until the data ask for more."""


def sliding_factor(c, o: InvertOptions):
    """fs / fs_ref (fs_ref = ``invert.fs``) of the sliding control ``c``:
    R sigmoid(sliding_step c + logit(FS_START / R)), in (0, R) (R = ``fs_max_factor``) and
    ``FS_START`` at c = 0; like exp(sliding_step c) FS_START well below the bound, so the control
    acts on ln fs there."""
    R = o.fs_max_factor
    return R * jax.nn.sigmoid(o.sliding_step * c + _logit(FS_START / R))


def sliding_control(factor: float, o: InvertOptions) -> float:
    """The control ``c`` of fs / fs_ref = ``factor`` (clipped into (1e-6, 99.9 %) of the bound
    R); the inverse of ``sliding_factor``."""
    p = min(0.999, max(1e-6, factor / o.fs_max_factor))
    return (_logit(p) - _logit(FS_START / o.fs_max_factor)) / o.sliding_step


def sliding(params, consts, st: CostStatic):
    """fs [Pa^-n m^2 a^-1]: from the control ``c`` when sliding is inverted, else the
    physics' (fixed)."""
    if "c" not in params:
        return st.physics.fs
    return st.options.fs * sliding_factor(params["c"], st.options)


def rheology(params, consts, st: CostStatic):
    """What the solver runs: the learned law's rheology (A="law") or Glen's law, inside a
    closed outline with ``invert.outline=closed``."""
    if "law" in params:
        law = params["law"].rheology(consts["temperature"], st.physics)
    else:
        law = dataclasses.replace(glen_law(st.physics, rate_factor(params, consts, st)),
                                  fs=sliding(params, consts, st))
    return ClosedOutline(law, consts["mask"]) if st.options.outline == "closed" else law


def _run_times(o: InvertOptions) -> tuple[float, ...]:
    """Save times of the relaxation run: 0, the observation time, the end (unique, sorted)."""
    return tuple(sorted({0.0, float(o.obs_time), float(o.relax_years)}))


def balance_misfit(H, params, consts, st: CostStatic):
    """J_balance: the flux of H through every contour of the surface (``consts["above"]``:
    (n, ny, nx), 1 on the glacier cells above each contour, every ``invert.balance_contour``
    metres) against the balance flux there, the integral of the target b - dhdt above it.
    By the divergence theorem of the grid's flux form the flux out of the region above a
    contour is the sum of div q over it, so F_j = sum over that region of (div q - b + dhdt)
    [m a^-1 cells]; J = mean_j (F_j / (N sigma_b))^2 with N the glacier's cells and sigma_b
    ``balance_error`` [m a^-1]: each contour's flux error as the glacier-wide mean balance it
    would take. This is the constraint of a flowline inversion (the flux at every elevation
    carries what the mass balance delivers above it); unlike a cell-by-cell comparison it
    leaves the cell-scale bumps of the DEM and of the thickness alone, and unlike band means
    it does not depend on where the bands start."""
    qx, qy, _ = sia.fluxes(H, consts["S_obs"] - H, rheology(params, consts, st), st.grid)
    r = sia.flux_divergence(qx, qy, st.grid.dx) - consts["balance_target"]
    above = consts["above"]
    F = jnp.sum(above * r, axis=(1, 2)) / (jnp.sum(consts["mask"]) * st.options.balance_error)
    return jnp.mean(F * F)


def cost_terms(params, weights, consts, st: CostStatic):
    """The total cost and ``(terms, status)``: every term by name and the worst solver status
    of the relaxation run (``slv.STATUS_OK`` without one)."""
    o, grid = st.options, st.grid
    mask, S_obs, obs = consts["mask"], consts["S_obs"], consts["obs"]
    H = thickness(params, consts, st)
    w = weights * jnp.isfinite(obs)
    status = jnp.zeros((), jnp.int32)
    H_seen = H
    terms = {}
    times = _run_times(o)
    if len(times) > 1:
        scheme = make_scheme(o.scheme, cfl=o.cfl, max_dt=o.max_dt, dt=o.dt,
                             max_steps=st.budget)
        traj = slv.simulate(H, S_obs - H, grid=grid, rheology=rheology(params, consts, st),
                            smb=consts["smb"], save_at=slv.SaveAt(times), scheme=scheme,
                            adjoint=slv.reverse_adjoint(scheme))
        H_seen = traj.thickness[times.index(float(o.obs_time))]
        status = jnp.max(traj.status)
    terms["obs"] = losses.weighted_mse(H_seen, obs, w, o.obs_error)
    if o.velocity_error > 0:
        speed = slv.surface_speed(H, S_obs - H, rheology(params, consts, st), grid)
        u_obs = consts["velocity_obs"]
        terms["velocity"] = losses.weighted_mse(speed, u_obs, jnp.isfinite(u_obs),
                                                o.velocity_error)
    if o.relax_years > 0:
        S_T = S_obs - H + traj.thickness[times.index(float(o.relax_years))]
        d = (S_T - (S_obs + o.relax_years * consts["dhdt"])) / o.surface_error
        if o.surface_smoothing > 0:
            d = _smooth(d, mask, o.surface_smoothing / grid.dx)
        if o.surface_bands > 0:  # band means of the misfit, weighted by the bands' areas
            bands = consts["bands"]  # (n_bands, ny, nx): 1 on the band's glacier cells
            area = jnp.sum(bands, axis=(1, 2))
            mean = jnp.sum(bands * d, axis=(1, 2)) / jnp.maximum(area, 1.0)
            terms["surface"] = jnp.sum(area * mean * mean) / jnp.sum(area)
        else:
            terms["surface"] = jnp.sum(mask * d * d) / jnp.sum(mask)
    if o.balance_error > 0:
        terms["balance"] = balance_misfit(H, params, consts, st)
    if o.prior_error > 0:
        dev = (H - consts["H_prior"]) / o.prior_error
        terms["prior_thickness"] = jnp.sum(mask * dev * dev) / jnp.sum(mask)
    if o.smooth_thickness:
        R = H - consts["H_prior"] if o.smooth_residual else H
        terms["smooth_thickness"] = o.smooth_thickness * grid.dx ** 2 * losses.tikhonov(
            R, grid.dx, mask) / o.obs_error ** 2
    if "a" in params and o.A_prior_error > 0:
        dev = log_A_departure(params["a"], o) / o.A_prior_error
        terms["prior_A"] = jnp.mean(dev * dev)
    if "law" in params and o.law_l2 > 0:
        terms["l2_law"] = o.law_l2 * losses.l2(jax.tree_util.tree_leaves(params["law"]))
    if o.A == "field" and o.smooth_A:
        terms["smooth_A"] = o.smooth_A * grid.dx ** 2 * losses.tikhonov(
            log_rate_factor(params, consts, st), grid.dx, mask)
    if "c" in params and o.sliding_prior_error > 0:
        dev = sliding_factor(params["c"], o) / o.sliding_prior_error
        terms["prior_sliding"] = (jnp.sum(mask * dev * dev) / jnp.sum(mask)
                                  if o.sliding == "field" else dev * dev)
    if o.sliding == "field" and o.smooth_sliding:
        terms["smooth_sliding"] = o.smooth_sliding * grid.dx ** 2 * losses.tikhonov(
            sliding_factor(params["c"], o), grid.dx, mask)
    return sum(terms.values()), (terms, status)


def make_optimizer(o: InvertOptions):
    """The optax optimiser of ``o``: L-BFGS (zoom line search) or Adam with ``o.lr``."""
    return optax.lbfgs() if o.optimizer == "lbfgs" else optax.adam(o.lr)


@jax.jit(static_argnames=("st",))
def step(params, state, weights, consts, st: CostStatic):
    """One optimiser iteration: cost terms at ``params``, then the update (L-BFGS with its
    zoom line search, or Adam), all in one compiled program."""
    (value, (terms, status)), grads = jax.value_and_grad(cost_terms, has_aux=True)(
        params, weights, consts, st)
    opt = make_optimizer(st.options)
    if st.options.optimizer == "lbfgs":
        updates, state = opt.update(
            grads, state, params, value=value, grad=grads,
            value_fn=lambda p: cost_terms(p, weights, consts, st)[0])
    else:
        updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state, value, terms, status
