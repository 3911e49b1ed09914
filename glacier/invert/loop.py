"""``Inverter`` (the cost of one glacier under one set of options and its minimisation),
``InversionResult`` and ``invert`` (the warm-up with A fixed, then the full inversion)."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .. import solver as slv
from ..compile import strong_types
from ..domains.real import smooth_surface
from ..errors import ConfigError, InputDataError, NumericalError
from ..laws import ClosedOutline, NeuralDiffusivity, NeuralScaledDiffusivity
from ..physics import sia
from ..physics.params import implausible
from . import cost
from .baseline import baseline
from .data import InversionData
from .diagnostics import BalanceCheck, balance_check, flux_divergence
from .options import InvertA, InvertOptions, InvertSliding


@dataclasses.dataclass
class InversionResult:
    """Result of one inversion: thickness, bed, A and the cost history (each term);
    ``failure`` says why the minimisation stopped early (None: it ran all iterations).
    ``fs``: the inverted Budd sliding parameter [Pa^-n m^2 a^-1] (None when sliding was not
    inverted); ``sliding_fraction``: sliding's share of the ice-covered cells' summed surface
    speed."""

    thickness: np.ndarray
    bed: np.ndarray
    A: np.ndarray | float
    history: dict[str, list[float]]
    iterations: int
    wall_time: float
    law: object = None
    failure: str | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)
    balance: BalanceCheck | None = None
    fs: np.ndarray | float | None = None
    sliding_fraction: float = float("nan")


class Inverter:
    """The cost of ``data`` under ``options`` (``glacier.invert`` docstring) and its
    minimisation.

    Args:
        data: the glacier.
        options: what to invert and how.
        H_prior: the thickness [m] of the prior and smoothness terms (``prior_error``,
            ``smooth_residual``), usually the calibrated baseline; default 0.
        A0: the fixed A [Pa^-3 a^-1] when A="none", and the start of the A control when
            A="scalar" or "field"; default the physics' A (which is always the prior).

    Nothing here changes after construction: ``run`` keeps its state (the grown step
    budget, the failure) to itself and returns it.
    """

    def __init__(self, data: InversionData, options: InvertOptions, *,
                 H_prior: np.ndarray | None = None, A0: float | None = None):
        self.data, self.options = data, options
        self.A0 = float(data.physics.A) if A0 is None else float(A0)
        smb = data.smb
        surface = smooth_surface(data.surface, data.grid.dx, options.slope_smoothing)
        dhdt = self.dhdt_field(data, options)
        if options.apparent_smb:
            b = np.asarray(smb(jnp.asarray(surface)))
            # glacier-wide: the mean mass balance is the mean thickness change (no ice leaves
            # through the outline), so the shift leaves a balance of dhdt, not of 0
            shift = float(np.sum((dhdt - b) * data.mask) / np.sum(data.mask))
            smb = dataclasses.replace(smb, base=jnp.asarray(smb.base) + shift)
        A_fixed = self.A0 if options.A == InvertA.none else float(data.physics.A)
        self.consts = dict(mask=jnp.asarray(data.mask), S_obs=jnp.asarray(surface),
                           obs=jnp.asarray(data.thickness_obs), smb=smb,
                           A_fixed=jnp.asarray(A_fixed), dhdt=jnp.asarray(dhdt),
                           H_prior=(jnp.zeros(data.grid.shape) if H_prior is None
                                    else jnp.asarray(H_prior)),
                           temperature=jnp.asarray(-5.0 if data.temperature is None
                                                   else float(data.temperature)),
                           velocity_obs=jnp.asarray(np.full(data.grid.shape, np.nan)
                                                    if data.velocity_obs is None
                                                    else data.velocity_obs))
        self.consts["bands"] = jnp.asarray(elevation_bands(surface, data.mask,
                                                           options.surface_bands))
        self.consts["balance_target"] = jnp.asarray(smb(jnp.asarray(surface))) - \
            self.consts["dhdt"]
        self.consts["above"] = jnp.asarray(contour_regions(
            surface, data.mask, options.balance_contour if options.balance_error > 0 else 0.0))
        if options.velocity_error > 0 and data.velocity_obs is None:
            raise InputDataError(f"invert.velocity_error={options.velocity_error} asks for a "
                                 f"speed misfit, but glacier {data.name!r} has no velocity_obs "
                                 "(observed surface speed in m a-1). Add velocity_obs(y, x) to "
                                 "the file, or set invert.velocity_error=0.")
        self.static = cost.CostStatic(grid=data.grid, options=cost.compiled_options(options),
                                      budget=64, physics=data.physics)

    @staticmethod
    def dhdt_field(data: InversionData, options: InvertOptions) -> np.ndarray:
        """The surface-elevation change [m a^-1] the relaxed surface should show: the
        glacier's ``dhdt`` where known, ``invert.dhdt`` elsewhere."""
        field = np.full(data.grid.shape, float(options.dhdt))
        if data.dhdt is not None:
            known = np.isfinite(data.dhdt)
            field[known] = data.dhdt[known]
        return field

    def init_params(self, H0: np.ndarray, *, law=None) -> dict:
        """The controls at thickness ``H0`` and A = ``A0`` (A="scalar"/"field"), or the
        parameters of ``law`` (A="law")."""
        s = self.options.thickness_scale
        p = self._sliding_params({"h": jnp.asarray(cost.softplus_inv(np.asarray(H0), s))})
        if self.options.A == InvertA.law:
            if law is None:
                raise ConfigError("invert.A=law needs a law to invert: choose one with law=NAME "
                                  "(nn_A_of_T, constant_A, nn_diffusivity or nn_D).")
            p["law"] = law
            return p
        if self.options.A == InvertA.none:
            return p
        a0 = cost.A_control(math.log(self.A0) - math.log(float(self.consts["A_fixed"])),
                            self.options)
        if self.options.A == InvertA.scalar:
            p["a"] = jnp.asarray(a0)
        else:  # field
            p["a"] = jnp.full(self.data.grid.shape, a0)
        return p

    def _sliding_params(self, p: dict) -> dict:
        """``p`` with the sliding control at its start (c = 0) when it is inverted."""
        if self.options.sliding == InvertSliding.scalar:
            p["c"] = jnp.zeros(())
        elif self.options.sliding == InvertSliding.field:
            p["c"] = jnp.zeros(self.data.grid.shape)
        return p

    def thickness(self, params):
        return cost.thickness(params, self.consts, self.static)

    def rate_factor(self, params):
        """A [Pa^-3 a^-1]: a scalar, or a field (A="field", or a law of local inputs)."""
        if "law" not in params:
            return cost.rate_factor(params, self.consts, self.static)
        law, T = params["law"], self.consts["temperature"]
        if isinstance(law, NeuralDiffusivity | NeuralScaledDiffusivity):  # local (H, |grad S|, T)
            H = self.thickness(params)
            slope2 = sia.centred_slope2(H, self.consts["S_obs"] - H, self.data.grid)
            return law.rate_factor_on(H, jnp.sqrt(slope2), T)
        return law.rate_factor(T)

    def run(self, params, weights, *, callback: Callable[[int, dict], None] | None = None
            ) -> tuple[dict, dict[str, list[float]], str | None]:
        """Minimise the cost from ``params``; returns the last good parameters, the history
        of every cost term (evaluated at the parameters before each update) and the failure
        (None when all iterations ran).

        A non-finite cost or a failed relaxation run stops the minimisation: at the first
        iteration with a ``NumericalError``; later with the parameters of the last finite cost,
        and the failure says what happened."""
        o = self.options
        static = self.static
        failure = None
        weights = jnp.asarray(weights, jnp.float64 if jax.config.jax_enable_x64
                              else jnp.float32)
        params = strong_types(params)  # one compiled step for every iteration (compile.py)
        state = strong_types(cost.make_optimizer(o).init(params))
        history: dict[str, list[float]] = {}
        it = 0
        last_good = params
        while it < o.iterations:
            new, new_state, value, terms, status = cost.step(params, state, weights,
                                                             self.consts, static)
            status = int(status)
            if status == slv.STATUS_MAX_STEPS and static.budget < 1_000_000:
                # The relaxation needs more steps than the bounded loop holds: grow it
                # (recompiles; results do not depend on the budget otherwise).
                static = dataclasses.replace(static, budget=2 * static.budget)
                continue
            value = float(value)
            if not math.isfinite(value) or status != slv.STATUS_OK:
                message = (f"inversion of {self.data.name!r} failed at iteration {it + 1}: "
                           f"cost {value}, relaxation run "
                           f"{slv.STATUS_NAMES.get(status, status)}. Try a smaller "
                           + ("solver.dt" if status == slv.STATUS_NEWTON else "invert.max_dt")
                           + " or a larger invert.smooth_thickness.")
                if it == 0:
                    raise NumericalError(message[0].upper() + message[1:])
                failure = message
                params = last_good  # the parameters of the last finite cost
                break
            for k, v in terms.items():
                history.setdefault(k, []).append(float(v))
            history.setdefault("total", []).append(value)
            if callback is not None:
                callback(it, {k: v[-1] for k, v in history.items()})
            if not all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(new)):
                failure = (f"inversion of {self.data.name!r}: the update of iteration "
                           f"{it + 1} is not finite; stopped with the last good state.")
                break  # params: cost finite, kept
            last_good = params
            params, state = new, new_state
            it += 1
        return params, history, failure

    def result(self, params, history, wall, failure: str | None = None) -> InversionResult:
        """The ``InversionResult`` of ``params`` (the output of ``run``)."""
        H = np.asarray(self.thickness(params))
        A = np.asarray(self.rate_factor(params))
        warnings = self.bound_warnings(A) if "a" in params else []
        fs = None
        if "c" in params:
            fs = np.asarray(cost.sliding(params, self.consts, self.static))
            warnings += self.sliding_warnings(fs)
            fs = float(fs) if fs.ndim == 0 else fs * self.data.mask
        return InversionResult(thickness=H, bed=self.data.surface - H,
                               A=float(A) if A.ndim == 0 else A, history=history,
                               iterations=len(history.get("total", [])), wall_time=wall,
                               law=params.get("law"), failure=failure, warnings=warnings,
                               balance=self.balance(params), fs=fs,
                               sliding_fraction=self.sliding_fraction(params))

    def sliding_fraction(self, params) -> float:
        """Sliding's share of the surface speed, summed over the ice-covered cells (0 without
        sliding; NaN for a learned law, whose parts are not separable)."""
        if "law" in params:
            return float("nan")
        law = cost.rheology(params, self.consts, self.static)
        law = law.rheology if isinstance(law, ClosedOutline) else law  # speed: local
        H = self.thickness(params)
        S = self.consts["S_obs"]
        total = np.asarray(slv.surface_speed(H, S - H, law, self.data.grid))
        no_slide = np.asarray(slv.surface_speed(H, S - H, dataclasses.replace(law, fs=0.0),
                                                self.data.grid))
        ice = (self.data.mask > 0) & (np.asarray(H) > 0)
        moving = float(np.sum(total[ice]))
        return float(np.sum((total - no_slide)[ice]) / moving) if moving > 0 else 0.0

    def sliding_warnings(self, fs) -> list[str]:
        """An fs within 5 % of its upper bound ``fs_max_factor`` fs_0, where it is."""
        o = self.options
        top = o.fs_max_factor * o.fs
        fs = np.asarray(fs)
        at = (fs >= 0.95 * top) if fs.ndim == 0 else (fs >= 0.95 * top)[self.data.mask > 0]
        if not np.any(at):
            return []
        where = "" if np.ndim(at) == 0 else f" on {np.mean(at):.0%} of the glacier"
        return [f"the sliding parameter fs is at its upper bound {top:.3g} Pa-3 m2 a-1{where} "
                f"(invert.fs={o.fs:.3g} times invert.fs_max_factor={o.fs_max_factor:g}): the "
                "data ask for more flow than deformation and sliding allow; see the README "
                "(Inverting observed thickness, when A ends at a bound)"]

    def balance(self, params) -> BalanceCheck:
        """How well the flux divergence of ``params`` explains the mass balance the
        relaxation run asks it to carry (``diagnostics``): target b - dhdt, with b shifted
        as in the cost (the apparent mass balance), on the surface the flow sees."""
        c = self.consts
        S = np.asarray(c["S_obs"])
        target = np.asarray(c["balance_target"])
        div = flux_divergence(self.thickness(params), S,
                              cost.rheology(params, c, self.static), self.data.grid)
        return balance_check(target, div, S, self.data.mask, self.data.grid.cell_area)

    def bound_warnings(self, A) -> list[str]:
        """What a glaciologist must know about the A reached: at (within 5 % in ln of) a
        bound of ``A_max_factor``, or, unbounded, outside the plausible strain rates."""
        o, prior = self.options, float(self.consts["A_fixed"])
        ratio = np.log(np.asarray(A, np.float64) / prior)
        mask = self.data.mask > 0
        ratio = ratio[mask] if ratio.ndim else ratio.reshape(1)
        if o.A_max_factor:
            L = math.log(o.A_max_factor)
            out = []
            for side, at in (("lower", ratio <= -0.95 * L), ("upper", ratio >= 0.95 * L)):
                if np.any(at):
                    where = ("" if ratio.size == 1 else
                             f" on {np.mean(at):.0%} of the glacier")
                    bound = prior / o.A_max_factor if side == "lower" else prior * o.A_max_factor
                    out.append(f"A is at its {side} bound {bound:.3g} Pa-3 a-1{where} (prior "
                               f"{prior:.3g}, invert.A_max_factor={o.A_max_factor:g}): the data "
                               "ask for " + ("less" if side == "lower" else "more") +
                               " flow than the flow law allows; see the README (Inverting "
                               "observed thickness, when A ends at a bound)")
            return out
        A_mean = float(np.exp(np.mean(np.log(np.asarray(A)[mask] if np.ndim(A) else A))))
        if not A_mean > 0:
            return [f"A = {A_mean:.3g} Pa-3 a-1: no flow at all"]
        bad = implausible(self.data.physics.replace(A=A_mean), ["A"])
        return [f"A = {A_mean:.3g} Pa-3 a-1 is implausible: {bad[0]}"] if bad else []


def elevation_bands(surface, mask, width: float) -> np.ndarray:
    """(n_bands, ny, nx): 1 on the glacier cells of each ``width``-metre band of ``surface``
    (bands from the lowest glacier cell up; one empty band when ``width`` is 0)."""
    ice = np.asarray(mask) > 0
    if not width > 0 or not ice.any():
        return np.zeros((1, *np.shape(surface)))
    low = float(np.min(surface[ice]))
    index = np.floor((np.asarray(surface) - low) / width).astype(int)
    n = int(index[ice].max()) + 1
    return np.stack([(ice & (index == b)).astype(np.float64) for b in range(n)])


def contour_levels(surface, mask, interval: float) -> np.ndarray:
    """The contours [m] of ``surface`` that cross the glacier ``mask``: the multiples of
    ``interval`` metres (as on a map) between its lowest and highest cell (none when
    ``interval`` is 0)."""
    ice = np.asarray(mask) > 0
    if not interval > 0 or not ice.any():
        return np.zeros(0)
    S = np.asarray(surface)[ice]
    return interval * np.arange(math.floor(S.min() / interval) + 1,
                                math.ceil(S.max() / interval))


def contour_regions(surface, mask, interval: float) -> np.ndarray:
    """(n, ny, nx): 1 on the glacier cells at or above each of the ``contour_levels``; one
    empty region when there is none."""
    ice = np.asarray(mask) > 0
    S = np.asarray(surface)
    levels = contour_levels(S, mask, interval)
    if levels.size == 0:
        return np.zeros((1, *S.shape))
    return np.stack([(ice & (S >= z)).astype(np.float64) for z in levels])


def invert(data: InversionData, options: InvertOptions, *, weights=None, H_init=None,
           A_init: float | None = None, law=None, callback=None) -> InversionResult:
    """One inversion with the given observation weights (default: points per cell); ``law``
    is the starting law of a functional inversion (A="law")."""
    weights = data.obs_count if weights is None else weights
    if H_init is None:
        H_init, _ = baseline(data, weights)
    A0 = data.physics.A if A_init is None else A_init
    start = time.perf_counter()
    history: dict[str, list[float]] = {}
    H_start = np.asarray(H_init)
    if options.warmup:  # A at A0 and fs at its start (when inverted), fixed
        fs0 = options.fs * cost.FS_START
        warm_data = (data if options.sliding == InvertSliding.none else
                     dataclasses.replace(data, physics=data.physics.replace(fs=fs0)))
        warm = Inverter(warm_data, dataclasses.replace(options, A="none", sliding="none",
                                                       iterations=options.warmup),
                        H_prior=H_init, A0=A0)
        p, history, failure = warm.run(warm.init_params(H_init), weights, callback=callback)
        if failure:
            return warm.result(p, history, time.perf_counter() - start, failure)
        H_start = np.asarray(warm.thickness(p))
    inv = Inverter(data, options, H_prior=H_init, A0=A0)
    params, more, failure = inv.run(inv.init_params(H_start, law=law), weights, callback=callback)
    n_warm, n_more = len(history.get("total", [])), len(more.get("total", []))
    for k in set(history) | set(more):  # one history; terms absent in a stage are NaN
        history[k] = history.get(k, [math.nan] * n_warm) + more.get(k, [math.nan] * n_more)
    return inv.result(params, history, time.perf_counter() - start, failure)
