"""Fixtures of the numerical verification tests: float64 everywhere, strict dtype promotion on
request (STYLE.md point 10; the pattern of diffrax ``test/conftest.py``)."""

import jax
import pytest

jax.config.update("jax_enable_x64", True)


@pytest.fixture
def strict_promotion():
    """Run the test body with ``jax_numpy_dtype_promotion='strict'``: any implicit mixing of
    float32 and float64 (or of Python floats with integer arrays) raises."""
    with jax.numpy_dtype_promotion("strict"):
        yield
