"""Inversion of thickness (bed) and flow parameter against observed thickness, with
cross-validation and a classic baseline.

Controls (any combination, by ``InvertOptions``):

- the thickness H on the grid, i.e. the bed B = S_obs - H; H = s softplus(p / s) on the
  glacier mask and 0 elsewhere, so it is non-negative and confined to the mask by construction;
- Glen's A as one scalar (log-parameterised), as a smooth field (log A on the grid), or
  through a learned law's parameters (``glacier.laws``; functional inversion);
- the start of a transient run is that thickness itself.

Cost (each term reported separately):

    J_obs    = sum_i w_i ((H_i - H_obs,i) / sigma_H)^2 / sum_i w_i      (w_i: points per cell)
    J_surf   = mean over the mask of ((S(T) - S_obs - T dhdt) / sigma_S)^2
    J_smooth = lambda_H mean((dH / sigma_H)^2) + lambda_A mean((d ln A)^2)   (neighbour diffs)
    J_A      = mean(((ln A - ln A_prior) / sigma_lnA)^2)                (prior on A)

where S(T) is the surface after a relaxation run of T years of the SIA from (S_obs - H, H) with
the mass balance (optionally shifted to zero glacier-wide balance, the "apparent" mass balance
of Farinotti et al. 2009), so that J_surf asks for a glacier in balance with its mass balance
(or thinning at ``dhdt``). The gradient comes from the checkpointed adjoint of the solver.

Cross-validation splits the observed cells into K folds of whole spatial blocks, inverts K
times without one fold, and scores the held-out cells; the spread of the K inversions is the
thickness uncertainty. The baseline is the perfect-plasticity thickness H = tau / (rho g |grad
S|) (``domains.real.estimate_thickness``) with tau calibrated on the same training cells.
No files here: ``glacier.io`` writes the results.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import losses
from . import solver as slv
from .domains import Domain
from .domains.real import estimate_thickness
from .errors import ConfigError, InputDataError, NumericalError
from .grid import Grid
from .laws import GlenLaw
from .physics import sia
from .physics.mass_balance import MassBalance


@dataclasses.dataclass(frozen=True)
class InvertOptions:
    """What to invert and how (see the module docstring for the cost).

    Args:
        A: "none" (keep A fixed), "scalar", "field", or "law": the parameters of a learned
            law (``glacier.laws``; a functional inversion) give the creep factor.
        relax_years: length T of the relaxation run [a]; 0 switches J_surf off.
        obs_time: time [a] after the surface DEM at which the thickness was observed: the
            thickness control is then the initial state of a transient run, and J_obs
            compares the run's thickness at ``obs_time`` with the observations (0: the
            observations are of the initial state).
        law_l2: weight of the squared L2 norm of the law's parameters (A="law").
        velocity_error: sigma_u [m a^-1] of the misfit of the SIA surface speed of the
            initial state to ``velocity_obs`` (0 switches it off).
        dhdt: surface-elevation change the relaxed surface should show [m a^-1].
        apparent_smb: shift the mass balance to zero glacier-wide balance.
        obs_error: sigma_H [m]; surface_error: sigma_S [m].
        smooth_thickness, smooth_A: lambda_H, lambda_A.
        A_prior_error: standard deviation of ln A about the prior (the physics' A) in the
            term J_A = mean((ln A - ln A_prior) / A_prior_error)^2; 0 switches it off.
        A_warmup: iterations with A held at the prior before A is a control too (from a
            rough thickness, shrinking A towards 0 lowers the surface misfit fastest and
            the optimiser stalls there with no flow; the warm-up avoids that basin).
        A_step: ln A = ln A_prior + A_step a with the control a (preconditioning: the
            smaller, the more cautious the first changes of A).
        prior_error: sigma [m] of J_prior = mean over the mask ((H - H_b) / sigma)^2, a pull
            toward the calibrated baseline H_b; 0 switches it off.
        smooth_residual: apply the thickness smoothness to H - H_b (true) or H (false).
        surface_smoothing: Gaussian scale [m] of an average of the surface misfit over the
            mask before it is squared (0: cell by cell).
        optimizer: "lbfgs" or "adam"; iterations; lr (Adam).
        cfl, max_dt: solver stepping of the relaxation run.
        thickness_scale: s of the softplus parameterisation [m].
    """

    A: str = "scalar"
    relax_years: float = 5.0
    obs_time: float = 0.0
    dhdt: float = 0.0
    apparent_smb: bool = True
    obs_error: float = 10.0
    surface_error: float = 5.0
    smooth_thickness: float = 1.0
    smooth_A: float = 10.0
    A_prior_error: float = 0.0
    A_step: float = 0.1
    A_warmup: int = 20
    law_l2: float = 0.0
    velocity_error: float = 0.0
    prior_error: float = 0.0
    smooth_residual: bool = True
    surface_smoothing: float = 0.0
    optimizer: str = "lbfgs"
    iterations: int = 40
    lr: float = 0.05
    cfl: float = 0.124
    max_dt: float = 0.25
    thickness_scale: float = 10.0

    def __post_init__(self):
        if self.A not in ("none", "scalar", "field", "law"):
            raise ConfigError(f"invert.A={self.A!r}: choose none, scalar, field or law.")
        if self.optimizer not in ("lbfgs", "adam"):
            raise ConfigError(f"invert.optimizer={self.optimizer!r}: choose lbfgs or adam.")
        for key in ("obs_error", "surface_error", "thickness_scale", "cfl", "max_dt", "A_step"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"invert.{key}={getattr(self, key)} must be positive.")
        for key in ("relax_years", "obs_time", "smooth_thickness", "smooth_A",
                    "A_prior_error", "prior_error", "surface_smoothing", "law_l2",
                    "velocity_error"):
            if not getattr(self, key) >= 0:
                raise ConfigError(f"invert.{key}={getattr(self, key)} must be >= 0.")
        if self.A_warmup < 0:
            raise ConfigError(f"invert.A_warmup={self.A_warmup} must be >= 0.")
        if self.iterations < 1:
            raise ConfigError(f"invert.iterations={self.iterations} must be >= 1.")

    @property
    def warmup(self) -> int:
        """Iterations run with A fixed before A is a control (0 when A is not inverted or
        there is no relaxation run to inform it)."""
        return self.A_warmup if self.A != "none" and self.relax_years > 0 else 0


@dataclasses.dataclass(frozen=True, eq=False)
class InversionData:
    """A glacier to invert, as plain arrays (from a ``Domain``).

    ``surface`` is the observed surface [m]; ``mask`` 1 on the glacier; ``thickness_obs`` [m]
    NaN where not observed; ``obs_count`` points per cell (weights).
    """

    name: str
    grid: Grid
    surface: np.ndarray
    mask: np.ndarray
    smb: MassBalance
    thickness_obs: np.ndarray
    obs_count: np.ndarray
    physics: dict
    temperature: float | None = None
    velocity_obs: np.ndarray | None = None

    @classmethod
    def from_domain(cls, d: Domain, physics: dict) -> InversionData:
        if d.mask is None or not np.any(d.mask > 0):
            raise InputDataError(f"glacier {d.name!r} has no glacier mask: the inversion "
                                 "needs `mask` (1 = glacier) in its file.")
        obs = (np.full(d.grid.shape, np.nan) if d.thickness_obs is None
               else np.asarray(d.thickness_obs, np.float64))
        if not np.any(np.isfinite(obs)):
            raise InputDataError(f"glacier {d.name!r}: thickness_obs is all NaN; the "
                                 "inversion needs thickness observations (radar points binned "
                                 "to cells). Add them to the file's `thickness_obs`.")
        if np.nanmin(obs) < 0:
            raise InputDataError(f"glacier {d.name!r}: thickness_obs has negative values "
                                 f"(min {np.nanmin(obs):.1f} m); thickness must be >= 0.")
        count = (np.where(np.isfinite(obs), 1.0, 0.0) if d.thickness_obs_count is None
                 else np.where(np.isfinite(obs), np.maximum(d.thickness_obs_count, 1), 0.0))
        mask = (np.asarray(d.mask) > 0).astype(np.float64)
        return cls(name=d.name, grid=d.grid, surface=np.asarray(d.surface, np.float64),
                   mask=mask, smb=d.smb, thickness_obs=obs, obs_count=count.astype(np.float64),
                   physics=dict(physics), temperature=d.temperature,
                   velocity_obs=None if d.velocity_obs is None or not np.any(
                       np.isfinite(d.velocity_obs)) else np.asarray(d.velocity_obs, np.float64))

    @property
    def observed(self) -> np.ndarray:
        return np.isfinite(self.thickness_obs)


# --------------------------------------------------------------------------------------------
# Baseline


def baseline(data: InversionData, weights: np.ndarray) -> tuple[np.ndarray, float]:
    """Perfect-plasticity thickness with tau calibrated on the cells where ``weights`` > 0.

    H = tau f with f = estimate_thickness(tau = 1 Pa) (linear in tau); least squares gives
    tau = sum w H_obs f / sum w f^2. Returns (H [m], tau [Pa]).
    """
    f = estimate_thickness(data.surface, data.mask, data.grid.dx, basal_stress=1.0,
                           rho=data.physics["rho"], g=data.physics["g"])
    w = np.where(np.isfinite(data.thickness_obs), weights, 0.0)
    obs = np.nan_to_num(data.thickness_obs)
    denom = np.sum(w * f * f)
    if denom <= 0:
        raise InputDataError(f"glacier {data.name!r}: no observed cell inside the mask to "
                             "calibrate the baseline on.")
    tau = float(np.sum(w * obs * f) / denom)
    return tau * f, tau


# --------------------------------------------------------------------------------------------
# Folds


def spatial_folds(data: InversionData, k: int, *, block: float = 500.0,
                  seed: int = 0) -> np.ndarray:
    """Fold index (0..k-1) of every observed cell, -1 elsewhere.

    The grid is cut into square blocks of ``block`` metres; blocks holding observations are
    shuffled (seeded) and dealt to the folds so that the folds hold similar numbers of
    observed cells. Whole blocks go to one fold, so neighbouring radar points do not leak
    between training and held-out cells.
    """
    if k < 2:
        raise ConfigError(f"invert.cv_folds={k}: cross-validation needs at least 2 folds "
                          "(0 switches it off).")
    nb = max(1, int(round(block / data.grid.dx)))
    jj, ii = np.indices(data.grid.shape)
    block_id = (jj // nb) * (data.grid.nx // nb + 1) + ii // nb
    obs = data.observed
    ids, counts = np.unique(block_id[obs], return_counts=True)
    if len(ids) < k:
        raise ConfigError(f"invert.cv_folds={k}: the observations fall in only {len(ids)} "
                          f"blocks of {block:g} m; use fewer folds or a smaller "
                          "invert.cv_block.")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ids))
    load = np.zeros(k)
    fold_of_block = {}
    for j in order:  # greedy: next block to the lightest fold
        f = int(np.argmin(load))
        fold_of_block[ids[j]] = f
        load[f] += counts[j]
    folds = np.full(data.grid.shape, -1, dtype=np.int32)
    for b, f in fold_of_block.items():
        folds[(block_id == b) & obs] = f
    return folds


# --------------------------------------------------------------------------------------------
# Adjoint inversion


def _softplus_inv(H, s):
    H = np.maximum(H, 1e-3)
    return s * np.log(np.expm1(H / s))


@dataclasses.dataclass
class InversionResult:
    """Result of one inversion: thickness, bed, A and the cost history (each term)."""

    thickness: np.ndarray
    bed: np.ndarray
    A: np.ndarray | float
    history: dict[str, list[float]]
    iterations: int
    wall_time: float
    law: object = None
    failure: str | None = None


@dataclasses.dataclass(frozen=True)
class _Static:
    """Static part of the cost (hashable): compiled code is shared by every inversion of the
    same glacier and settings, e.g. the K cross-validation folds."""

    grid: Grid
    options: InvertOptions
    budget: int
    physics: tuple[tuple[str, float], ...]


def _thickness(params, consts, st: _Static):
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


def _log_rate_factor(params, consts, st: _Static):
    """ln A: the prior's plus ``A_step`` times the control ``a`` (a = 0 at the prior). The
    step scales the control against the thickness controls, so that the first quasi-Newton
    steps do not throw A across orders of magnitude."""
    return jnp.log(consts["A_fixed"]) + st.options.A_step * params["a"]


def _rate_factor(params, consts, st: _Static):
    return jnp.exp(_log_rate_factor(params, consts, st)) if "a" in params else consts["A_fixed"]


def _rheology(params, consts, st: _Static):
    """What the solver runs: the learned law's rheology (A="law") or Glen's law."""
    ph = dict(st.physics)
    if "law" in params:
        return params["law"].rheology(consts["temperature"], ph)
    return GlenLaw(A=_rate_factor(params, consts, st), fs=ph.get("fs", 0.0), n=ph["n"],
                   rho=ph["rho"], g=ph["g"])


def _run_times(o: InvertOptions) -> tuple[float, ...]:
    """Save times of the relaxation run: 0, the observation time, the end (unique, sorted)."""
    return tuple(sorted({0.0, float(o.obs_time), float(o.relax_years)}))


def _terms(params, weights, consts, st: _Static):
    o, grid = st.options, st.grid
    mask, S_obs, obs = consts["mask"], consts["S_obs"], consts["obs"]
    H = _thickness(params, consts, st)
    w = weights * jnp.isfinite(obs)
    status = jnp.zeros((), jnp.int32)
    H_seen = H
    terms = {}
    times = _run_times(o)
    if len(times) > 1:
        stepping = slv.Stepping(cfl=o.cfl, max_dt=o.max_dt, max_steps=st.budget,
                                checkpoint_every=max(1, math.isqrt(st.budget)))
        traj = slv.simulate(H, S_obs - H, grid=grid, law=_rheology(params, consts, st),
                            smb=consts["smb"], times=times, stepping=stepping,
                            adjoint="checkpointed")
        H_seen = traj.thickness[times.index(float(o.obs_time))]
        status = jnp.max(traj.status)
    terms["obs"] = losses.weighted_mse(H_seen, obs, w, o.obs_error)
    if o.velocity_error > 0:
        speed = slv.surface_speed(H, S_obs - H, _rheology(params, consts, st), grid)
        u_obs = consts["velocity_obs"]
        terms["velocity"] = losses.weighted_mse(speed, u_obs, jnp.isfinite(u_obs),
                                                o.velocity_error)
    if o.relax_years > 0:
        S_T = S_obs - H + traj.thickness[times.index(float(o.relax_years))]
        d = (S_T - (S_obs + o.relax_years * o.dhdt)) / o.surface_error
        if o.surface_smoothing > 0:
            d = _smooth(d, mask, o.surface_smoothing / grid.dx)
        terms["surface"] = jnp.sum(mask * d * d) / jnp.sum(mask)
    if o.prior_error > 0:
        dev = (H - consts["H_prior"]) / o.prior_error
        terms["prior_thickness"] = jnp.sum(mask * dev * dev) / jnp.sum(mask)
    if o.smooth_thickness:
        R = H - consts["H_prior"] if o.smooth_residual else H
        terms["smooth_thickness"] = o.smooth_thickness * grid.dx ** 2 * losses.tikhonov(
            R, grid.dx, mask) / o.obs_error ** 2
    if "a" in params and o.A_prior_error > 0:
        dev = o.A_step * params["a"] / o.A_prior_error
        terms["prior_A"] = jnp.mean(dev * dev)
    if "law" in params and o.law_l2 > 0:
        terms["l2_law"] = o.law_l2 * losses.l2(jax.tree_util.tree_leaves(params["law"]))
    if o.A == "field" and o.smooth_A:
        terms["smooth_A"] = o.smooth_A * grid.dx ** 2 * losses.tikhonov(
            _log_rate_factor(params, consts, st), grid.dx, mask)
    return sum(terms.values()), (terms, status)


def _optimizer(o: InvertOptions):
    return optax.lbfgs() if o.optimizer == "lbfgs" else optax.adam(o.lr)


@jax.jit(static_argnames=("st",))
def _step(params, state, weights, consts, st: _Static):
    """One optimiser iteration: cost terms at ``params``, then the update (L-BFGS with its
    zoom line search, or Adam), all in one compiled program."""
    (value, (terms, status)), grads = jax.value_and_grad(_terms, has_aux=True)(
        params, weights, consts, st)
    opt = _optimizer(st.options)
    if st.options.optimizer == "lbfgs":
        updates, state = opt.update(
            grads, state, params, value=value, grad=grads,
            value_fn=lambda p: _terms(p, weights, consts, st)[0])
    else:
        updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state, value, terms, status


class Inverter:
    """The cost of ``data`` under ``options`` (module docstring) and its minimisation."""

    def __init__(self, data: InversionData, options: InvertOptions):
        self.data, self.options = data, options
        smb = data.smb
        if options.apparent_smb:
            b = np.asarray(smb(jnp.asarray(data.surface)))
            shift = -float(np.sum(b * data.mask) / np.sum(data.mask))
            smb = dataclasses.replace(smb, base=jnp.asarray(smb.base) + shift)
        self.consts = dict(mask=jnp.asarray(data.mask), S_obs=jnp.asarray(data.surface),
                           obs=jnp.asarray(data.thickness_obs), smb=smb,
                           A_fixed=jnp.asarray(float(data.physics["A"])),
                           H_prior=jnp.zeros(data.grid.shape),
                           temperature=jnp.asarray(-5.0 if data.temperature is None
                                                   else float(data.temperature)),
                           velocity_obs=jnp.asarray(np.full(data.grid.shape, np.nan)
                                                    if data.velocity_obs is None
                                                    else data.velocity_obs))
        if options.velocity_error > 0 and data.velocity_obs is None:
            raise InputDataError(f"invert.velocity_error={options.velocity_error} asks for a "
                                 f"speed misfit, but glacier {data.name!r} has no velocity_obs "
                                 "(observed surface speed in m a-1). Add velocity_obs(y, x) to "
                                 "the file, or set invert.velocity_error=0.")
        self.static = _Static(grid=data.grid, options=options, budget=64,
                              physics=tuple(sorted(data.physics.items())))

    def init_params(self, H0: np.ndarray, A0: float, law=None) -> dict:
        s = self.options.thickness_scale
        p = {"h": jnp.asarray(_softplus_inv(np.asarray(H0), s))}
        if self.options.A == "law":
            if law is None:
                raise ConfigError("invert.A=law needs a law to invert: choose one with law=NAME "
                                  "(nn_A_of_T, constant_A or nn_diffusivity).")
            p["law"] = law
            return p
        a0 = (math.log(A0) - math.log(float(self.consts["A_fixed"]))) / self.options.A_step
        if self.options.A == "scalar":
            p["a"] = jnp.asarray(a0)
        elif self.options.A == "field":
            p["a"] = jnp.full(self.data.grid.shape, a0)
        else:
            self.consts["A_fixed"] = jnp.asarray(float(A0))
        return p

    def thickness(self, params):
        return _thickness(params, self.consts, self.static)

    def rate_factor(self, params):
        """A [Pa^-3 a^-1]: a scalar, or a field (A="field", or a law of local inputs)."""
        if "law" not in params:
            return _rate_factor(params, self.consts, self.static)
        law, T = params["law"], self.consts["temperature"]
        if hasattr(law, "rate_factor_on"):  # a creep factor from local (H, |grad S|, T)
            H = self.thickness(params)
            slope2 = sia.centred_slope2(H, self.consts["S_obs"] - H, self.data.grid)
            return law.rate_factor_on(H, jnp.sqrt(slope2), T)
        return law.rate_factor(T)

    def run(self, params, weights, *, callback: Callable[[int, dict], None] | None = None
            ) -> tuple[dict, dict[str, list[float]]]:
        """Minimise the cost from ``params``; returns the last good parameters and the history
        of every cost term (evaluated at the parameters before each update).

        A non-finite cost or a failed relaxation run stops the minimisation: at the first
        iteration with a ``NumericalError``; later with the parameters of the last finite cost,
        and ``self.failure`` says what happened."""
        o = self.options
        self.failure = None
        weights = jnp.asarray(weights, jnp.float64 if jax.config.jax_enable_x64
                              else jnp.float32)
        state = _optimizer(o).init(params)
        history: dict[str, list[float]] = {}
        it = 0
        last_good = params
        while it < o.iterations:
            new, new_state, value, terms, status = _step(params, state, weights, self.consts,
                                                         self.static)
            status = int(status)
            if status == slv.STATUS_MAX_STEPS and self.static.budget < 1_000_000:
                # The relaxation needs more steps than the bounded loop holds: grow it
                # (recompiles; results do not depend on the budget otherwise).
                self.static = dataclasses.replace(self.static, budget=2 * self.static.budget)
                continue
            value = float(value)
            if not math.isfinite(value) or status != slv.STATUS_OK:
                message = (f"inversion of {self.data.name!r} failed at iteration {it + 1}: "
                           f"cost {value}, relaxation run "
                           f"{slv.STATUS_NAMES.get(status, status)}. Try a smaller "
                           "invert.max_dt or a larger invert.smooth_thickness.")
                if it == 0:
                    raise NumericalError(message[0].upper() + message[1:])
                self.failure = message
                params = last_good  # the parameters of the last finite cost
                break
            for k, v in terms.items():
                history.setdefault(k, []).append(float(v))
            history.setdefault("total", []).append(value)
            if callback is not None:
                callback(it, {k: v[-1] for k, v in history.items()})
            if not all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(new)):
                self.failure = (f"inversion of {self.data.name!r}: the update of iteration "
                                f"{it + 1} is not finite; stopped with the last good state.")
                break  # params: cost finite, kept
            last_good = params
            params, state = new, new_state
            it += 1
        return params, history

    def result(self, params, history, wall) -> InversionResult:
        H = np.asarray(self.thickness(params))
        A = np.asarray(self.rate_factor(params))
        return InversionResult(thickness=H, bed=self.data.surface - H,
                               A=float(A) if A.ndim == 0 else A, history=history,
                               iterations=len(history.get("total", [])), wall_time=wall,
                               law=params.get("law"), failure=getattr(self, "failure", None))


def invert(data: InversionData, options: InvertOptions, *, weights=None, H_init=None,
           A_init: float | None = None, law=None, callback=None) -> InversionResult:
    """One inversion with the given observation weights (default: points per cell); ``law``
    is the starting law of a functional inversion (A="law")."""
    weights = data.obs_count if weights is None else weights
    if H_init is None:
        H_init, _ = baseline(data, weights)
    A0 = data.physics["A"] if A_init is None else A_init
    start = time.perf_counter()
    history: dict[str, list[float]] = {}
    H_start = np.asarray(H_init)
    if options.warmup:
        warm = Inverter(data, dataclasses.replace(options, A="none",
                                                  iterations=options.warmup))
        warm.consts["H_prior"] = jnp.asarray(H_init)
        p, history = warm.run(warm.init_params(H_init, A0), weights, callback=callback)
        if warm.failure:
            return warm.result(p, history, time.perf_counter() - start)
        H_start = np.asarray(warm.thickness(p))
    inv = Inverter(data, options)
    inv.consts["H_prior"] = jnp.asarray(H_init)
    params, more = inv.run(inv.init_params(H_start, A0, law), weights, callback=callback)
    for k in set(history) | set(more):  # one history; terms absent in a stage are NaN
        n_warm = len(history.get("total", []))
        history[k] = (history.get(k, [math.nan] * n_warm)
                      + more.get(k, [math.nan] * len(more.get("total", []))))
    return inv.result(params, history, time.perf_counter() - start)


# --------------------------------------------------------------------------------------------
# Cross-validation


@dataclasses.dataclass
class CrossValidation:
    """Held-out scores of the adjoint inversion and of the baseline, and the final inversion.

    ``held_out`` is the prediction of each observed cell by the inversion without its fold
    (NaN elsewhere); ``predictions[k]`` is the thickness of the inversion without fold k;
    ``thickness_std`` the standard deviation of the K inversions (the uncertainty map);
    ``within_spread`` the fraction of held-out cells whose observation lies within
    prediction +- 2 std; ``error_floor`` the error [m] to add in quadrature to the spread so
    that 95 % of the held-out cells lie within 2 sqrt(std^2 + floor^2) (the spread of K
    inversions that share most of their data underestimates the error).
    """

    folds: np.ndarray
    predictions: list[np.ndarray]
    held_out: np.ndarray
    baseline_predictions: list[np.ndarray]
    rmse: float
    bias: float
    within_spread: float
    error_floor: float
    baseline_rmse: float
    baseline_bias: float
    thickness_std: np.ndarray
    final: InversionResult
    baseline_thickness: np.ndarray
    baseline_tau: float
    failures: list[str] = dataclasses.field(default_factory=list)


def _error_floor(residual, std, coverage: float = 0.95) -> float:
    """Smallest s >= 0 with a fraction ``coverage`` of |residual| <= 2 sqrt(std^2 + s^2)."""
    def covered(s):
        return np.mean(residual <= 2.0 * np.sqrt(std * std + s * s))

    if covered(0.0) >= coverage:
        return 0.0
    lo, hi = 0.0, float(np.max(residual)) + 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if covered(mid) >= coverage else (mid, hi)
    return hi


def _scores(pred, obs, held):
    r = (pred - obs)[held]
    return float(np.sqrt(np.mean(r * r))), float(np.mean(r))


def cross_validate(data: InversionData, options: InvertOptions, k: int, *,
                   block: float = 500.0, seed: int = 0,
                   on_fold: Callable[[int, dict], None] | None = None,
                   callback: Callable[[int, dict], None] | None = None,
                   law=None) -> CrossValidation:
    """K-fold spatial cross-validation, then the final inversion with all observations.

    ``on_fold(k, scores)`` is called after each fold, ``callback(iteration, terms)`` after
    each optimiser iteration of every inversion."""
    folds = spatial_folds(data, k, block=block, seed=seed)
    obs = np.nan_to_num(data.thickness_obs)
    held_pred = np.full(data.grid.shape, np.nan)
    held_base = np.full(data.grid.shape, np.nan)
    preds, bases = [], []
    failures: list[str] = []
    for f in range(k):
        w = np.where(folds == f, 0.0, data.obs_count)
        H_b, _ = baseline(data, w)
        res = invert(data, options, weights=w, H_init=H_b, law=law, callback=callback)
        if res.failure:
            failures.append(f"fold {f + 1}: {res.failure}")
        held = folds == f
        held_pred[held] = res.thickness[held]
        held_base[held] = H_b[held]
        preds.append(res.thickness)
        bases.append(H_b)
        if on_fold is not None:
            on_fold(f, dict(rmse=_scores(res.thickness, obs, held)[0],
                            baseline_rmse=_scores(H_b, obs, held)[0]))
    held_all = folds >= 0
    rmse, bias = _scores(held_pred, obs, held_all)
    b_rmse, b_bias = _scores(held_base, obs, held_all)
    std = np.std(np.stack(preds), axis=0)
    res_held, std_held = np.abs(held_pred - obs)[held_all], std[held_all]
    within = float(np.mean(res_held <= 2 * std_held))
    floor = _error_floor(res_held, std_held)
    H_b, tau = baseline(data, data.obs_count)
    final = invert(data, options, H_init=H_b, law=law, callback=callback)
    if final.failure:
        failures.append(f"final: {final.failure}")
    return CrossValidation(folds=folds, predictions=preds, baseline_predictions=bases,
                           held_out=held_pred,
                           rmse=rmse, bias=bias, within_spread=within, error_floor=floor,
                           baseline_rmse=b_rmse,
                           baseline_bias=b_bias, thickness_std=std, final=final,
                           baseline_thickness=H_b, baseline_tau=tau, failures=failures)
