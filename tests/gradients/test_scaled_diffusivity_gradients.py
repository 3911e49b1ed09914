"""law=nn_D through the explicit solver: the reverse-mode gradient of the training loss
against central differences, on valleys whose true law slides (the twin's), and the step
stiffness factor of the learned law."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from glacier import diffusivity_twin as dt
from glacier import laws
from glacier import train as tr
from glacier.physics.params import Physics
from glacier.schemes import ExplicitMUSCL


def _perturbed(law, seed: int, scale: float):
    """A law whose network is not at its initial (zero-output) state."""
    leaves, tree = jax.tree_util.tree_flatten(law)
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_unflatten(
        tree, [a + scale * rng.standard_normal(np.shape(a)) for a in leaves])


def test_loss_gradient_matches_central_differences():
    scheme = ExplicitMUSCL(cfl=dt.TRAINING_CFL, max_dt=1.0)
    twin = dt.twin_diffusivity(n_valleys=3, real=[], test_glaciers=1, dx=400.0, years=8.0,
                               spinup_years=100.0, scheme=scheme)
    setup = twin.train
    law = _perturbed(laws.NeuralScaledDiffusivity.create(hidden=(8,), seed=0), 1, 0.3)
    problem = tr.size_step_budget(law, setup.batch, setup.problem)
    f = jax.jit(lambda l: tr.loss_fn(l, setup.batch, problem)[0])
    grad = jax.jit(jax.grad(lambda l: tr.loss_fn(l, setup.batch, problem)[0]))(law)
    leaves, tree = jax.tree_util.tree_flatten(law)
    rng = np.random.default_rng(0)
    v = [rng.standard_normal(np.shape(a)) for a in leaves]
    ad = sum(float(jnp.sum(g * w)) for g, w in zip(jax.tree_util.tree_leaves(grad), v,
                                                    strict=True))
    h = 1e-5
    shift = lambda sign: jax.tree_util.tree_unflatten(  # noqa: E731
        tree, [a + sign * h * w for a, w in zip(leaves, v, strict=True)])
    fd = (float(f(shift(1))) - float(f(shift(-1)))) / (2 * h)
    assert abs(ad - fd) <= 1e-4 * abs(fd), (ad, fd)


def test_stiffness_is_one_for_glen_and_grows_with_the_learned_exponent():
    phys = Physics(A=laws.A_PRIOR)
    H = jnp.linspace(20.0, 400.0, 12)
    s2 = jnp.full_like(H, 0.04)
    fresh = laws.NeuralScaledDiffusivity.create(hidden=(8,), seed=0).rheology(-5.0, phys)
    np.testing.assert_array_equal(fresh.stiffness(H, s2, None), 1.0)
    # a network that has learned F ~ |grad S|^1 (Glen n = 4 in slope): (3 + 1) / 3
    law = laws.NeuralScaledDiffusivity.create(hidden=(8,), seed=0)
    s = jnp.geomspace(0.02, 0.5, 40)
    Hs = jnp.full_like(s, 100.0)
    target = jnp.log(s / 0.1)

    def loss(l):
        F = l.rheology(-5.0, phys).factor(Hs, s**2, -5.0)
        return jnp.mean((jnp.log(F) - target) ** 2)

    opt = optax.adam(0.02)
    state = opt.init(law)
    step = jax.jit(lambda l, st: (lambda g: (lambda u: (optax.apply_updates(l, u[0]), u[1]))(
        opt.update(g, st)))(jax.grad(loss)(l)))
    for _ in range(800):
        law, state = step(law, state)
    assert float(loss(law)) < 1e-3
    k = np.asarray(law.rheology(-5.0, phys).stiffness(Hs, s**2, None))
    np.testing.assert_allclose(k[5:-5], 4.0 / 3.0, rtol=0.05)


def test_the_step_shrinks_with_the_stiffness():
    """sia.fluxes sizes the explicit step from D times the stiffness of a learned law."""
    from glacier.grid import Grid
    from glacier.physics import sia

    grid = Grid(ny=8, nx=9, dx=200.0)
    y, x = np.mgrid[0:8, 0:9]
    H = jnp.asarray(100.0 + 0.0 * x)
    bed = jnp.asarray(1000.0 - 40.0 * y)
    phys = Physics(A=laws.A_PRIOR)
    rheo = laws.NeuralScaledDiffusivity.create(hidden=(4,), seed=0).rheology(-5.0, phys)
    _, _, D1 = sia.fluxes(H, bed, rheo, grid)

    @dataclasses.dataclass(frozen=True)
    class Stiffer:
        inner: object

        def diffusivity(self, H, slope2, axis):
            return self.inner.diffusivity(H, slope2, axis)

        def stiffness(self, H, slope2, axis):
            return 2.0 * jnp.ones_like(H)

    _, _, D2 = sia.fluxes(H, bed, Stiffer(rheo), grid)
    np.testing.assert_allclose(float(D2), 2.0 * float(D1), rtol=1e-12)
