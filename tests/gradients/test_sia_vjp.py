"""The hand-derived adjoint of ``sia.face_states`` (``glacier.physics.sia_vjp``).

Checks (reference/VERIFICATION.md, section 5):

- the forward values are bit-for-bit those of the plain expressions (``face_states_autodiff``);
- the custom VJP equals JAX's automatic VJP of the plain expressions to round-off on states
  that sit on the limiters' kinks (ice-free areas, margins, the bedrock-step cliff, repeated
  rows, integer-valued fields with ties everywhere) as well as on smooth and random ones: the
  adjoint takes JAX's one-sided derivative at every kink;
- the limiter weights equal JAX's derivatives exactly at every kind of tie;
- the dot-product test <u, J v> = <J^T u, v>, with J v from ``jax.jvp`` of the plain
  expressions and J^T u from the custom VJP;
- central finite differences of a scalar loss through ``sia.fluxes``, in float64;
- batching (``jax.vmap``) and the solver's checkpointed gradient.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glacier.domains import build_domain
from glacier.grid import Grid
from glacier.laws import GlenLaw
from glacier.physics import exact, faces, mass_balance, sia, stencils
from glacier.physics import faces_adjoint as sia_vjp
from glacier.schemes import ExplicitMUSCL
from glacier.solver import Checkpointed, SaveAt, simulate

jax.config.update("jax_enable_x64", True)


def _valley(kind: str):
    """States on a small synthetic valley: ``smooth`` (ice everywhere) or ``margins`` (a
    glacier tongue with ice-free cells and margins on all sides)."""
    d = build_domain("synthetic_valley", nx=40, ny=30, dx=100.0)
    X, Y = d.grid.meshgrid()
    xc, yc = X.mean(), Y.mean()
    if kind == "smooth":
        H = 60.0 + 90.0 * np.exp(-((X - xc - 130.0) / 900.0) ** 2 - ((Y - yc) / 1300.0) ** 2)
    else:
        H = np.maximum(160.0 * (1.0 - ((X - xc + 70.0) / 1200.0) ** 2
                                - ((Y - yc - 40.0) / 1000.0) ** 2), 0.0)
    return d.grid, H, d.bed


def _bedrock_step():
    """The exact steady state of the bedrock step, a strip periodic in y with identical rows
    and an ice cliff over the step (kinks along every row and column)."""
    d = build_domain("bedrock_step", dx=1000.0)
    X, _ = d.grid.meshgrid()
    H, _ = exact.bedrock_step_steady(np.abs(X))
    return d.grid, H, d.bed


def _random(periodic, seed, integer=False):
    """Random fields; ``integer``: small integers, so that neighbouring differences tie (equal,
    double, opposite, zero) all over: every branch of every limiter, kinks included."""
    rng = np.random.default_rng(seed)
    grid = Grid(ny=9, nx=11, dx=50.0, periodic=periodic)
    if integer:
        H = rng.integers(0, 4, size=grid.shape).astype(float)
        bed = rng.integers(0, 3, size=grid.shape).astype(float)
    else:
        H = np.maximum(rng.normal(20.0, 25.0, size=grid.shape), 0.0)
        bed = rng.normal(0.0, 15.0, size=grid.shape)
    return grid, H, bed


STATES = {
    "valley_smooth": lambda: _valley("smooth"),
    "valley_margins": lambda: _valley("margins"),
    "bedrock_step": _bedrock_step,
    "random": lambda: _random((False, False), 0),
    "random_periodic_y": lambda: _random((True, False), 1),
    "random_periodic_x": lambda: _random((False, True), 2),
    "random_periodic_xy": lambda: _random((True, True), 3),
    "integer_ties": lambda: _random((False, False), 4, integer=True),
    "integer_ties_periodic": lambda: _random((True, True), 5, integer=True),
}


def _state(name):
    grid, H, bed = STATES[name]()
    return grid, jnp.asarray(H, jnp.float64), jnp.asarray(bed, jnp.float64)


def _leaves(tree):
    return jax.tree_util.tree_leaves(tree)


def _random_like(tree, seed):
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda x: jnp.asarray(rng.normal(size=x.shape)), tree)


def _rel(a, b):
    return float(jnp.linalg.norm(a - b) / max(float(jnp.linalg.norm(b)), 1e-300))


@pytest.mark.parametrize("name", sorted(STATES))
def test_forward_is_bitwise_unchanged(name):
    grid, H, bed = _state(name)
    ref = jax.jit(lambda h, b: faces.face_states_autodiff(h, b, grid))(H, bed)
    new = jax.jit(lambda h, b: sia.face_states(h, b, grid))(H, bed)
    # The primal of the VJP comes from the custom rule's forward pass.
    primal = jax.jit(lambda h, b: jax.vjp(lambda h, b: sia.face_states(h, b, grid), h, b)[0])(
        H, bed)
    for r, n, p in zip(_leaves(ref), _leaves(new), _leaves(primal), strict=True):
        np.testing.assert_array_equal(np.asarray(n), np.asarray(r))
        np.testing.assert_array_equal(np.asarray(p), np.asarray(r))


SLOW_STATES = ("integer_ties", "valley_margins")  # ~20-25 s each: run with -m slow


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_STATES
                                  else n for n in sorted(STATES)])
def test_vjp_equals_autodiff_of_the_plain_expressions(name):
    grid, H, bed = _state(name)

    def vjp(fun):
        return jax.jit(lambda h, b, c: jax.vjp(lambda h, b: fun(h, b, grid), h, b)[1](c))

    ref_vjp, new_vjp = vjp(faces.face_states_autodiff), vjp(sia.face_states)
    out = jax.eval_shape(lambda h, b: faces.face_states_autodiff(h, b, grid), H, bed)
    for seed in range(2):
        cts = _random_like(out, seed)
        ref = ref_vjp(H, bed, cts)
        new = new_vjp(H, bed, cts)
        for r, n in zip(ref, new, strict=True):
            assert _rel(n, r) <= 1e-12, (name, seed, _rel(n, r))
    # The plain expressions of the adjoint (no computed_once regions), eagerly.
    for r, p in zip(ref, sia_vjp.face_states_vjp(H, bed, grid, cts), strict=True):
        assert _rel(p, r) <= 1e-12, (name, _rel(p, r))
    # Each output alone (a cotangent that is zero elsewhere), so that no term can hide.
    zero = jax.tree_util.tree_map(jnp.zeros_like, cts)
    for i in range(2):
        for j in range(3):
            cts_ij = [list(z) for z in zero]
            cts_ij[i][j] = cts[i][j]
            cts_ij = tuple(tuple(z) for z in cts_ij)
            ref = ref_vjp(H, bed, cts_ij)
            for r, n in zip(ref, new_vjp(H, bed, cts_ij), strict=True):
                scale = max(float(jnp.max(jnp.abs(r))), 1e-300)
                assert float(jnp.max(jnp.abs(n - r))) <= 1e-12 * scale, (name, i, j)


def test_states_sit_on_kinks():
    """The kink states do exercise the ties the adjoint must get right."""
    sb_codes, mc_codes = set(), set()
    for name in ("integer_ties", "integer_ties_periodic", "bedrock_step", "valley_margins"):
        grid, H, bed = _state(name)
        res = sia_vjp.face_states_residuals(H, bed, grid)
        sb = np.concatenate([np.ravel(res[a]["sb"]) for a in (1, 0)])
        assert np.any(sb == 0.0)  # a zero difference: no derivative
        sb_codes |= set(np.unique(sb).tolist())
        mc_codes |= set(np.unique(np.concatenate([np.ravel(res[a]["mc"]) for a in (1, 0)])))
        (_, _, gx), (_, _, gy) = faces.face_states_autodiff(H, bed, grid)
        assert np.any(np.asarray(gx) == 0.0) or np.any(np.asarray(gy) == 0.0)  # upwind switch
    # Superbee at r = 1/2, 1 and 2 (codes 5, 4.5, 8.5) and all its open ranges; mc_slope
    # centred (5/2) and limited on either side (2, 8).
    assert {0.0, 1.0, 2.0, 4.5, 5.0, 8.0, 8.5, 16.0} <= sb_codes, sb_codes
    assert {0.0, 2.0, 2.5, 8.0} <= mc_codes, mc_codes


def _tie_pairs():
    """(a, b) pairs covering every branch and tie of the limiters, both signs."""
    base = []
    for b in (1.0, 3.0):
        for r in (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0):
            base.append((r * b, b))
    pairs = []
    for a, b in base:
        for sa, sb in ((1, 1), (-1, -1), (1, -1), (-1, 1)):
            pairs.append((sa * a, sb * b))
            pairs.append((sb * b, sa * a))
    pairs += [(0.0, 0.0), (0.0, 2.0), (2.0, 0.0), (-0.0, 1.0)]
    a, b = np.array(pairs).T
    return jnp.asarray(a), jnp.asarray(b)


@pytest.mark.parametrize("limiter, weights", [
    (stencils.minmod, sia_vjp.minmod_weights),
    (stencils.mc_slope, sia_vjp.mc_slope_weights),
    (stencils.superbee_slope, sia_vjp.superbee_slope_weights),
])
def test_limiter_weights_are_jax_derivatives(limiter, weights):
    a, b = _tie_pairs()
    da = jax.vmap(jax.grad(limiter, argnums=0))(a, b)
    db = jax.vmap(jax.grad(limiter, argnums=1))(a, b)
    wa, wb = weights(a, b)
    np.testing.assert_array_equal(np.asarray(wa), np.asarray(da))
    np.testing.assert_array_equal(np.asarray(wb), np.asarray(db))


def test_weight_codes_round_trip():
    a, b = _tie_pairs()
    for weights, enc, dec in ((sia_vjp.superbee_slope_weights, sia_vjp.encode_superbee,
                               sia_vjp.decode_superbee),
                              (sia_vjp.mc_slope_weights, sia_vjp.encode_mc, sia_vjp.decode_mc)):
        wa, wb = weights(a, b)
        ra, rb = dec(enc(wa, wb))
        np.testing.assert_array_equal(np.asarray(ra), np.asarray(wa))
        np.testing.assert_array_equal(np.asarray(rb), np.asarray(wb))


@pytest.mark.parametrize("periodic", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("width, fill", [((2, 2), "zero"), ((1, 1), "edge"), ((0, 1), "zero"),
                                         ((1, 0), "zero")])
def test_pad_transpose(periodic, width, fill):
    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.normal(size=(3, 5)))
    y, vjp = jax.vjp(lambda f: stencils.pad(f, width, periodic, fill), x)
    ct = jnp.asarray(rng.normal(size=y.shape))
    np.testing.assert_allclose(np.asarray(sia_vjp.pad_transpose(ct, width, periodic, fill)),
                               np.asarray(vjp(ct)[0]), rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("name", ["valley_margins", "bedrock_step", "random_periodic_xy",
                                  "integer_ties"])
def test_dot_product(name):
    """<u, J v> = <J^T u, v>: J v from jax.jvp of the plain expressions, J^T u from the
    custom VJP (both directions: H and bed)."""
    grid, H, bed = _state(name)
    fun = jax.jit(lambda h, b: faces.face_states_autodiff(h, b, grid))
    out = jax.eval_shape(fun, H, bed)
    rng = np.random.default_rng(11)
    for _ in range(3):
        vH = jnp.asarray(rng.normal(size=H.shape))
        vb = jnp.asarray(rng.normal(size=bed.shape))
        u = _random_like(out, int(rng.integers(1 << 30)))
        _, Jv = jax.jvp(fun, (H, bed), (vH, vb))
        JTu = jax.vjp(lambda h, b: sia.face_states(h, b, grid), H, bed)[1](u)
        lhs = sum(float(jnp.vdot(a, c)) for a, c in zip(_leaves(u), _leaves(Jv), strict=True))
        rhs = float(jnp.vdot(JTu[0], vH) + jnp.vdot(JTu[1], vb))
        scale = sum(float(jnp.vdot(jnp.abs(a), jnp.abs(c)))
                    for a, c in zip(_leaves(u), _leaves(Jv), strict=True))
        assert abs(lhs - rhs) <= 1e-13 * scale, (lhs, rhs)


@pytest.mark.parametrize("periodic", [(False, False), (True, False)])
@pytest.mark.parametrize("eps", [1e-3, 1e-4, 1e-5])
def test_fluxes_gradient_matches_finite_differences(periodic, eps):
    """A scalar loss through ``sia.fluxes`` (Glen's law): directional central differences along
    random directions in H and in the bed.

    The state is generic (positive thickness, no two differences in a limiter's tie ratios),
    so no kink lies within eps of it. On the valley states the bed is an exact ramp: they sit
    on kinks, where central differences average the two one-sided derivatives (there the
    comparison is with JAX's AD, above).
    """
    rng = np.random.default_rng(21)
    grid = Grid(ny=9, nx=11, dx=50.0, periodic=periodic)
    H = jnp.asarray(60.0 + 20.0 * rng.normal(size=grid.shape))
    bed = jnp.asarray(15.0 * rng.normal(size=grid.shape))
    law = GlenLaw(A=2.4e-24 * 365.25 * 86400)
    wx = jnp.asarray(rng.normal(size=(grid.ny, grid.nx + 1)))
    wy = jnp.asarray(rng.normal(size=(grid.ny + 1, grid.nx)))

    def loss(h, b):
        qx, qy, _ = sia.fluxes(h, b, law, grid)
        return jnp.sum(wx * qx) + jnp.sum(wy * qy) + 1e-3 * jnp.sum(qx**2)

    gH, gb = jax.jit(jax.grad(loss, argnums=(0, 1)))(H, bed)
    f = jax.jit(loss)
    ads, fds = [], []
    for _ in range(3):
        vH = jnp.asarray(rng.normal(size=H.shape))
        vb = jnp.asarray(rng.normal(size=bed.shape))
        for g, dH, db in ((gH, vH, 0.0 * vb), (gb, 0.0 * vH, vb)):
            fd = (f(H + eps * dH, bed + eps * db) - f(H - eps * dH, bed - eps * db)) / (2 * eps)
            ads.append(float(jnp.vdot(g, dH + db)))
            fds.append(float(fd))
    ads, fds = np.array(ads), np.array(fds)
    assert np.max(np.abs(ads - fds) / np.abs(fds)) <= 1e-6, (ads, fds)
    assert ads @ fds / (np.linalg.norm(ads) * np.linalg.norm(fds)) > 1 - 1e-12


def test_vmap_and_float32():
    grid, H, bed = _state("random_periodic_y")
    Hs, beds = jnp.stack([H, 2.0 * H]), jnp.stack([bed, bed + 1.0])

    def loss(fs, h, b):
        (hx, sx, gx), (hy, sy, gy) = fs(h, b, grid)
        return jnp.sum(jnp.sin(hx) * sx * gx) + jnp.sum(jnp.cos(hy) * sy + gy**3)

    for in_axes, args in (((0, 0), (Hs, beds)), ((0, None), (Hs, bed))):
        def batched(fs, in_axes=in_axes):
            return jax.jit(jax.vmap(jax.grad(lambda h, b: loss(fs, h, b), argnums=(0, 1)),
                                    in_axes=in_axes))
        ref = batched(faces.face_states_autodiff)(*args)
        new = batched(sia.face_states)(*args)
        for a, c in zip(new, ref, strict=True):
            assert _rel(a, c) <= 1e-12
    # float32 in, float32 out, and close to float64.
    g32 = jax.grad(lambda h, b: loss(sia.face_states, h, b), argnums=(0, 1))(
        H.astype(jnp.float32), bed.astype(jnp.float32))
    g64 = jax.grad(lambda h, b: loss(sia.face_states, h, b), argnums=(0, 1))(H, bed)
    for a, c in zip(g32, g64, strict=True):
        assert a.dtype == jnp.float32
        assert _rel(a.astype(jnp.float64), c) <= 1e-4


def test_solver_gradient_equals_autodiff_path():
    """The checkpointed gradient of a short solve w.r.t. log A, the initial thickness and the
    bed, with the custom VJP and with JAX's AD of ``face_states``."""
    grid, H0, bed = _state("valley_margins")
    def loss(log_A, h, b, custom_vjp):
        tr = simulate(h, b, grid=grid, rheology=GlenLaw(A=jnp.exp(log_A)),
                      smb=mass_balance.linear(2600.0, 0.005), save_at=SaveAt((0.0, 2.0, 4.0)),
                      scheme=ExplicitMUSCL(cfl=0.1, max_dt=0.5, max_steps=40,
                                           custom_vjp=custom_vjp),
                      adjoint=Checkpointed(checkpoint_every=8))
        return jnp.sum(tr.thickness[1:] ** 2) / 1e4

    log_A = jnp.log(2.4e-24 * 365.25 * 86400)
    grads = {flag: jax.grad(loss, argnums=(0, 1, 2))(log_A, H0, bed, flag)
             for flag in (True, False)}  # the scheme's field: no global switch
    for a, b in zip(grads[True], grads[False], strict=True):
        assert _rel(a, b) <= 1e-10, _rel(a, b)
