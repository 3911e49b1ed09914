"""``experiment=twin_diffusivity``: a learned diffusivity must discover a law that Glen's law
with n = 3 and one A per glacier cannot express, and predict glaciers it never saw.

The glaciers (synthetic valleys and the bundled real geometries, all at one temperature) are
spun up with Glen's law (n = 3, A at ``spinup_temperature``), then evolved for ``years`` with
the *true* law: Glen's deformation plus Budd sliding that is ``sliding_ratio`` times the
deformation under 100 m of ice (``truth=sliding``, the default; sliding grows with thickness and
slope but matters most under thin ice), or Glen's law with another exponent
(``truth=exponent``). Their yearly thickness is the observation. ``test_glaciers`` valleys,
spread over the valley shapes, are held out of training: the trained law, and the best
constant-A Glen law fitted to the same training glaciers, then predict them.

What is learned is shown on a grid of (thickness, slope): ``law_map`` evaluates the learned and
the true D there, with the density of the states the training glaciers visited, and
``density_weighted_median`` summarises the relative error where the law is constrained.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from . import laws
from . import solver as slv
from . import train as tr
from .constants import GLEN_N
from .domains import Domain, build_domain
from .errors import ConfigError
from .experiments import REAL_TWIN_GLACIERS, TwinSetup, observe, valley_shapes
from .options import option
from .physics.params import Physics
from .schemes import ExplicitMUSCL, Scheme

TRAINING_CFL = 0.06
"""``solver.cfl`` that ``experiment=twin_diffusivity`` sets: a learned diffusivity can make the
linearised flux stiffer than Glen's, and at cfl 0.124 some glaciers' forward runs then
oscillate from step to step: the loss stays smooth enough to train on, but its gradient no
longer matches finite differences (it does at 0.06;
tests/gradients/test_scaled_diffusivity_gradients.py)."""

TRUTHS = ("sliding", "exponent")
"""What ``experiment.truth`` may name."""


@dataclasses.dataclass(frozen=True)
class TwinDiffusivityOptions:
    """``experiment=twin_diffusivity``: learn a diffusivity that Glen's law with n = 3 cannot
    express (``twin_diffusivity``; the meaning of each option is in its docstring)."""

    truth: str = option("sliding", "the true law: sliding (Glen n = 3 + Budd sliding) or "
                                   "exponent (Glen's law with experiment.exponent)")
    sliding_ratio: float = option(1.0, "truth=sliding: sliding / deformation diffusivity "
                                       "under 100 m of ice (>= 0)")
    exponent: float = option(4.0, "truth=exponent: Glen's exponent n of the truth, in [2, 4]")
    dx: float = option(400.0, "common grid spacing [m] (real glaciers are resampled to it)")
    years: float = option(20.0, "length of the observed period [a]")
    obs_every: float = option(1.0, "years between observations")
    n_valleys: int = option(10, "number of synthetic valleys")
    real: list[str] = option(list(REAL_TWIN_GLACIERS), "bundled real glaciers to add "
                                                      "(hintereisferner, south_glacier)")
    test_glaciers: int = option(2, "valleys held out of training (spread over the shapes)")
    temperature: float = option(-5.0, "temperature of every glacier [degC]")
    spinup_years: float = option(150.0, "spin-up of the valleys from no ice [a]")
    spinup_temperature: float = option(-10.0, "temperature of A during the spin-up [degC]")
    noise: float = option(0.0, "standard deviation of the observation noise [m]")
    obs_fraction: float = option(1.0, "fraction of ice cells observed each time, in (0, 1]")
    velocity_obs: bool = option(False, "also observe the true surface speed (for loss.velocity)")
    velocity_noise: float = option(0.0, "standard deviation of the speed noise [m a^-1]")


@dataclasses.dataclass(frozen=True)
class DiffusivityTwin:
    """The training glaciers (``train``, a ``TwinSetup``) and the held-out ones.

    ``test_batch`` holds the held-out glaciers on the training grid (no observations used);
    ``test_H_true`` and ``test_speed_true`` (K, nt, ny, nx) their true thickness and speed at
    the save times; ``speed_true`` the training glaciers' true speed.
    """

    train: TwinSetup
    test_domains: tuple[Domain, ...]
    test_batch: tr.GlacierBatch | None
    test_H_true: np.ndarray
    test_speed_true: np.ndarray
    speed_true: np.ndarray
    temperature: float


def truth_law(o: TwinDiffusivityOptions) -> laws.GlenTruth:
    """The true law of the options (see the module docstring)."""
    if o.truth == "sliding":
        A = float(laws.cuffey_paterson_A(o.temperature))
        return laws.GlenTruth(fs=laws.budd_fs_for_ratio(A, o.sliding_ratio))
    return laws.GlenTruth(n=float(o.exponent))


def held_out(n_valleys: int, k: int) -> list[int]:
    """Indices of the ``k`` valleys held out: spread evenly, never the first or the last."""
    if k <= 0:
        return []
    picks = np.linspace(0, n_valleys - 1, k + 2)[1:-1]
    return sorted({int(round(p)) for p in picks})


def check_options(o: TwinDiffusivityOptions) -> None:
    """ConfigError naming the first option of ``o`` that makes no sense."""
    if o.truth not in TRUTHS:
        raise ConfigError(f"experiment.truth={o.truth!r} is unknown; choose "
                          f"{' or '.join(TRUTHS)}.")
    if not o.sliding_ratio >= 0:
        raise ConfigError(f"experiment.sliding_ratio must be >= 0, got {o.sliding_ratio}.")
    if not 2.0 <= o.exponent <= 4.0:
        raise ConfigError(f"experiment.exponent must be in [2, 4], got {o.exponent}.")
    if not 0 <= o.test_glaciers <= max(0, o.n_valleys - 2):
        raise ConfigError(f"experiment.test_glaciers must be from 0 to n_valleys - 2 "
                          f"({max(0, o.n_valleys - 2)}), got {o.test_glaciers}: the first "
                          "and the last valley always train.")
    if not 0 < o.obs_fraction <= 1:
        raise ConfigError(f"experiment.obs_fraction must be in (0, 1], got {o.obs_fraction}.")
    if o.noise < 0 or o.velocity_noise < 0:
        raise ConfigError("experiment.noise and experiment.velocity_noise must be >= 0.")
    if o.n_valleys - o.test_glaciers + len(o.real) < 1:
        raise ConfigError("The twin experiment needs at least one training glacier.")


def twin_diffusivity(options: TwinDiffusivityOptions | None = None, *, seed: int = 0,
                     physics: Physics | None = None, cfl: float = 0.124, max_dt: float = 1.0,
                     dtype: str = "float64", devices: int = 1, scheme: Scheme | None = None,
                     **overrides) -> DiffusivityTwin:
    """Build the twin (see the module docstring). ``seed`` sets the valley shapes, the noise
    and the gaps; ``cfl``, ``max_dt``: the explicit scheme of the truth (those of ``scheme``
    when it is explicit); ``scheme``: that of the returned training problem (default: the
    truth's explicit one)."""
    o = dataclasses.replace(options or TwinDiffusivityOptions(), **overrides)
    check_options(o)
    T = float(o.temperature)
    domains = []
    for i, opts in enumerate(valley_shapes(o.n_valleys, o.dx, seed)):
        d = build_domain("synthetic_valley", temperature=T, **opts)
        domains.append(dataclasses.replace(d, name=f"valley_{i + 1}"))
    for name in o.real:
        domains.append(dataclasses.replace(build_domain(name, dx=o.dx), temperature=T))
    physics = domains[0].physics if physics is None else physics
    batch, grid = tr.stack_domains(domains, dtype=dtype)
    if isinstance(scheme, ExplicitMUSCL):  # the truth on the training scheme's steps
        cfl, max_dt = scheme.cfl, scheme.max_dt
    reference = ExplicitMUSCL(cfl=cfl, max_dt=max_dt)
    names = tuple(d.name for d in domains)

    spin = tr.Problem(grid=grid, save_at=slv.SaveAt((0.0, float(o.spinup_years))),
                      scheme=reference, physics=physics, names=names)
    spin_law = laws.ConstantA.from_value(float(laws.cuffey_paterson_A(o.spinup_temperature)))
    spun = jax.jit(tr.simulate_batch, static_argnames=("problem", "adjoint"))(
        spin_law, batch, spin)
    is_valley = jnp.asarray([1.0] * o.n_valleys + [0.0] * len(o.real), batch.H0.dtype)
    H0 = jnp.where(is_valley[:, None, None] > 0, spun.thickness[:, -1], batch.H0)
    batch = dataclasses.replace(batch, H0=H0)

    truth = truth_law(o)
    full = tr.Problem(grid=grid, save_at=slv.SaveAt.every(o.years, o.obs_every),
                      scheme=reference, physics=physics, names=names)
    batch, H_true, speed_true = observe(truth, batch, full, o, seed=seed)

    test = held_out(o.n_valleys, o.test_glaciers)
    train = [i for i in range(len(domains)) if i not in test]
    train_names = tuple(names[i] for i in train)
    problem = dataclasses.replace(full, names=train_names,
                                  scheme=reference if scheme is None else scheme)
    setup = TwinSetup(domains=tuple(domains[i] for i in train),
                      batch=tr.take(batch, train, multiple_of=devices), problem=problem,
                      truth=truth, H_true=H_true[train])
    return DiffusivityTwin(
        train=setup, test_domains=tuple(domains[i] for i in test),
        test_batch=tr.take(batch, test) if test else None, test_H_true=H_true[test],
        test_speed_true=speed_true[test], speed_true=speed_true[train], temperature=T)


# --------------------------------------------------------------------------------------------
# What is learned: the law on a grid of (thickness, slope), where the glaciers have been.


def surface_slope(H, bed, dx: float) -> np.ndarray:
    """|grad S| [-] at cell centres (centred differences, one-sided at the edges)."""
    S = np.asarray(bed) + np.asarray(H)
    gy, gx = np.gradient(S, dx, axis=(-2, -1))
    return np.hypot(gx, gy)


def visited_states(H, bed, ice_free, dx: float, *, min_thickness: float = 1.0):
    """(thickness, slope) of every ice cell (H > ``min_thickness`` m, not held ice-free) of
    trajectories H (G, nt, ny, nx) on beds (G, ny, nx): two flat arrays."""
    H = np.asarray(H, np.float64)
    bed = np.broadcast_to(np.asarray(bed, np.float64)[:, None], H.shape)
    slope = surface_slope(H, bed, dx)
    inside = np.broadcast_to((1.0 - np.asarray(ice_free))[:, None] > 0, H.shape)
    ice = inside & (H > min_thickness)
    return H[ice], slope[ice]


def law_map(law, truth, physics: Physics, temperature: float, states, *,
            H_max: float | None = None, slope_max: float = 0.6, bins=(40, 30)):
    """D_learned, D_true [m2 a-1] and the visited-state density on bin centres of thickness
    (0 to ``H_max``, default the largest visited, rounded up to 50 m) and slope (0 to
    ``slope_max``); a dict of NumPy arrays (D_true None without a truth)."""
    H_s, slope_s = states
    if H_max is None:
        H_max = max(100.0, math.ceil(float(np.max(H_s, initial=0.0)) / 50.0) * 50.0)
    H_edges = np.linspace(0.0, H_max, bins[0] + 1)
    s_edges = np.linspace(0.0, slope_max, bins[1] + 1)
    H_c = 0.5 * (H_edges[1:] + H_edges[:-1])
    s_c = 0.5 * (s_edges[1:] + s_edges[:-1])
    count, _, _ = np.histogram2d(H_s, np.minimum(slope_s, slope_max), bins=(H_edges, s_edges))
    density = count / max(1.0, count.sum())
    HH, SS = np.meshgrid(H_c, s_c, indexing="ij")
    D_learned = np.asarray(laws.diffusivity_on(law.rheology(temperature, physics), HH, SS))
    D_true = None
    if truth is not None:
        D_true = np.asarray(laws.diffusivity_on(truth.rheology(temperature, physics), HH, SS))
    return dict(thickness=H_c, slope=s_c, D_learned=D_learned, D_true=D_true,
                state_density=density)


WELL_VISITED = 0.9
"""The well-visited region: the densest bins that together hold this fraction of the states."""


def well_visited(density, fraction: float = WELL_VISITED) -> np.ndarray:
    """Mask of the densest bins holding ``fraction`` of the visits (ties included)."""
    flat = np.asarray(density, np.float64).ravel()
    order = np.argsort(flat)[::-1]
    cum = np.cumsum(flat[order])
    n = int(np.searchsorted(cum, fraction * cum[-1]) + 1) if cum[-1] > 0 else 0
    mask = np.zeros(flat.shape, bool)
    mask[order[:n]] = True
    return mask.reshape(np.shape(density))


def density_weighted_median(values, density, fraction: float = WELL_VISITED) -> float:
    """The median of ``values`` weighted by ``density`` over the well-visited bins."""
    mask = well_visited(density, fraction) & np.isfinite(values)
    v, w = np.asarray(values)[mask], np.asarray(density)[mask]
    if not v.size or w.sum() <= 0:
        return float("nan")
    order = np.argsort(v)
    cum = np.cumsum(w[order])
    return float(v[order][np.searchsorted(cum, 0.5 * cum[-1])])


def relative_error(D_learned, D_true) -> np.ndarray:
    """|D_learned / D_true - 1| (NaN where D_true is 0)."""
    D_true = np.asarray(D_true, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(D_true > 0, np.abs(np.asarray(D_learned) / D_true - 1.0), np.nan)


# --------------------------------------------------------------------------------------------
# Generalisation: the held-out glaciers, against the best constant-A Glen law.


def training_states(setup: TwinSetup, problem: tr.Problem):
    """The (thickness, slope) states the training glaciers of a twin visit in the truth."""
    n = len(problem.names)
    return visited_states(setup.H_true[:n], np.asarray(setup.batch.bed)[:n],
                          np.asarray(setup.batch.ice_free)[:n], problem.grid.dx)


def fit_constant_A(batch: tr.GlacierBatch, problem: tr.Problem, *, A_prior: float,
                   span: float = 100.0, iterations: int = 14) -> tuple[laws.ConstantA, float]:
    """The constant-A Glen law (n = 3, no sliding) of least training loss on ``batch``: ln A
    on a grid of 9 values within ``span`` of ``A_prior``, then golden-section search in the
    bracket of the best one (forward runs only); (law, its loss)."""
    free = problem.with_budget(tr.UNBOUNDED)
    loss = jax.jit(lambda law: tr.loss_fn(law, batch, free, adjoint=slv.FORWARD_ONLY)[0])

    def f(log_A):
        value = float(loss(laws.ConstantA(log_A=jnp.asarray(log_A, batch.H0.dtype))))
        return value if math.isfinite(value) else math.inf

    grid = np.linspace(math.log(A_prior / span), math.log(A_prior * span), 9)
    values = [f(x) for x in grid]
    i = int(np.argmin(values))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    g = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(iterations):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    best = min([(values[i], grid[i]), (fc, c), (fd, d)])
    return laws.ConstantA(log_A=jnp.asarray(best[1], batch.H0.dtype)), float(best[0])


def final_errors(law, batch: tr.GlacierBatch, problem: tr.Problem, H_true, speed_true):
    """RMSE of the final thickness [m] and surface speed [m a-1] of ``law`` on ``batch``
    against the truth, over the cells with ice in the truth or the model at the end (inside
    the glaciers' domains), all glaciers pooled; and the forward run's statuses."""
    free = problem.with_budget(tr.UNBOUNDED)
    traj, speed = jax.jit(tr.simulate_batch, static_argnames=("problem", "adjoint", "speed"))(
        law, batch, free, speed=True)
    H = np.asarray(traj.thickness)[:, -1]
    u = np.asarray(speed)[:, -1]
    Ht, ut = np.asarray(H_true)[:, -1], np.asarray(speed_true)[:, -1]
    inside = (1.0 - np.asarray(batch.ice_free)) > 0
    ice = inside & ((Ht > 0) | (H > 0))
    if not ice.any():
        return dict(thickness_rmse=float("nan"), speed_rmse=float("nan")), traj.status
    return (dict(thickness_rmse=float(np.sqrt(np.mean((H - Ht)[ice] ** 2))),
                 speed_rmse=float(np.sqrt(np.mean((u - ut)[ice] ** 2)))),
            np.asarray(traj.status))


def evaluate(law, twin: DiffusivityTwin, batch: tr.GlacierBatch, problem: tr.Problem, *,
             A_prior: float, constant: laws.ConstantA | None = None):
    """What ``glacier-train experiment=twin_diffusivity`` reports of a trained ``law``:
    (the law map of ``law_map``, the map of the best constant-A fit, attributes). ``batch``
    and ``problem`` are those training used (weights, scheme); ``constant``: the best
    constant-A law when already fitted (``fit_constant_A``).

    Attributes: D_median_rel_error (median of |D_learned / D_true - 1| weighted by the state
    density over the well-visited bins) and its constant-A counterpart; constant_A_fit
    [Pa-3 a-1]; on the held-out glaciers test_thickness_rmse, test_speed_rmse and their
    ``_constant_A`` counterparts (final time, see ``final_errors``).
    """
    setup, physics = twin.train, problem.physics
    states = training_states(setup, problem)
    learned = law_map(law, setup.truth, physics, twin.temperature, states)
    if constant is None:
        constant, _ = fit_constant_A(batch, problem, A_prior=A_prior)
    H_c = learned["thickness"]
    fitted = law_map(constant, setup.truth, physics, twin.temperature, states,
                     H_max=float(H_c[-1] + 0.5 * (H_c[1] - H_c[0])))
    attrs = dict(
        D_median_rel_error=density_weighted_median(
            relative_error(learned["D_learned"], learned["D_true"]), learned["state_density"]),
        D_median_rel_error_constant_A=density_weighted_median(
            relative_error(fitted["D_learned"], fitted["D_true"]), fitted["state_density"]),
        well_visited_fraction=WELL_VISITED, visited_states=int(states[0].size),
        constant_A_fit=float(jnp.exp(constant.log_A)), truth=_truth_text(setup.truth),
        test_glaciers=",".join(d.name for d in twin.test_domains))
    if twin.test_batch is not None:
        for name, candidate in (("", law), ("_constant_A", constant)):
            errors, _ = final_errors(candidate, twin.test_batch, problem, twin.test_H_true,
                                     twin.test_speed_true)
            attrs[f"test_thickness_rmse{name}"] = errors["thickness_rmse"]
            attrs[f"test_speed_rmse{name}"] = errors["speed_rmse"]
    return learned, fitted, attrs


def _truth_text(truth: laws.GlenTruth) -> str:
    text = f"Glen n = {truth.n:g}, A = Cuffey & Paterson A(T)"
    if truth.n != GLEN_N:
        text += " carried to n at 100 m and slope 0.1"
    return text + (f", Budd sliding fs = {truth.fs:.4g} Pa-{truth.n:g} m2 a-1"
                   if truth.fs else "")
