"""The packaged configs: one source of truth for defaults and help (no copies to keep in step).

The YAML options name their schema and their ``name`` only; the schemas of ``glacier=``,
``experiment=`` and ``invert`` are derived from the library's own option dataclasses.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import tomllib
import typing
from pathlib import Path

import pytest
import yaml
from omegaconf import MISSING

from glacier import config, domains, experiments
from glacier import invert as iv
from glacier.config import schemas
from glacier.domains.files import Initial
from glacier.domains.real import INITIAL_CHOICES

CONFIGS = importlib.resources.files("glacier.configs")
ROOT = Path(__file__).resolve().parents[2]
SELECTOR_GROUPS = ("glacier", "law", "experiment")


def _defaults(cls) -> dict:
    out = {}
    for f in dataclasses.fields(cls):
        out[f.name] = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    return out


def _group_files():
    for group in config.schemas.all_groups():
        for option in config.group_options(group):
            yield group, option


@pytest.mark.parametrize("group, option", sorted(_group_files()))

def test_yaml_options_hold_no_copies_of_defaults(group, option):
    data = yaml.safe_load((CONFIGS / group / f"{option}.yaml").read_text())
    if (group, option) in EXPERIMENTS_OF_SETTINGS:  # a _global_ package: see below
        return
    assert data.pop("defaults") == [f"{option}_schema", "_self_"]
    assert data == ({"name": option} if group in SELECTOR_GROUPS else {})


EXPERIMENTS_OF_SETTINGS = {("experiment", "twin_diffusivity")}
"""Experiments that also choose the training settings (Hydra's ``_global_`` experiment
pattern): their files set keys of other nodes, and nothing of their own node but its name."""


def test_the_diffusivity_twin_sets_only_its_training_settings():
    from glacier import diffusivity_twin

    text = (CONFIGS / "experiment" / "twin_diffusivity.yaml").read_text()
    assert text.startswith("# @package _global_")
    data = yaml.safe_load(text)
    assert data.pop("defaults") == ["/experiment/twin_diffusivity_schema@experiment",
                                    {"override /law": "nn_D"}, "_self_"]
    assert data == {"experiment": {"name": "twin_diffusivity"},
                    "network": {"hidden": [8, 8]},
                    "optimizer": {"lr": 0.01, "lbfgs_steps": 20},
                    "train": {"epochs": 60},
                    "solver": {"cfl": diffusivity_twin.TRAINING_CFL}}


@pytest.mark.parametrize("option", sorted(config.GLACIER_SCHEMAS))
def test_glacier_schema_is_the_domain_options(option):
    schema = config.GLACIER_SCHEMAS[option]
    library = domains.options_class(option)
    names = [f.name for f in dataclasses.fields(schema)]
    assert names == ["name", *[f.name for f in dataclasses.fields(library)]]
    defaults = _defaults(schema)
    assert defaults.pop("name") == option
    required = {f.name for f in dataclasses.fields(library) if f.metadata.get("required")}
    assert all(defaults.pop(k) == MISSING for k in required)  # the command line must set it
    assert defaults == {k: v for k, v in domains.options(option).items() if k not in required}
    assert typing.get_type_hints(schema)["dx"] == typing.get_type_hints(library)["dx"]
    help_of = config.field_help(schema)
    assert all(help_of[k] for k in names), option


def test_experiment_and_invert_schemas_are_the_library_options():
    twin = config.EXPERIMENT_SCHEMAS["twin_A_of_T"]
    d = _defaults(twin)
    assert d.pop("name") == "twin_A_of_T"
    assert d == _defaults(experiments.TwinAofTOptions)
    # The relaxation run's scheme and dt are the solver node's (solver.scheme, solver.dt).
    library = _defaults(iv.InvertOptions)
    assert {k: library.pop(k) for k in ("scheme", "dt")} == _defaults(
        schemas.InvertSolverConfig) | {"scheme": "explicit"}
    assert _defaults(schemas.InvertSchema) == library
    helps = config.field_help(iv.InvertOptions)
    assert config.field_help(schemas.InvertSchema) == {k: v for k, v in helps.items()
                                                       if k not in ("scheme", "dt")}
    assert all(helps.values())


def test_every_group_option_has_a_schema():
    for group, options in schemas.all_groups().items():
        assert config.group_options(group) == sorted(options)


def test_every_domain_has_a_config_option():
    assert sorted(config.GLACIER_SCHEMAS) == domains.names() == config.group_options("glacier")


def test_solver_defaults_of_the_issue():
    s = schemas.SolverConfig()
    assert (s.t_end, s.save_every, s.cfl, s.max_dt, s.max_steps, s.area_threshold) == (
        None, None, 0.124, None, 10_000_000, 1.0)
    assert s.dtype.value == "float64"


def test_initial_choices_match_the_loader():
    assert {m.value for m in Initial} == set(INITIAL_CHOICES)


def test_every_package_is_listed_in_pyproject():
    """pyproject.toml lists packages explicitly (configs/ and data/ are mapped into the
    package); a new subpackage of glacier/ must be added there or the wheel misses it."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())
                 ["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "glacier").rglob("__init__.py")}
    assert found <= listed
    assert {"glacier.configs", "glacier.data"} <= listed


def test_help_names_every_option():
    text = (CONFIGS / "simulate.yaml").read_text()
    help_text = yaml.safe_load(text)["hydra"]["help"]["template"]
    for group, options in config.GROUP_SCHEMAS.items():
        for option in options:
            assert option in help_text, (group, option)
