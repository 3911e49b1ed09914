"""The packaged configs agree with their schemas and with the domains they configure."""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
import tomllib
from pathlib import Path

import pytest
import yaml
from omegaconf import MISSING

from glacier import config, domains

CONFIGS = importlib.resources.files("glacier.configs")
ROOT = Path(__file__).resolve().parents[2]


def schema_defaults(schema) -> dict:
    out = {}
    for f in dataclasses.fields(schema):
        value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out[f.name] = value.value if hasattr(value, "value") else value
    return out


def yaml_values(group: str, option: str) -> dict:
    data = yaml.safe_load((CONFIGS / group / f"{option}.yaml").read_text())
    assert data.pop("defaults") == [f"{option}_schema", "_self_"]
    return data


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isinf(a):
        return a == b
    return a == b or (a == MISSING and b == "???")


@pytest.mark.parametrize("option", sorted(config.GLACIER_SCHEMAS))
def test_glacier_yaml_matches_schema_and_domain(option):
    schema = config.GLACIER_SCHEMAS[option]
    values = yaml_values("glacier", option)
    assert values["name"] == option
    defaults = schema_defaults(schema)
    assert list(values) == ["name", *[k for k in defaults if k != "name"]] or \
        set(values) == set(defaults)
    for key, value in values.items():
        if key != "name":
            assert same(defaults[key], value), (option, key)
    # the builder's options: same names and defaults (a required path is None there)
    builder = domains.options(option)
    assert set(builder) == set(defaults) - {"name"}
    for key, value in builder.items():
        expected = defaults[key]
        assert value == expected or (expected == MISSING and value is None), (option, key)


@pytest.mark.parametrize("group", ["physics", "solver"])
def test_other_groups_match_their_schema(group):
    values = yaml_values(group, "default")
    defaults = schema_defaults(config.GROUP_SCHEMAS[group]["default"])
    assert values == defaults


def test_every_group_option_has_a_schema():
    for group, schemas in config.GROUP_SCHEMAS.items():
        assert config.group_options(group) == sorted(schemas)


def test_solver_defaults_of_the_issue():
    s = config.SolverConfig()
    assert (s.t_end, s.save_every, s.cfl, s.max_dt, s.max_steps, s.area_threshold) == (
        None, None, 0.124, None, 10_000_000, 1.0)
    assert s.dtype.value == "float64"


def test_initial_choices_match_the_loader():
    from glacier.domains.real import INITIAL_CHOICES

    assert {m.value for m in config.Initial} == set(INITIAL_CHOICES)


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
    for group, schemas in config.GROUP_SCHEMAS.items():
        for option in schemas:
            assert option in help_text, (group, option)
