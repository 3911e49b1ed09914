"""Packaged experiments: the twin experiment for a learned A(T).

``twin_A_of_T`` builds a set of glaciers whose long-term temperatures span about -25 to 0 degC
(synthetic valleys of different shapes plus the bundled real geometries), simulates them with
the *true* law (Cuffey & Paterson's A(T)) and returns yearly thickness "observations", with
optional noise and gaps. Training ``nn_A_of_T`` on them should recover A(T) (Bolibar et al. 2023,
GMD 16, 6671-6687, section 4).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from . import laws
from . import solver as slv
from . import train as tr
from .domains import Domain, build_domain
from .errors import ConfigError
from .options import option
from .physics.params import Physics
from .schemes import ExplicitMUSCL, Scheme


@dataclasses.dataclass(frozen=True)
class TwinSetup:
    """Glaciers, observations and the true law of a twin experiment."""

    domains: tuple[Domain, ...]
    batch: tr.GlacierBatch
    problem: tr.Problem
    truth: laws.CuffeyPaterson
    H_true: np.ndarray  # (G, nt, ny, nx) true thickness at the save times (padded grid)


def valley_shapes(n: int, dx: float, seed: int) -> list[dict]:
    """Options of ``n`` synthetic valleys of different length (5-9 km), width (3-5 km), slope,
    side rise, bump and ELA, on cells of ``dx`` metres."""
    rng = np.random.default_rng(seed)
    shapes = []
    for _ in range(n):
        ny = max(8, int(round(rng.uniform(5e3, 9e3) / dx)))
        nx = max(6, int(round(rng.uniform(3e3, 5e3) / dx)))
        slope = float(rng.uniform(0.12, 0.25))
        length = (ny - 1) * dx
        head = 3200.0
        ela = head - float(rng.uniform(0.35, 0.55)) * slope * length
        shapes.append(dict(nx=nx, ny=ny, dx=dx, head=head, slope=slope,
                           side_rise=float(rng.uniform(250, 600)),
                           bump_height=float(rng.uniform(0, 80)), ela=ela,
                           gradient=float(rng.uniform(0.004, 0.008)), max_rate=2.0,
                           bump_length=max(400.0, 2 * dx), bump_width=max(600.0, 3 * dx)))
    return shapes


REAL_TWIN_GLACIERS = ("hintereisferner", "south_glacier")
"""Bundled real glaciers that ``TwinAofTOptions.real`` may list."""


@dataclasses.dataclass(frozen=True)
class TwinAofTOptions:
    """``experiment=twin_A_of_T``: recover Cuffey & Paterson's A(T) from synthetic observations
    (``twin_A_of_T``; the meaning of each option is in its docstring)."""

    dx: float = option(200.0, "common grid spacing [m] (real glaciers are resampled to it)")
    years: float = option(15.0, "length of the observed period [a]")
    obs_every: float = option(1.0, "years between observations")
    n_valleys: int = option(8, "number of synthetic valleys, temperatures spread over "
                             "[T_min, T_max]")
    real: list[str] = option(list(REAL_TWIN_GLACIERS), "bundled real glaciers to add "
                                                      "(hintereisferner, south_glacier)")
    T_min: float = option(-25.0, "temperature of the coldest valley [degC]")
    T_max: float = option(0.0, "temperature of the warmest valley [degC]")
    spinup_years: float = option(150.0, "spin-up of the valleys from no ice [a]")
    spinup_temperature: float = option(-10.0, "temperature of A during the spin-up [degC]")
    noise: float = option(0.0, "standard deviation of the observation noise [m]")
    obs_fraction: float = option(1.0, "fraction of ice cells observed each time, in (0, 1]")
    velocity_obs: bool = option(False, "also observe the true surface speed (for loss.velocity)")
    velocity_noise: float = option(0.0, "standard deviation of the speed noise [m a^-1]")


def twin_A_of_T(options: TwinAofTOptions | None = None, *, seed: int = 0,
                physics: Physics | None = None, cfl: float = 0.124, max_dt: float = 1.0,
                dtype: str = "float64", devices: int = 1, scheme: Scheme | None = None,
                chunk: int | None = None, **overrides) -> TwinSetup:
    """Build the twin experiment (see module docstring).

    Args (``options`` fields, or their keyword ``overrides``):
        dx: common grid spacing [m] (real glaciers are resampled to it).
        years, obs_every: length of the observed period and the observation interval [a].
        n_valleys: number of synthetic valleys; their temperatures are evenly spaced in
            [T_min, T_max] degC. The real glaciers keep their own temperatures.
        spinup_years, spinup_temperature: valleys start from the state reached after
            ``spinup_years`` from no ice with A at ``spinup_temperature``, so that the true law
            (different A for each glacier) makes them thicken or thin during the observed
            period. Real glaciers start from their own initial thickness.
        noise: standard deviation [m] of Gaussian noise added to the observations.
        obs_fraction: fraction of ice cells observed at each time (the rest are gaps, NaN).
        velocity_obs: also "observe" the true surface speed where thickness is observed
            (for ``loss.velocity``), with Gaussian noise of ``velocity_noise`` [m a^-1].
        seed: seeds the valley shapes, the noise and the gaps.
        devices: the batch is padded to a multiple of this number of glaciers.
        cfl, max_dt: the explicit scheme that makes the observations (spin-up and truth).
        scheme: the scheme of the returned training problem (default: that explicit one).
        chunk: glaciers per forward run of the spin-up and the truth (``train.in_chunks``;
            ``train.batch_size`` of a mini-batch run): device memory of ``chunk`` glaciers.
    """
    train_scheme = scheme
    o = dataclasses.replace(options or TwinAofTOptions(), **overrides)
    dx, years, obs_every, n_valleys = o.dx, o.years, o.obs_every, o.n_valleys
    real, T_min, T_max = tuple(o.real), o.T_min, o.T_max
    spinup_years, spinup_temperature = o.spinup_years, o.spinup_temperature
    noise, obs_fraction = o.noise, o.obs_fraction
    if n_valleys + len(real) < 1:
        raise ConfigError("The twin experiment needs at least one glacier.")
    if not (0 < obs_fraction <= 1):
        raise ConfigError(f"experiment.obs_fraction must be in (0, 1], got {obs_fraction}.")
    if noise < 0:
        raise ConfigError(f"experiment.noise must be >= 0, got {noise}.")
    domains = []
    temps = np.linspace(T_min, T_max, n_valleys) if n_valleys > 1 else np.array([T_max])
    for i, (opts, T) in enumerate(zip(valley_shapes(n_valleys, dx, seed), temps, strict=True)):
        d = build_domain("synthetic_valley", temperature=float(T), **opts)
        domains.append(dataclasses.replace(d, name=f"valley_{i + 1}"))
    for name in real:
        domains.append(build_domain(name, dx=dx))
    physics = domains[0].physics if physics is None else physics
    batch, grid = tr.stack_domains(domains, dtype=dtype, multiple_of=devices)
    scheme = ExplicitMUSCL(cfl=cfl, max_dt=max_dt)
    names = tuple(d.name for d in domains)

    # Spin-up of the valleys with one A for all.
    n_real = len(real)
    spin = tr.Problem(grid=grid, save_at=slv.SaveAt((0.0, float(spinup_years))), scheme=scheme,
                      physics=physics, names=names)
    ref_law = laws.ConstantA.from_value(float(laws.cuffey_paterson_A(spinup_temperature)))
    run = jax.jit(tr.simulate_batch, static_argnames=("problem", "adjoint"))
    H_spun = tr.in_chunks(lambda b: run(ref_law, b, spin).thickness[:, -1], batch, chunk)
    is_valley = jnp.asarray([1.0] * n_valleys + [0.0] * n_real
                            + [1.0] * (batch.size - len(domains)), batch.H0.dtype)
    H0 = jnp.where(is_valley[:, None, None] > 0, H_spun, batch.H0)
    batch = dataclasses.replace(batch, H0=H0)

    problem = tr.Problem(grid=grid, save_at=slv.SaveAt.every(years, obs_every), scheme=scheme,
                         physics=physics, names=names)
    truth = laws.CuffeyPaterson()
    train_problem = problem if train_scheme is None else dataclasses.replace(
        problem, scheme=train_scheme)
    batch, H_true, _ = observe(truth, batch, problem, o, seed=seed, chunk=chunk)
    return TwinSetup(domains=tuple(domains), batch=batch, problem=train_problem, truth=truth,
                     H_true=H_true)


def observe(truth, batch: tr.GlacierBatch, problem: tr.Problem, o, *, seed: int,
            chunk: int | None = None):
    """Run ``truth`` on ``batch`` and attach its yearly thickness (and, with
    ``o.velocity_obs``, surface speed) as observations, with the noise and gaps of the options
    ``o`` (noise, obs_fraction, velocity_obs, velocity_noise); (batch, H_true, speed_true)
    with the true thickness and speed (G, nt, ny, nx) at the save times; ``chunk`` glaciers
    per forward run (``train.in_chunks``)."""
    run = jax.jit(tr.simulate_batch, static_argnames=("problem", "adjoint", "speed"))
    true_traj, true_speed = tr.in_chunks(lambda b: run(truth, b, problem, speed=True), batch,
                                         chunk)
    if np.any(np.asarray(true_traj.status) != slv.STATUS_OK):
        raise ConfigError("The true model failed on the twin glaciers; reduce dx or cfl.")
    H_true = np.asarray(true_traj.thickness)
    rng = np.random.default_rng(seed + 1)
    obs = H_true[:, 1:].copy()
    inside = 1.0 - np.asarray(batch.ice_free)[:, None]
    keep = (inside > 0) & ((obs > 0) | (np.asarray(batch.H0)[:, None] > 0))
    if o.obs_fraction < 1:
        keep &= rng.random(obs.shape) < o.obs_fraction
    if o.noise > 0:
        obs = np.maximum(obs + o.noise * rng.standard_normal(obs.shape), 0.0)
    obs = np.where(keep, obs, np.nan)
    vel = None
    if o.velocity_obs:
        vel = np.asarray(true_speed)[:, 1:]
        if o.velocity_noise > 0:
            vel = np.maximum(vel + o.velocity_noise * rng.standard_normal(vel.shape), 0.0)
        vel = np.where(keep, vel, np.nan)
    return tr.with_observations(batch, obs, vel), H_true, np.asarray(true_speed)


def law_errors(law, truth, temperatures) -> dict[str, float]:
    """Max and mean relative error of A(T) of ``law`` against ``truth`` at ``temperatures``."""
    T = jnp.asarray(temperatures)
    learned = np.asarray(law.rate_factor(T))
    true = np.asarray(truth.rate_factor(T))
    rel = np.abs(learned - true) / true
    return dict(max_rel_error=float(rel.max()), mean_rel_error=float(rel.mean()))


# --------------------------------------------------------------------------------------------
# Twin of an inversion: a glacier with a known bed, observed along a few radar lines.


@dataclasses.dataclass(frozen=True)
class InversionTwin:
    """A steady synthetic valley glacier and its radar lines.

    ``domain`` holds what a glaciologist would have: ``bed`` and ``thickness`` are the truth
    (the inversion never reads them), the surface is bed + thickness, ``mask`` the ice
    (thickness > 1 m), ``thickness_obs`` the true thickness (plus noise) on the lines.
    """

    domain: Domain
    thickness_true: np.ndarray
    physics: Physics
    obs_fraction: float
    fs_true: np.ndarray | None = None

    @property
    def surface(self) -> np.ndarray:
        return self.domain.bed + self.thickness_true

    def dataset(self):
        """The twin as a glacier file of data/README.md's conventions (surface, mask,
        thickness_obs, thickness_obs_count, smb in m w.e. a-1): no bed, no gridded thickness."""
        import xarray as xr

        d, grid = self.domain, self.domain.grid
        surface = self.surface
        smb_ice = np.asarray(d.smb(jnp.asarray(surface)))
        smb_we = np.where(d.mask > 0, smb_ice * self.physics.rho / 1000.0, np.nan)
        count = np.where(np.isfinite(d.thickness_obs), 1, 0).astype(np.int32)
        dims = ("y", "x")
        src = "glacier.experiments.twin_inversion (synthetic)"
        return xr.Dataset(
            dict(surface=(dims, surface, dict(units="m", long_name="surface elevation",
                                              source=src)),
                 mask=(dims, d.mask.astype(np.int8), dict(units="1", long_name="glacier mask",
                                                          source=src)),
                 thickness_obs=(dims, d.thickness_obs, dict(
                     units="m", long_name="observed thickness (radar lines)", source=src)),
                 thickness_obs_count=(dims, count, dict(units="1", long_name="points per cell",
                                                        source=src)),
                 smb=(dims, smb_we, dict(units="m w.e. a-1", long_name="surface mass balance",
                                         source=src))),
            coords=dict(x=("x", grid.x, dict(units="m")), y=("y", grid.y, dict(units="m"))),
            attrs=dict(glacier_name="twin valley", crs="local"),
        )


def twin_inversion(*, nx: int = 31, ny: int = 45, dx: float = 200.0, years: float = 600.0,
                   ela_fraction: float = 0.1, side_rise: float = 800.0,
                   lines: tuple[float, ...] = (0.25, 0.5, 0.75), every: int = 2,
                   noise: float = 0.0, seed: int = 0, sliding: float = 0.0) -> InversionTwin:
    """A synthetic valley (``domains.synthetic_valley`` with ``nx`` x ``ny`` cells of ``dx``,
    the ELA ``ela_fraction`` of the valley's drop below its head) grown to steady state over
    ``years`` from no ice (volume change < 1e-4 over the last century at the defaults),
    observed on cross-profiles at the given fractions of the glacier's length, one cell in
    ``every`` ("radar lines"; about 5 % of the ice cells at the defaults), with Gaussian
    ``noise`` [m]. The true thickness is the glacier's; its mass balance is known.

    ``sliding`` > 0: the truth slides below 40 % of the valley's length (the lower half of the
    glacier at the defaults), with a Budd fs
    (``fs_true``) rising smoothly down-glacier to a sliding diffusivity ``sliding`` times the
    deformation's under 100 m of ice (``laws.budd_fs_for_ratio``) and none at the head;
    ``physics`` (what an inversion starts from) still has fs = 0.
    """
    from .simulation import run

    L = (ny - 1) * dx
    slope = 2000.0 / 9900.0
    valley = build_domain("synthetic_valley", nx=nx, ny=ny, dx=dx, slope=slope,
                          side_rise=side_rise, ela=3000.0 - ela_fraction * slope * L,
                          bump_length=max(400.0, 2 * dx),
                          bump_width=max(600.0, 3 * dx), t_end=years, save_every=years)
    physics = valley.physics
    fs_true, rheology = None, None
    if sliding > 0:
        down = (valley.grid.y - valley.grid.y.min()) / (valley.grid.y.max() - valley.grid.y.min())
        ramp = 0.5 * (1.0 + np.tanh((down - 0.4) / 0.08))  # 0 at the head, 1 down-valley
        fs_true = (laws.budd_fs_for_ratio(physics.A, sliding, n=physics.n)
                   * np.repeat(ramp[:, None], nx, axis=1))
        rheology = laws.GlenLaw(A=physics.A, fs=jnp.asarray(fs_true), n=physics.n,
                                rho=physics.rho, g=physics.g)
    result = run(valley, save_at=slv.SaveAt((0.0, years)),
                 scheme=ExplicitMUSCL(cfl=0.124, max_dt=1.0), rheology=rheology)
    if result.failure is not None:
        raise ConfigError(f"twin_inversion: the spin-up failed: {result.failure}")
    H = np.asarray(result.thickness[-1], np.float64)
    mask = (H > 1.0).astype(np.float64)
    H = H * mask
    rows = np.flatnonzero(mask.any(axis=1))
    obs = np.full(H.shape, np.nan)
    rng = np.random.default_rng(seed)
    for f in lines:
        j = int(rows[0] + round(f * (rows[-1] - rows[0])))
        on = (mask[j] > 0) & (np.arange(nx) % every == 0)
        obs[j, on] = H[j, on] + (noise * rng.standard_normal(int(on.sum())) if noise else 0.0)
    obs = np.where(np.isfinite(obs), np.maximum(obs, 0.0), np.nan)
    domain = dataclasses.replace(valley, thickness=H, mask=mask, thickness_obs=obs,
                                 thickness_obs_count=np.isfinite(obs).astype(np.float64),
                                 name="twin_valley")
    return InversionTwin(domain=domain, thickness_true=H, physics=physics,
                         obs_fraction=float(np.isfinite(obs).sum() / mask.sum()),
                         fs_true=fs_true)
