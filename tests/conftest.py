"""Shared test set-up: float64 in JAX for every test (STYLE.md point 10)."""

import jax

jax.config.update("jax_enable_x64", True)
