"""Value checks of a typed config and of a whole command line, before anything runs.

Each check returns None or one paragraph on the first bad value and how to fix it, worded in
config keys; ``check_overrides`` is what the console scripts call before Hydra creates a run
directory.
"""

from __future__ import annotations

import math

from omegaconf import DictConfig, OmegaConf

from ..diffusivity_twin import TwinDiffusivityOptions, check_options
from ..errors import ConfigError
from ..experiments import REAL_TWIN_GLACIERS
from ..glacier_set import FilesOptions, load
from .build import invert_options, plain, typed
from .explain import explain, help_of
from .schemas import LAW_SCHEMAS, SELECTORS


def _real_glaciers(ex) -> str | None:
    unknown = [r for r in ex["real"] if r not in REAL_TWIN_GLACIERS]
    if unknown:
        return (f"experiment.real={ex['real']}: {', '.join(map(repr, unknown))} is "
                f"not a bundled glacier. Valid: {', '.join(REAL_TWIN_GLACIERS)}; "
                "e.g. experiment.real=[hintereisferner] or experiment.real=[].")
    return None


def _glacier_files(ex, velocity: bool, positive) -> list[str | None]:
    """The checks of ``experiment=files``: values, and every file read and checked
    (``glacier_set.load``), so that a bad file fails before a run (or a SLURM job) starts."""
    out = [positive("experiment.years", ex["years"], 10.0)]
    for key, example in (("obs_every", 1.0), ("dx", 200.0)):
        if ex[key] is not None:
            out.append(positive(f"experiment.{key}", ex[key], example))
    if ex["temperature"] is not None and not -80 <= ex["temperature"] <= 40:
        out.append(f"experiment.temperature={ex['temperature']} must be an air temperature "
                   "in -80 ... 40 degC.")
    if not any(out):
        try:
            load(FilesOptions(**{k: v for k, v in ex.items() if k != "name"}),
                 velocity=velocity)
        except ConfigError as e:
            out.append(str(e))
    return out


def check_train(cfg: DictConfig) -> str | None:
    """None when the values of a (typed) ``glacier-train`` config make sense, else a
    one-paragraph explanation of the first bad one and how to fix it."""
    c = plain(cfg)
    law, net, opt, ex = c["law"], c["network"], c["optimizer"], c["experiment"]
    tr, sol = c["train"], c["solver"]
    if law["name"] == "cuffey_paterson":
        return ("law=cuffey_paterson has nothing to train: Cuffey & Paterson's A(T) is a fixed "
                "table. Choose a law with parameters, e.g. law=nn_A_of_T (a network A(T)), "
                "law=constant_A or law=nn_diffusivity; the twin experiment already uses "
                "cuffey_paterson as the true law.")

    def positive(key, value, example):
        if not (isinstance(value, int | float) and value > 0 and math.isfinite(value)):
            return f"{key}={value} must be a positive number, e.g. {key}={example}."
        return None

    checks = [positive("optimizer.lr", opt["lr"], 0.02)]
    if not 0 < opt["decay"] <= 1:
        checks.append(f"optimizer.decay={opt['decay']} must be in (0, 1]: the final learning "
                      "rate as a fraction of optimizer.lr, e.g. optimizer.decay=0.1.")
    if opt["lbfgs_steps"] < 0:
        checks.append(f"optimizer.lbfgs_steps={opt['lbfgs_steps']} must be >= 0 (0: Adam only).")
    if opt["clip_norm"] is not None:
        checks.append(positive("optimizer.clip_norm", opt["clip_norm"], 1.0))
    if c["loss"].get("normalise", "sensitivity") not in ("sensitivity", "thickness"):
        checks.append(f"loss.normalise={c['loss']['normalise']!r} must be sensitivity or "
                      "thickness.")
    if not c["loss"].get("velocity", 0.0) >= 0:
        checks.append(f"loss.velocity={c['loss']['velocity']} must be >= 0.")
    if not c["loss"]["l2"] >= 0:
        checks.append(f"loss.l2={c['loss']['l2']} must be >= 0, e.g. loss.l2=0 (none).")
    if not net["hidden"] or any(h < 1 for h in net["hidden"]):
        checks.append(f"network.hidden={net['hidden']} must list positive layer widths, "
                      "e.g. network.hidden=[16,16].")
    if "A" in law:
        checks.append(positive("law.A", law["A"], 7.57e-17))
    for key in ("T_scale", "H_scale", "slope_scale"):
        if key in law:
            checks.append(positive(f"law.{key}", law[key], getattr(
                LAW_SCHEMAS[law["name"]], key)))
    lo, hi = law.get("A_min"), law.get("A_max")
    for key, value in (("A_min", lo), ("A_max", hi)):
        if value is not None:
            checks.append(positive(f"law.{key}", value, "null"))
    if lo is not None and hi is not None and not lo < hi:
        checks.append(f"law.A_min={lo} must be below law.A_max={hi}.")
    if tr["epochs"] < 0 or tr["epochs"] + opt["lbfgs_steps"] < 1:
        checks.append(f"train.epochs={tr['epochs']} with optimizer.lbfgs_steps="
                      f"{opt['lbfgs_steps']}: there must be at least one epoch in all, e.g. "
                      "train.epochs=100.")
    if tr["checkpoint_every"] < 1:
        checks.append(f"train.checkpoint_every={tr['checkpoint_every']} must be >= 1 (epochs).")
    if tr["keep_checkpoints"] < 1:
        checks.append(f"train.keep_checkpoints={tr['keep_checkpoints']} must be >= 1.")
    if tr["devices"] < 0:
        checks.append(f"train.devices={tr['devices']} must be >= 0 (0: all available).")
    if tr["stop_after"] is not None and tr["stop_after"] < 1:
        checks.append(f"train.stop_after={tr['stop_after']} must be >= 1 or null.")
    if tr["batch_size"] is not None and tr["batch_size"] < 1:
        checks.append(f"train.batch_size={tr['batch_size']} must be a positive number of "
                      "glaciers, or null (all glaciers in one batch).")
    if tr["batch_size"] is not None and opt["lbfgs_steps"]:
        checks.append(f"optimizer.lbfgs_steps={opt['lbfgs_steps']} needs the whole batch "
                      "(L-BFGS's line search evaluates the full loss): with "
                      f"train.batch_size={tr['batch_size']} set optimizer.lbfgs_steps=0, or "
                      "train.batch_size=null.")
    if "F_min" in law:
        checks.append(positive("law.F_min", law["F_min"], 0.01))
        if law["A_ref"] is not None:
            checks.append(positive("law.A_ref", law["A_ref"], "null"))
        if not law["F_min"] < 1.0 < law["F_max"] or not math.isfinite(law["F_max"]):
            checks.append(f"law.F_min={law['F_min']} and law.F_max={law['F_max']} must "
                          "enclose 1 (a fresh network is F = 1) and be finite, e.g. "
                          "law.F_min=0.001 law.F_max=1000.")
    if ex["name"] == "twin_diffusivity":
        for key, example in (("dx", 200.0), ("years", 20.0), ("obs_every", 1.0),
                             ("spinup_years", 150.0)):
            checks.append(positive(f"experiment.{key}", ex[key], example))
        checks.append(_real_glaciers(ex))
        try:
            check_options(TwinDiffusivityOptions(**{k: v for k, v in ex.items()
                                                   if k != "name"}))
        except ConfigError as e:
            checks.append(str(e))
        if c["loss"].get("velocity", 0.0) and not ex.get("velocity_obs", False):
            checks.append(f"loss.velocity={c['loss']['velocity']} needs speed observations: "
                          "add experiment.velocity_obs=true.")
    if ex["name"] == "twin_A_of_T":
        for key, example in (("dx", 200.0), ("years", 15.0), ("obs_every", 1.0),
                             ("spinup_years", 150.0)):
            checks.append(positive(f"experiment.{key}", ex[key], example))
        if ex["n_valleys"] < 0 or ex["n_valleys"] + len(ex["real"]) < 1:
            checks.append(f"experiment.n_valleys={ex['n_valleys']} with experiment.real="
                          f"{ex['real']}: the experiment needs at least one glacier, e.g. "
                          "experiment.n_valleys=8.")
        checks.append(_real_glaciers(ex))
        if not ex["T_min"] <= ex["T_max"]:
            checks.append(f"experiment.T_min={ex['T_min']} must not exceed experiment.T_max="
                          f"{ex['T_max']}.")
        if not ex["noise"] >= 0:
            checks.append(f"experiment.noise={ex['noise']} must be >= 0 [m].")
        if not 0 < ex["obs_fraction"] <= 1:
            checks.append(f"experiment.obs_fraction={ex['obs_fraction']} must be in (0, 1].")
        if not ex.get("velocity_noise", 0.0) >= 0:
            checks.append(f"experiment.velocity_noise={ex['velocity_noise']} must be >= 0.")
        if c["loss"].get("velocity", 0.0) and not ex.get("velocity_obs", False):
            checks.append(f"loss.velocity={c['loss']['velocity']} needs speed observations: "
                          "add experiment.velocity_obs=true.")
    if ex["name"] == "files":
        checks.extend(_glacier_files(ex, bool(c["loss"].get("velocity", 0.0)), positive))
    for key in ("t_end", "save_every"):
        if sol[key] is not None:
            checks.append(f"solver.{key}={sol[key]} does not apply to glacier-train: the "
                          "experiment sets the simulated period (experiment.years, "
                          "experiment.obs_every). Remove the override.")
    if not 0 < sol["cfl"] <= 0.25:
        checks.append(f"solver.cfl={sol['cfl']} must be in (0, 0.25], e.g. solver.cfl=0.124.")
    if sol["max_dt"] is not None:
        checks.append(positive("solver.max_dt", sol["max_dt"], 1.0))
    return next((m for m in checks if m), None)


def check_values(cfg: DictConfig, primary: str) -> str | None:
    """None when the values of a typed config of ``primary`` make sense, else one paragraph."""
    if primary == "train":
        return check_train(cfg)
    if primary == "invert":
        return check_invert(cfg)
    return None


def check_invert(cfg: DictConfig) -> str | None:
    """None when the ``invert`` values of a (typed) ``glacier-invert`` config make sense, else
    one paragraph on the first bad one and how to fix it."""
    try:
        invert_options(cfg)
    except ConfigError as e:
        return str(e)
    inv = plain(cfg.invert)
    if inv["A"] == "law" and cfg.law.name == "cuffey_paterson":
        return ("invert.A=law with law=cuffey_paterson: that law has no parameters to invert. "
                "Choose law=nn_A_of_T, law=constant_A or law=nn_diffusivity, or "
                "invert.A=scalar.")
    return None


def typed_checked(cfg: DictConfig, primary: str) -> DictConfig:
    """A ``glacier-train`` / ``glacier-invert`` config merged into its schemas and its values
    checked (``check_train`` / ``check_invert``); ``ConfigError`` otherwise."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg = typed(cfg, primary)
    except OmegaConfBaseException as e:  # e.g. a hand-edited config file
        raise ConfigError(explain(e, [], primary=primary,
                                  command=f"glacier-{primary}")) from e
    problem = check_values(cfg, primary)
    if problem:
        raise ConfigError(problem)
    return cfg


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
        group = key.split(".", 1)[0]
        where = (f" for {group}={cfg[group].name}" if group in SELECTORS[primary] else "")
        return (f"{key} has no value and must be set{where}: add {key}=... to the command line "
                f"({help_of(key, cfg)}).")
    return check_values(cfg, primary)


