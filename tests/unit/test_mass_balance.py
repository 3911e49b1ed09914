"""Unit tests of glacier.physics.mass_balance: the linear, prescribed and zero balances."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glacier.physics import mass_balance as mb
from glacier.physics.mass_balance import MassBalance

# Models are pytrees, so one jitted call covers them all (one compilation per shape).
CALL = jax.jit(lambda model, S: model(S))
DBDS = jax.jit(jax.grad(lambda S, model: model(S)))  # d b / d S at a scalar S


def test_linear_is_zero_at_ela_with_given_gradient():
    m = mb.linear(ela=2500.0, gradient=0.01)
    S = np.array([2000.0, 2500.0, 2600.0, 3100.0])
    np.testing.assert_allclose(CALL(m, S), [-5.0, 0.0, 1.0, 6.0], rtol=1e-14, atol=1e-14)
    assert float(m(2500.0)) == 0.0  # eager, scalar
    assert float(DBDS(2700.0, m)) == pytest.approx(0.01, rel=1e-14)  # the slope is the gradient


def test_linear_max_rate_caps_accumulation_only():
    m = mb.linear(ela=1000.0, gradient=0.005, max_rate=2.0)
    S = np.array([0.0, 1000.0, 1200.0, 1400.0, 5000.0])
    # -5 (ablation is not capped), 0, 1, 2 (= cap), 20 -> 2
    np.testing.assert_allclose(CALL(m, S), [-5.0, 0.0, 1.0, 2.0, 2.0], rtol=1e-14, atol=1e-14)
    assert float(np.max(CALL(m, np.linspace(0.0, 1e4, 101)))) == 2.0
    # above the cap the balance no longer depends on S
    assert float(DBDS(3000.0, m)) == 0.0


def test_linear_default_is_uncapped():
    m = mb.linear(ela=0.0, gradient=1.0)
    assert m.max_rate == jnp.inf and m.min_rate == -jnp.inf
    assert (m.base, m.gradient, m.reference) == (0.0, 1.0, 0.0)
    assert float(m(1e6)) == 1e6


def test_min_rate_caps_ablation():
    m = MassBalance(gradient=0.01, reference=1000.0, min_rate=-3.0, max_rate=1.0)
    np.testing.assert_allclose(CALL(m, np.array([0.0, 800.0, 1050.0, 2000.0])),
                               [-3.0, -2.0, 0.5, 1.0], rtol=1e-14)


FIELD = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
REF = np.array([[2000.0, 2100.0, 2200.0], [1900.0, 2000.0, 2500.0]])


def test_prescribed_without_feedback_returns_field():
    m = mb.prescribed(FIELD)
    assert (m.gradient, m.reference) == (0.0, 0.0)
    np.testing.assert_array_equal(CALL(m, np.full((2, 3), 1234.0)), FIELD)
    np.testing.assert_array_equal(CALL(m, REF), FIELD)  # no elevation dependence


def test_prescribed_with_reference_and_gradient():
    m = mb.prescribed(FIELD, reference=REF, gradient=0.004)
    # on the reference surface: the field itself
    np.testing.assert_allclose(CALL(m, REF), FIELD, rtol=1e-14, atol=1e-14)
    # surface lowered by 100 m: balance drops by gradient * 100 (elevation feedback)
    np.testing.assert_allclose(CALL(m, REF - 100.0), FIELD - 0.4, rtol=1e-14, atol=1e-14)
    # a gridded gradient works too
    grad = np.array([[0.0, 0.01, 0.02], [0.0, 0.0, 0.01]])
    m2 = mb.prescribed(FIELD, reference=REF, gradient=grad)
    np.testing.assert_allclose(CALL(m2, REF + 50.0), FIELD + 50.0 * grad, rtol=1e-14,
                               atol=1e-14)


def test_zero_balance_has_shape_of_surface():
    m = mb.zero()
    S = np.linspace(0.0, 3000.0, 6).reshape(2, 3)
    out = CALL(m, S)
    assert out.shape == (2, 3)
    np.testing.assert_array_equal(out, 0.0)
    assert m(S, 10.0).shape == (2, 3)


def test_scalar_model_broadcasts_to_surface_shape():
    out = CALL(MassBalance(base=0.7), np.zeros((2, 3)))
    assert out.shape == (2, 3)
    np.testing.assert_array_equal(out, 0.7)


def test_time_argument_is_accepted_and_unused():
    m = mb.linear(ela=100.0, gradient=0.01)
    assert float(m(150.0, 0.0)) == float(m(150.0, 123.0)) == pytest.approx(0.5)


def test_is_a_pytree_with_all_fields_as_leaves():
    m = MassBalance(base=1.0, gradient=2.0, reference=3.0, min_rate=-4.0, max_rate=5.0)
    leaves, treedef = jax.tree_util.tree_flatten(m)
    assert sorted(leaves) == [-4.0, 1.0, 2.0, 3.0, 5.0]
    assert jax.tree_util.tree_unflatten(treedef, leaves) == m
    doubled = jax.tree_util.tree_map(lambda x: 2 * x, m)
    assert isinstance(doubled, MassBalance)
    assert doubled.reference == 6.0 and doubled.max_rate == 10.0


def test_usable_under_jit():
    @jax.jit
    def f(model, S):
        return model(S)

    S = np.array([[900.0, 1000.0], [1100.0, 1500.0]])
    np.testing.assert_allclose(f(mb.linear(1000.0, 0.01, max_rate=3.0), S),
                               [[-1.0, 0.0], [1.0, 3.0]], rtol=1e-14, atol=1e-14)
    # a different ELA (a leaf, not static) reuses the same trace
    np.testing.assert_allclose(f(mb.linear(1100.0, 0.01, max_rate=3.0), S),
                               [[-2.0, -1.0], [0.0, 3.0]], rtol=1e-14, atol=1e-14)
    assert f._cache_size() == 1


def test_usable_under_vmap_over_a_batch_of_models():
    elas = np.array([1000.0, 1200.0, 1400.0])
    batch = jax.tree_util.tree_map(lambda *xs: np.array(xs, dtype=np.float64),
                                   *[mb.linear(float(e), 0.01) for e in elas])
    assert batch.reference.shape == (3,)
    S = np.array([1000.0, 1300.0])
    out = jax.jit(jax.vmap(lambda model: model(S)))(batch)
    assert out.shape == (3, 2)
    np.testing.assert_allclose(out, 0.01 * (S[None, :] - elas[:, None]), rtol=1e-14, atol=1e-14)
    # and vmap over surfaces for one model
    surfaces = np.stack([S, S + 100.0])
    out2 = jax.jit(jax.vmap(mb.linear(1000.0, 0.01)))(surfaces)
    np.testing.assert_allclose(out2, 0.01 * (surfaces - 1000.0), rtol=1e-14, atol=1e-14)


def test_gradient_with_respect_to_model_parameters():
    S = np.array([800.0, 1200.0])
    g = jax.jit(jax.grad(lambda model: jnp.sum(model(S))))(mb.linear(1000.0, 0.01))
    assert isinstance(g, MassBalance)
    assert float(g.reference) == pytest.approx(-0.02)  # d/dELA of sum(grad (S - ELA))
    assert float(g.gradient) == pytest.approx(float(np.sum(S - 1000.0)))
    assert float(g.base) == pytest.approx(2.0)
    assert float(g.max_rate) == 0.0 and float(g.min_rate) == 0.0  # not binding


@pytest.mark.parametrize("model", [
    mb.zero(),
    mb.linear(ela=1000.0, gradient=0.005),
    mb.linear(ela=1000.0, gradient=0.005, max_rate=1.0),  # S = 1200 sits on the cap: a tie
    MassBalance(base=0.5, gradient=0.01, reference=1000.0, min_rate=-1.5, max_rate=2.0),
    mb.prescribed(np.linspace(-2.0, 1.0, 6), reference=1100.0, gradient=0.0),
], ids=["zero", "linear", "capped", "both_caps", "prescribed"])
def test_constant_terms_left_out_change_nothing(model):
    """A model whose parameters are Python scalars (closed over: its constant terms left
    out) gives the values and derivatives of the same model whose parameters are traced
    (every term computed), ties at the caps included."""
    S = np.array([0.0, 850.0, 1000.0, 1200.0, 1250.0, 1600.0])
    closed = jax.jit(lambda S: model(S))
    np.testing.assert_array_equal(closed(S), CALL(model, S))
    np.testing.assert_array_equal(jax.jit(jax.grad(lambda S: jnp.sum(model(S))))(S),
                                  jax.grad(lambda S: jnp.sum(CALL(model, S)))(S))


def test_zero_balance_computes_nothing_per_cell():
    """The zero balance is a broadcast zero: no product with the surface and no clip for
    XLA to evaluate on every cell of every step."""
    jaxpr = str(jax.make_jaxpr(lambda S: mb.zero()(S))(jnp.ones((4, 5))))
    for op in ("mul", "max", "min"):
        assert f" {op} " not in jaxpr, jaxpr
    linear = str(jax.make_jaxpr(lambda S: mb.linear(1000.0, 0.005)(S))(jnp.ones((4, 5))))
    assert " max " not in linear and " min " not in linear, linear  # uncapped: no clip


def test_marked_terms_stay_out_when_traced():
    """``with_constant_terms`` keeps a zero balance free of per-cell work even where the model
    is a traced argument (as in ``solver.simulate``'s compiled loop); unmarked, it computes
    0 * (S - reference) there, since the zero is no longer known."""
    S = jnp.ones((4, 5))
    traced = str(jax.make_jaxpr(lambda m, S: m(S))(mb.zero(), S))
    assert " mul " in traced
    marked = str(jax.make_jaxpr(lambda m, S: m(S))(mb.zero().with_constant_terms(), S))
    for op in ("mul", "max", "min"):
        assert f" {op} " not in marked, marked
    linear = mb.linear(1000.0, 0.005, max_rate=2.0).with_constant_terms()
    assert linear.terms == (True, False, True)
    # arrays and traced parameters keep their terms
    assert MassBalance(gradient=np.zeros(3)).with_constant_terms().terms == (True, False, False)
    seen = []
    jax.jit(lambda g: seen.append(MassBalance(gradient=g).with_constant_terms().terms) or g)(0.0)
    assert seen == [(True, False, False)]  # a traced zero is not known to be zero
    np.testing.assert_array_equal(CALL(linear, np.array([900.0, 2000.0])), [-0.5, 2.0])


def test_fixed_field_only_for_balances_that_ignore_the_surface():
    bed = np.linspace(0.0, 1000.0, 6).reshape(2, 3)
    field = np.arange(6.0).reshape(2, 3)
    fixed = mb.fixed_field(mb.prescribed(field).with_constant_terms(), bed)
    np.testing.assert_array_equal(fixed, field)
    np.testing.assert_array_equal(mb.fixed_field(mb.zero().with_constant_terms(), bed),
                                  np.zeros((2, 3)))
    assert mb.fixed_field(mb.linear(500.0, 0.01).with_constant_terms(), bed) is None
    assert mb.fixed_field(mb.zero(), bed) is None  # not marked: decided at each call
    assert mb.fixed_field(lambda S, t: 0.0 * S, bed) is None  # other callables


@pytest.mark.parametrize("model", [mb.zero(), mb.linear(3200.0, 0.01, max_rate=1.0),
                                   mb.prescribed(np.full((13, 13), -0.3))],
                         ids=["zero", "linear_capped", "prescribed"])
def test_a_solve_is_the_same_with_every_term_evaluated(model):
    """``simulate`` marks the balance's constant terms (and a balance that ignores the
    surface is evaluated once): the run equals, bit for bit, the one that evaluates every
    term at every step."""
    from glacier import solver as slv
    from glacier.domains import build_domain
    from glacier.laws import glen_law
    d = build_domain("halfar", dx=200e3)
    assert d.grid.shape == (13, 13)
    H0, bed = jnp.asarray(d.thickness), jnp.asarray(d.bed) + 3000.0
    every = dataclasses.replace(model, terms=(True, True, True))

    def run(smb):
        return slv.simulate(H0, bed, grid=d.grid, rheology=glen_law(d.physics), smb=smb,
                            save_at=slv.SaveAt((0.0, 2000.0)))
    a, b = run(model), run(every)
    np.testing.assert_array_equal(a.thickness, b.thickness)
    np.testing.assert_array_equal(a.smb_volume, b.smb_volume)
