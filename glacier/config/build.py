"""Config -> typed library settings: the only place where a ``DictConfig`` is read.

``typed`` merges any config (also a run directory's ``.hydra/config.yaml``) into its schemas;
the ``build_*`` functions turn its nodes into library objects (``Domain``, ``Physics``,
``SaveAt``, ``ExplicitMUSCL``, laws, ``InvertOptions``) and the ``*_job`` functions into the
typed settings of an application (``glacier.apps``). Library errors (``ValueError`` in the
library's own words) are translated here into ``ConfigError`` naming the config key.

``null`` in ``physics`` and in ``solver.t_end``/``save_every``/``max_dt`` means "the domain's
default"; ``resolved_config`` writes the values actually used back into the config that goes
into the output files.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .. import domains
from .. import solver as slv
from ..errors import ConfigError
from ..physics.params import Physics, implausible
from ..schemes import Scheme, make_scheme
from .schemas import PRIMARY_SCHEMAS, SELECTORS


def plain(node) -> Any:
    """A config node as plain Python values (enums by value)."""
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True, throw_on_missing=True)
    if isinstance(node, dict):
        return {k: plain(v) for k, v in node.items()}
    if isinstance(node, enum.Enum):
        return node.value
    return node


def typed(cfg: DictConfig, primary: str = "simulate") -> DictConfig:
    """``cfg`` merged into its schemas: checks keys and types of any config, also one that was
    loaded without them (a run directory's ``.hydra/config.yaml`` has no defaults list).

    Raises the OmegaConf error (``ConfigKeyError``, ``ValidationError``) of the first bad key;
    ``cli`` turns it into a one-paragraph message.
    """
    schema = PRIMARY_SCHEMAS[primary]
    chosen = {}
    for group, schemas in SELECTORS[primary].items():
        name = OmegaConf.select(cfg, f"{group}.name", default=None)
        option_schema = schemas.get(name) if isinstance(name, str) else None
        if option_schema is None:
            raise ConfigError(f"{group}.name={name!r} is not a known {group}. Choose one with "
                              f"{group}=NAME: {', '.join(schemas)}.")
        chosen[group] = option_schema(name=name)
    base = OmegaConf.structured(schema(**chosen))
    plain = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    out = OmegaConf.merge(base, plain)
    OmegaConf.set_struct(out, True)
    return out


def build_glacier(cfg_glacier) -> domains.Domain:
    """The domain of ``cfg.glacier``: ``build_domain(name, **the other glacier keys)``."""
    missing = sorted(OmegaConf.missing_keys(cfg_glacier)) if isinstance(
        cfg_glacier, DictConfig) else []
    if missing:
        keys = ", ".join(f"glacier.{k}" for k in missing)
        raise ConfigError(f"{keys} must be set for glacier={cfg_glacier.get('name', '?')}, "
                          f"e.g. glacier.{missing[0]}=... on the command line.")
    options = plain(cfg_glacier)
    name = options.pop("name")
    return domains.build_domain(name, **options)


def build_physics(cfg_physics, domain: domains.Domain) -> Physics:
    """The domain's physical defaults with the config's non-null values (validated)."""
    overrides = plain(cfg_physics)
    try:
        physics = domain.physics.replace(**overrides)
    except ValueError as e:
        raise ConfigError(f"physics.{e}") from e
    problems = implausible(physics, [k for k, v in overrides.items() if v is not None])
    if problems:
        raise ConfigError("physics: " + "; ".join(problems) + ". Set a plausible value or "
                          "leave the key null for the glacier's default.")
    return physics


@dataclasses.dataclass(frozen=True)
class SolverSettings:
    """What ``glacier-simulate`` takes of ``solver.*`` (the domain's defaults for the nulls)."""

    t_end: float
    save_every: float | None
    save_at: slv.SaveAt
    scheme: Scheme
    dtype: str
    area_threshold: float


def build_solver(cfg_solver, domain: domains.Domain) -> SolverSettings:
    """Solver settings with the domain's defaults for the null keys, validated."""
    s = plain(cfg_solver)
    defaults = domain.solver

    def pick(key):
        return s[key] if s.get(key) is not None else defaults.get(key)

    t_end, save_every, max_dt = pick("t_end"), pick("save_every"), pick("max_dt")
    if t_end is None:
        raise ConfigError(f"glacier={domain.name} has no default duration: set solver.t_end "
                          "(simulated years), e.g. solver.t_end=100.")
    if not (t_end > 0 and math.isfinite(t_end)):
        raise ConfigError(f"solver.t_end={t_end:g} must be a positive number of simulated "
                          "years, e.g. solver.t_end=100.")
    if save_every is not None and not (save_every > 0 and math.isfinite(save_every)):
        raise ConfigError(f"solver.save_every={save_every:g} must be a positive number of "
                          "years; a value >= solver.t_end saves only the first and last "
                          "states, null takes the glacier's default.")
    max_dt = float(max_dt if max_dt is not None else 1.0)
    try:
        scheme = make_scheme(s["scheme"], cfl=float(s["cfl"]), max_dt=max_dt,
                             dt=implicit_dt(s.get("dt"), max_dt), max_steps=int(s["max_steps"]))
    except ValueError as e:
        raise ConfigError(f"invalid solver settings: {e} Set solver.cfl in (0, 0.25], "
                          "solver.max_dt > 0, solver.dt > 0 and solver.max_steps >= 1.") from e
    save_at = slv.SaveAt.every(float(t_end), None if save_every is None else float(save_every))
    if s["area_threshold"] < 0:
        raise ConfigError(f"solver.area_threshold={s['area_threshold']:g} must be >= 0 [m].")
    return SolverSettings(t_end=float(t_end), save_every=save_every, save_at=save_at,
                          scheme=scheme, dtype=s["dtype"],
                          area_threshold=float(s["area_threshold"]))


def implicit_dt(dt, max_dt: float) -> float:
    """``solver.dt``, null -> max(1 a, the explicit max_dt)."""
    return float(dt) if dt is not None else max(1.0, float(max_dt))


def resolved_config(cfg: DictConfig, physics: Physics, run: SolverSettings) -> str:
    """The config as YAML text with the domain defaults that were used in place of the nulls."""
    out = OmegaConf.create(plain(cfg))
    values = physics.as_dict()
    for key in out.physics:
        if out.physics[key] is None and key in values:
            out.physics[key] = float(values[key])
    out.solver.t_end = run.t_end
    out.solver.save_every = None if run.save_every is None else float(run.save_every)
    out.solver.max_dt = float(out.solver.max_dt if out.solver.max_dt is not None
                              else getattr(run.scheme, "max_dt", 1.0))
    out.solver.dt = implicit_dt(out.solver.dt, out.solver.max_dt)
    return OmegaConf.to_yaml(out)


# --------------------------------------------------------------------------------------------
# glacier-train: config -> law, experiment, trainer settings.

TRAIN_SOLVER_DEFAULTS = {"cfl": 0.124, "max_dt": 1.0}
"""Stepping of ``glacier-train`` where ``solver.*`` is null (the twin experiment's)."""

def train_stepping(cfg_solver) -> dict[str, float]:
    """cfl, max_dt and dt of a training run (null -> ``TRAIN_SOLVER_DEFAULTS``; dt null ->
    max(1 a, max_dt))."""
    s = plain(cfg_solver)
    out = {k: float(s[k]) if s.get(k) is not None else v
           for k, v in TRAIN_SOLVER_DEFAULTS.items()}
    out["dt"] = implicit_dt(s.get("dt"), out["max_dt"])
    return out


def train_scheme(cfg_solver) -> Scheme:
    """The scheme ``glacier-train`` trains with (``solver.scheme``; ConfigError if invalid)."""
    st = train_stepping(cfg_solver)
    try:
        return make_scheme(plain(cfg_solver)["scheme"], **st)
    except ValueError as e:
        raise ConfigError(f"invalid solver settings: {e}") from e


def law_bounds(cfg_law) -> tuple[float, float]:
    """(A_min, A_max) [Pa^-3 a^-1] of a learned law.

    null -> ``laws.PRIOR_BOUNDS``: A from 3.5e-26 to 3.5e-24 s^-1 Pa^-3 (it
    brackets Cuffey & Paterson's A from -30 to 0 degC), and a fresh network starts at the prior
    3.5e-25 s^-1 Pa^-3 (the geometric middle).
    """
    from ..laws import A_PRIOR
    from ..laws import PRIOR_BOUNDS as defaults
    if "F_min" in cfg_law:  # nn_D: the range of A_ref F
        A_ref = cfg_law.get("A_ref") or A_PRIOR
        return (A_ref * float(cfg_law["F_min"]), A_ref * float(cfg_law["F_max"]))
    lo, hi = cfg_law.get("A_min"), cfg_law.get("A_max")
    return (defaults[0] if lo is None else float(lo), defaults[1] if hi is None else float(hi))


def build_law(cfg: DictConfig, *, dtype: str = "float64"):
    """The initial law of ``cfg.law`` (network initialised from ``cfg.seed``)."""
    import jax.numpy as jnp

    from .. import laws

    law = plain(cfg.law)
    net = plain(cfg.network)
    name = law["name"]
    param_dtype = jnp.float64 if dtype == "float64" else jnp.float32
    try:
        if name == "constant_A":
            return laws.ConstantA(log_A=jnp.log(jnp.asarray(law["A"], param_dtype)))
        if name == "nn_A_of_T":
            return laws.NeuralAofT.create(
                hidden=tuple(net["hidden"]), seed=int(cfg.seed), activation=net["activation"],
                T_mean=law["T_mean"], T_scale=law["T_scale"], bounds=law_bounds(law),
                param_dtype=param_dtype)
        if name == "nn_diffusivity":
            return laws.NeuralDiffusivity.create(
                hidden=tuple(net["hidden"]), seed=int(cfg.seed), activation=net["activation"],
                scales=(law["H_scale"], law["slope_scale"], law["T_mean"], law["T_scale"]),
                bounds=law_bounds(law), param_dtype=param_dtype)
        if name == "nn_D":
            return laws.NeuralScaledDiffusivity.create(
                hidden=tuple(net["hidden"]), seed=int(cfg.seed), activation=net["activation"],
                scales=(law["H_scale"], law["slope_scale"], law["T_mean"], law["T_scale"]),
                bounds=(law["F_min"], law["F_max"]),
                A_ref=laws.A_PRIOR if law["A_ref"] is None else law["A_ref"],
                param_dtype=param_dtype)
    except ValueError as e:
        raise ConfigError(f"invalid law settings for law={name}: {e}") from e
    raise ConfigError(f"law={name} has nothing to train; choose nn_A_of_T, constant_A, "
                      "nn_diffusivity or nn_D.")


def resolved_train_config(cfg: DictConfig) -> str:
    """The training config as YAML with the defaults used in place of the nulls."""
    out = OmegaConf.create(plain(cfg))
    out.solver.cfl, out.solver.max_dt, out.solver.dt = train_stepping(cfg.solver).values()
    if "A_min" in out.law:
        out.law.A_min, out.law.A_max = law_bounds(out.law)
    return OmegaConf.to_yaml(out)


def training_fingerprint(cfg: DictConfig) -> dict[str, Any]:
    """What a resumed run must share with the checkpoint's run: everything but ``train``
    (epochs may be raised, checkpoint_every, devices, stop_after and resume may change)."""
    out = plain(cfg)
    out.pop("train", None)
    return out


def invert_options(cfg: DictConfig):
    """``glacier.invert.InvertOptions`` of ``cfg.invert`` (ConfigError on a bad value)."""
    from ..invert import InvertOptions

    try:
        return InvertOptions(**plain(cfg.invert), **plain(cfg.solver))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid invert settings: invert.{e}") from e




def resolved_invert_config(cfg: DictConfig, physics: Physics) -> str:
    """The inversion config as YAML with the physics and law bounds actually used."""
    out = OmegaConf.create(plain(cfg))
    out.physics = {key: float(v) for key, v in physics.as_dict().items()}
    if "A_min" in out.law:
        out.law.A_min, out.law.A_max = law_bounds(out.law)
    return OmegaConf.to_yaml(out)


# --------------------------------------------------------------------------------------------
# Config -> the job of an application (``glacier.apps``).


def _domain_and_physics(cfg: DictConfig):
    try:
        domain = build_glacier(cfg.glacier)
    except ValueError as e:
        raise ConfigError(f"invalid configuration: {e}") from e
    return domain, build_physics(cfg.physics, domain)


def simulate_job(cfg: DictConfig, argv: tuple[str, ...] = ()):
    """The ``apps.simulate.SimulateJob`` of a typed ``glacier-simulate`` config."""
    from ..apps.simulate import SimulateJob

    domain, physics = _domain_and_physics(cfg)
    run = build_solver(cfg.solver, domain)
    return SimulateJob(domain=domain, physics=physics, save_at=run.save_at, scheme=run.scheme,
                       dtype=run.dtype, area_threshold=run.area_threshold, seed=int(cfg.seed),
                       config_yaml=resolved_config(cfg, physics, run), argv=tuple(argv))


def distributed_settings(cfg_train):
    """``train.distributed`` as ``glacier.distributed.DistributedSettings`` (validated)."""
    from ..distributed import DistributedSettings

    return DistributedSettings(**plain(cfg_train.distributed))


def train_loop_options(cfg_train) -> dict[str, Any]:
    """The keyword arguments of ``apps.train.TrainLoop`` from ``cfg.train``."""
    return dict(plain(cfg_train), distributed=distributed_settings(cfg_train))


def train_job(cfg: DictConfig, argv: tuple[str, ...] = ()):
    """The ``apps.train.TrainJob`` of a typed and checked ``glacier-train`` config (the
    network is initialised here: JAX's precision must be set first)."""
    from ..apps.train import OptimizerSettings, TrainJob, TrainLoop
    from ..diffusivity_twin import TwinDiffusivityOptions
    from ..experiments import TwinAofTOptions
    from ..glacier_set import FilesOptions
    from ..train import LossWeights

    ex = plain(cfg.experiment)
    options = {"twin_A_of_T": TwinAofTOptions, "twin_diffusivity": TwinDiffusivityOptions,
               "files": FilesOptions}[ex.pop("name")]
    if isinstance(ex.get("glaciers"), list):
        ex["glaciers"] = tuple(ex["glaciers"])
    lo, hi = law_bounds(cfg.law)
    solver = plain(cfg.solver)
    return TrainJob(
        experiment=options(**ex), law=build_law(cfg, dtype=solver["dtype"]),
        law_name=str(cfg.law.name), optimizer=OptimizerSettings(**plain(cfg.optimizer)),
        loop=TrainLoop(**train_loop_options(cfg.train)),
        reg=LossWeights(l2=float(cfg.loss.l2), velocity=float(cfg.loss.velocity)),
        normalise=str(cfg.loss.normalise), A_prior=math.sqrt(lo * hi),
        fit_A_ref=cfg.law.name == "nn_D" and cfg.law.get("A_ref") is None,
        scheme=train_scheme(cfg.solver), dtype=solver["dtype"],
        area_threshold=float(solver["area_threshold"]), seed=int(cfg.seed),
        config_yaml=resolved_train_config(cfg), fingerprint=training_fingerprint(cfg),
        argv=tuple(argv))


def invert_job(cfg: DictConfig, argv: tuple[str, ...] = ()):
    """The ``apps.invert.InvertJob`` of a typed and checked ``glacier-invert`` config."""
    from ..apps.invert import InvertJob

    options = invert_options(cfg)
    domain, physics = _domain_and_physics(cfg)
    physics, source = invert_prior(cfg, domain, physics)
    return InvertJob(domain=domain, physics=physics, options=options,
                     law=build_law(cfg) if options.A == "law" else None, seed=int(cfg.seed),
                     A_prior_source=source,
                     config_yaml=resolved_invert_config(cfg, physics), argv=tuple(argv))


def invert_prior(cfg: DictConfig, domain, physics: Physics) -> tuple[Physics, str]:
    """The physics of an inversion and where its A (the prior and the start of A) comes
    from: ``physics.A`` when the user set it; else Cuffey & Paterson's A at the glacier's
    mean temperature when the glacier has one (the file's climate); else the domain's A."""
    if cfg.physics.get("A") is not None:
        return physics, "physics.A"
    if domain.temperature is None:
        return physics, f"the default of glacier={cfg.glacier.name} (no temperature)"
    from ..laws import cuffey_paterson_A

    T = float(domain.temperature)
    return (physics.replace(A=float(cuffey_paterson_A(T))),
            f"Cuffey & Paterson (2010) at the glacier's {T:.2f} degC")
