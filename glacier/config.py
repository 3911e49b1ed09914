"""Structured-config schemas for the console scripts, and the factories that turn a config into
library objects.

Every config group of ``configs/`` is backed by a dataclass registered in Hydra's ConfigStore
as ``<option>_schema`` (e.g. ``glacier/halfar_schema``); each YAML option lists its schema first
in its defaults list. A misspelt key (``solver.cfll=0.1``) or a value of the wrong type
(``solver.cfl=abc``) therefore fails when Hydra composes the config, before anything runs. The
help text of every key lives here, once, in the field's ``metadata["help"]``.

``null`` in ``physics`` and in ``solver.t_end``/``save_every``/``max_dt`` means "the domain's
default" (Bueler's A = 1e-16 for ``halfar``, OGGM's A for ``synthetic_valley``, ...);
``build_run`` resolves them, and ``resolved_config`` writes the values actually used back into
the config that goes into the output files.

The factories only translate: physics lives in ``simulation``, ``solver`` and ``domains``.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import enum
import math
import re
import typing
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from . import domains
from . import solver as slv
from .errors import ConfigError


def _opt(default: Any, help: str, **kwargs) -> Any:
    """A dataclass field with a default and its help text."""
    if isinstance(default, list | dict) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help},
                     **kwargs)
    return field(default=default, metadata={"help": help}, **kwargs)


# --------------------------------------------------------------------------------------------
# glacier=...: one schema per domain; the defaults are those of the builder's signature
# (``glacier.domains.options(name)``; tests/cli/test_configs.py checks that they agree).


@dataclass
class HalfarConfig:
    """``glacier=halfar``: Bueler et al. (2005) Test B, the Halfar dome on a flat bed."""

    name: str = _opt("halfar", "domain name (the glacier= option)")
    dx: float = _opt(20e3, "grid spacing [m]; must divide half_width")
    half_width: float = _opt(1200e3, "half-width of the square domain [m]")
    H0: float = _opt(3600.0, "dome thickness at t0 [m]")
    R0: float = _opt(750e3, "dome radius at t0 [m]")


@dataclass
class EismintFixedConfig:
    """``glacier=eismint_fixed``: EISMINT I fixed margin (Huybrechts, Payne et al. 1996)."""

    name: str = _opt("eismint_fixed", "domain name (the glacier= option)")
    dx: float = _opt(50e3, "grid spacing [m]; must divide size")
    size: float = _opt(1500e3, "side of the square domain [m]")
    accumulation: float = _opt(0.3, "uniform accumulation [m ice a-1]")


@dataclass
class EismintMovingConfig:
    """``glacier=eismint_moving``: EISMINT I moving margin (Huybrechts, Payne et al. 1996)."""

    name: str = _opt("eismint_moving", "domain name (the glacier= option)")
    dx: float = _opt(50e3, "grid spacing [m]; must divide size")
    size: float = _opt(1500e3, "side of the square domain [m]")
    max_accumulation: float = _opt(0.5, "largest accumulation [m ice a-1]")
    s: float = _opt(1e-5, "mass-balance gradient with distance [a-1]")
    R_el: float = _opt(450e3, "distance of the equilibrium line from the centre [m]")


@dataclass
class BedrockStepConfig:
    """``glacier=bedrock_step``: Jarosch, Schoof & Anslow (2013) as a strip periodic in y."""

    name: str = _opt("bedrock_step", "domain name (the glacier= option)")
    dx: float = _opt(200.0, "grid spacing [m]; must divide length")
    length: float = _opt(30e3, "half-length of the mirrored strip [m]")
    rows: int = _opt(3, "number of identical rows (>= 3)")
    b0: float = _opt(500.0, "height of the bedrock step [m]")
    x_s: float = _opt(7e3, "position of the step [m]")
    x_m: float = _opt(20e3, "end of the accumulation area [m]")
    m0: float = _opt(2.0, "mass-balance scale [m ice a-1]")


@dataclass
class SyntheticValleyConfig:
    """``glacier=synthetic_valley``: an inclined parabolic valley with a bump (OGGM's figures)."""

    name: str = _opt("synthetic_valley", "domain name (the glacier= option)")
    nx: int = _opt(100, "cells across the valley")
    ny: int = _opt(100, "cells along the valley")
    dx: float = _opt(100.0, "grid spacing [m]")
    head: float = _opt(3000.0, "bed elevation at the head of the valley [m]")
    slope: float = _opt(0.2, "down-valley bed slope [1]")
    side_rise: float = _opt(500.0, "rise of the bed at the valley sides [m]")
    bump_height: float = _opt(80.0, "height of the Gaussian bed bump [m]")
    bump_position: float = _opt(0.55, "position of the bump as a fraction of the length")
    bump_length: float = _opt(400.0, "e-folding length of the bump along the valley [m]")
    bump_width: float = _opt(600.0, "e-folding width of the bump across the valley [m]")
    ela: float = _opt(2600.0, "equilibrium-line altitude [m]")
    gradient: float = _opt(3e-3 * 1000.0 / 900.0, "mass-balance gradient [m ice a-1 m-1]")
    max_rate: float = _opt(math.inf, "cap on the mass-balance rate [m ice a-1]")
    temperature: float = _opt(-5.0, "mean air temperature at the glacier [degC]")
    t_end: float = _opt(100.0, "default simulated years (solver.t_end overrides)")
    save_every: float = _opt(10.0, "default years between saves (solver.save_every overrides)")


class Initial(enum.Enum):
    """Initial thickness of a real glacier (``glacier.domains.real.INITIAL_CHOICES``)."""

    auto = "auto"
    observed = "observed"
    zero = "zero"
    estimate = "estimate"


@dataclass
class RealGlacierConfig:
    """``glacier=hintereisferner`` / ``south_glacier``: a bundled real glacier (data/README.md)."""

    name: str = _opt(MISSING, "domain name (the glacier= option)")
    dx: float | None = _opt(
        None, "grid spacing [m]: null = the file's, else a multiple of it")
    initial: Initial = _opt(
        Initial.auto, "initial thickness: auto, observed, zero or estimate (shallow-ice)")
    smb_gradient: float | None = _opt(
        None, "mass-balance elevation feedback [m ice a-1 m-1]; null = fitted")
    basal_stress: float = _opt(100000.0, "basal shear stress of the thickness estimate [Pa]")
    t_end: float = _opt(100.0, "default simulated years (solver.t_end overrides)")
    save_every: float = _opt(10.0, "default years between saves (solver.save_every overrides)")


@dataclass
class NetcdfConfig(RealGlacierConfig):
    """``glacier=netcdf``: any NetCDF file that follows data/README.md's conventions."""

    name: str = _opt("netcdf", "domain name (the glacier= option)")
    path: str = _opt(MISSING, "path of the NetCDF file (required: glacier.path=FILE)")


GLACIER_SCHEMAS: dict[str, type] = {
    "halfar": HalfarConfig,
    "eismint_fixed": EismintFixedConfig,
    "eismint_moving": EismintMovingConfig,
    "bedrock_step": BedrockStepConfig,
    "synthetic_valley": SyntheticValleyConfig,
    "hintereisferner": RealGlacierConfig,
    "south_glacier": RealGlacierConfig,
    "netcdf": NetcdfConfig,
}
"""``glacier=`` option -> its schema."""


# --------------------------------------------------------------------------------------------
# physics=..., solver=...


@dataclass
class PhysicsConfig:
    """``physics``: Glen's-law parameters; null means the domain's default."""

    A: float | None = _opt(None, "Glen's rate factor [Pa^-3 a^-1] (e.g. 1e-16)")
    n: float | None = _opt(None, "Glen's exponent")
    rho: float | None = _opt(None, "ice density [kg m^-3]")
    g: float | None = _opt(None, "gravitational acceleration [m s^-2]")
    fs: float | None = _opt(None, "sliding parameter [Pa^-3 m^2 a^-1]; 0 disables sliding")


class Dtype(enum.Enum):
    """Floating-point precision of the fields."""

    float64 = "float64"
    float32 = "float32"


@dataclass
class SolverConfig:
    """``solver``: time span, saving and explicit stepping; null means the domain's default."""

    t_end: float | None = _opt(None, "simulated years from the start")
    save_every: float | None = _opt(None, "years between saved states (the last one is saved)")
    cfl: float = _opt(0.124, "stability factor: dt = cfl dx^2 / max(D), in (0, 0.25]")
    max_dt: float | None = _opt(None, "largest time step [a]")
    max_steps: int = _opt(10_000_000, "step budget per save interval")
    dtype: Dtype = _opt(Dtype.float64, "precision of the fields: float64 or float32")
    area_threshold: float = _opt(1.0, "thickness [m] above which a cell counts in area")


@dataclass
class SimulateConfig:
    """The primary config of ``glacier-simulate`` (``configs/simulate.yaml``)."""

    glacier: Any = _opt(MISSING, "the glacier: glacier=NAME selects a domain")
    physics: PhysicsConfig = _opt(PhysicsConfig(), "Glen's-law parameters")
    solver: SolverConfig = _opt(SolverConfig(), "time span and stepping")
    seed: int = _opt(0, "the one seed every random choice derives from")


GROUP_SCHEMAS: dict[str, dict[str, type]] = {
    "glacier": GLACIER_SCHEMAS,
    "physics": {"default": PhysicsConfig},
    "solver": {"default": SolverConfig},
}
"""Config group -> option -> schema."""

PRIMARY_SCHEMAS: dict[str, type] = {"simulate": SimulateConfig}
"""Primary config name -> schema."""


def register() -> None:
    """Register every schema with Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    for group, schemas in GROUP_SCHEMAS.items():
        for option, schema in schemas.items():
            cs.store(group=group, name=f"{option}_schema", node=schema)
    for name, schema in PRIMARY_SCHEMAS.items():
        cs.store(name=f"{name}_schema", node=schema)


register()


def field_help(schema: type) -> dict[str, str]:
    """Field name -> help text of a schema dataclass."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(schema)}


# --------------------------------------------------------------------------------------------
# Factories: config -> library objects.


def _plain(node) -> Any:
    """A config node as plain Python values (enums by value)."""
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True, throw_on_missing=True)
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
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
    name = OmegaConf.select(cfg, "glacier.name", default=None)
    glacier_schema = GLACIER_SCHEMAS.get(name) if isinstance(name, str) else None
    if glacier_schema is None:
        raise ConfigError(f"glacier.name={name!r} is not a known glacier. Choose one with "
                          f"glacier=NAME: {', '.join(GLACIER_SCHEMAS)}.")
    base = OmegaConf.structured(schema(glacier=glacier_schema(name=name)))
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
    options = _plain(cfg_glacier)
    name = options.pop("name")
    return domains.build_domain(name, **options)


def build_physics(cfg_physics, domain: domains.Domain) -> dict[str, float]:
    """The domain's physical defaults with the config's non-null values (validated)."""
    from .simulation import resolve_physics  # imports the laws (and flax): only when running

    return resolve_physics(domain, _plain(cfg_physics))


@dataclass(frozen=True)
class RunSettings:
    """Everything ``simulation.run`` needs besides the domain and the physics."""

    t_end: float
    save_every: float | None
    times: tuple[float, ...]
    stepping: slv.Stepping
    dtype: str
    area_threshold: float


def build_run(cfg_solver, domain: domains.Domain) -> RunSettings:
    """Solver settings with the domain's defaults for the null keys, validated."""
    s = _plain(cfg_solver)
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
    try:
        stepping = slv.Stepping(cfl=float(s["cfl"]), max_dt=float(max_dt if max_dt is not None
                                                                   else 1.0),
                                max_steps=int(s["max_steps"]))
    except ValueError as e:
        raise ConfigError(f"invalid solver settings: {e} Set solver.cfl in (0, 0.25], "
                          "solver.max_dt > 0 and solver.max_steps >= 1.") from e
    times = slv.save_times(float(t_end), None if save_every is None else float(save_every))
    if s["area_threshold"] < 0:
        raise ConfigError(f"solver.area_threshold={s['area_threshold']:g} must be >= 0 [m].")
    return RunSettings(t_end=float(t_end), save_every=save_every, times=times,
                       stepping=stepping, dtype=s["dtype"],
                       area_threshold=float(s["area_threshold"]))


def resolved_config(cfg: DictConfig, physics: dict[str, float], run: RunSettings) -> str:
    """The config as YAML text with the domain defaults that were used in place of the nulls."""
    out = OmegaConf.create(_plain(cfg))
    for key in out.physics:
        if out.physics[key] is None and key in physics:
            out.physics[key] = float(physics[key])
    out.solver.t_end = run.t_end
    out.solver.save_every = None if run.save_every is None else float(run.save_every)
    out.solver.max_dt = run.stepping.max_dt
    return OmegaConf.to_yaml(out)


# --------------------------------------------------------------------------------------------
# Checking a command line before anything runs, and saying how to fix it.


def check_overrides(overrides: list[str], *, primary: str = "simulate",
                    config_dir: str | None = None, config_name: str | None = None,
                    command: str = "glacier-simulate") -> str | None:
    """Compose the config of ``overrides`` and return None, or a one-paragraph explanation of
    what is wrong (unknown key, bad type, unknown group option, missing value) and how to fix it.

    Args:
        overrides: the command line's overrides, without Hydra's flags and ``hydra.*`` ones.
        primary: the console script's primary config (and schema).
        config_dir: an absolute directory to compose from instead of the packaged configs
            (``--config-path``, e.g. a run directory's ``.hydra``).
        config_name: the primary config's name there (``--config-name``).
        command: the console script, for the hints.
    """
    from hydra import compose, initialize_config_dir, initialize_config_module

    init = (initialize_config_module(config_module="glacier.configs", version_base=None)
            if config_dir is None else
            initialize_config_dir(config_dir=config_dir, version_base=None))
    try:
        with init:
            cfg = compose(config_name=config_name or primary, overrides=list(overrides))
        cfg = typed(cfg, primary)
    except ConfigError as e:
        return str(e)
    except Exception as e:  # Hydra and OmegaConf errors: explain them
        return explain(e, overrides, primary=primary, command=command)
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        key = missing[0]
        return (f"{key} has no value and must be set for glacier={cfg.glacier.name}: add "
                f"{key}=... to the command line ({_help_of(key, cfg)}).")
    return None


def explain(exc: BaseException, overrides: list[str], *, primary: str = "simulate",
            command: str = "glacier-simulate") -> str:
    """A one-paragraph explanation of a Hydra / OmegaConf composition error."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    text = str(exc)
    cause = exc if getattr(exc, "full_key", None) else exc.__cause__
    if isinstance(exc, OverrideParseException):
        bad = _unparsable(overrides) or " ".join(overrides)
        return (f"cannot read the override {bad!r}: {_first_line(text)}. Overrides look like "
                "key=value, group=option or +key=value; quote values with spaces or special "
                "characters, e.g. 'glacier.path=\"my file.nc\"'.")
    if isinstance(exc, MissingConfigException):
        found = re.search(r"Could not find '([^']+)/([^'/]+)'", text)
        if found:
            group, option = found.groups()
            valid = group_options(group)
            default = _DEFAULT_OPTIONS.get(group, valid[0] if valid else "")
            return (f"{group}={option}: there is no option {option!r} in the config group "
                    f"{group}. Valid options: {', '.join(valid)}. Choose one of them, e.g. "
                    f"{group}={default}.")
        return _first_line(text)
    if isinstance(cause, ConfigAttributeError | ConfigKeyError) and cause.full_key:
        parent, _, key = cause.full_key.rpartition(".")
        schema = _schema_of(parent, cause.object_type, overrides, primary)
        valid = [f.name for f in dataclasses.fields(schema)] if schema else []
        where = _where(parent, overrides)
        said = _override_of(cause.full_key, overrides) or cause.full_key
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        hint = f"Did you mean {_join(parent, close[0])}? " if close else ""
        return (f"{said}: {where} has no key {key!r}. Valid keys of {where}: "
                f"{', '.join(valid) or '(none)'}. {hint}Fix the spelling; `{command} --cfg job` "
                "prints the whole config with its current values.")
    if isinstance(cause, ValidationError) and cause.full_key:
        parent, _, key = cause.full_key.rpartition(".")
        schema = _schema_of(parent, cause.object_type, overrides, primary)
        said = _override_of(cause.full_key, overrides) or cause.full_key
        msg = f"{said}: {_first_line(str(cause))}."
        if schema is not None and key in {f.name for f in dataclasses.fields(schema)}:
            f = {f.name: f for f in dataclasses.fields(schema)}[key]
            kind = _describe_type(typing.get_type_hints(schema)[key])
            msg += f" {cause.full_key} is {kind} ({f.metadata.get('help', '')})."
            if f.default is None:
                msg += " Give a value, or null for the domain's default."
            elif f.default is not dataclasses.MISSING and f.default is not MISSING:
                msg += f" For example {cause.full_key}={_yaml(f.default)} (the default)."
        return msg
    detail = _first_line(str(cause)) if cause is not None else ""
    return (f"{_first_line(text)}{': ' + detail if detail else ''}. Check the overrides "
            f"{' '.join(overrides)}; `{command} --help` lists the config groups and "
            f"`{command} --cfg job` prints the config.")


_DEFAULT_OPTIONS = {"glacier": "synthetic_valley", "physics": "default", "solver": "default"}


def group_options(group: str) -> list[str]:
    """The options of a packaged config group (the YAML files of ``configs/<group>/``)."""
    import importlib.resources

    folder = importlib.resources.files("glacier.configs") / group
    if not folder.is_dir():
        return []
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0].rstrip(".") if text.strip() else ""


def _join(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def _key_of(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0].split("@", 1)[0]


def _override_of(full_key: str, overrides: list[str]) -> str | None:
    for o in reversed(overrides):
        if _key_of(o) == full_key:
            return o
    return None


def _unparsable(overrides: list[str]) -> str | None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for o in overrides:
        try:
            parser.parse_override(o)
        except Exception:
            return o
    return None


def _glacier_option(overrides: list[str]) -> str:
    for o in reversed(overrides):
        if _key_of(o) == "glacier" and "=" in o:
            return o.split("=", 1)[1]
    return _DEFAULT_OPTIONS["glacier"]


def _schema_of(parent: str, object_type, overrides: list[str], primary: str) -> type | None:
    if isinstance(object_type, type) and dataclasses.is_dataclass(object_type):
        return object_type
    if parent == "":
        return PRIMARY_SCHEMAS.get(primary)
    if parent == "glacier":
        return GLACIER_SCHEMAS.get(_glacier_option(overrides))
    return GROUP_SCHEMAS.get(parent, {}).get("default")


def _where(parent: str, overrides: list[str]) -> str:
    if parent == "":
        return "the top level"
    if parent == "glacier":
        return f"glacier={_glacier_option(overrides)}"
    return parent


def _help_of(full_key: str, cfg) -> str:
    parent, _, key = full_key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    schema = OmegaConf.get_type(node)
    if isinstance(schema, type) and dataclasses.is_dataclass(schema):
        return field_help(schema).get(key, "")
    return ""


def _describe_type(tp) -> str:
    args = typing.get_args(tp)
    nullable = type(None) in args
    if args:
        tp = next(a for a in args if a is not type(None))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        kind = "one of " + ", ".join(m.value for m in tp)
    else:
        kind = {float: "a number", int: "an integer", str: "a string",
                bool: "true or false"}.get(tp, str(tp))
    return kind + (" or null" if nullable else "")


def _yaml(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)
