// The reverse-mode adjoint (vector-Jacobian product) of the face kernel of ``sia_faces.cc``:
// the cotangents of H, bed and the law's coefficients (gamma, slide) from those of the face
// fluxes qx, qy and of D_max. An XLA FFI custom call, built with the face kernel by
// ``physics.native``; the rule of ``native.fluxes_native``'s ``jax.custom_vjp``.
//
// It is ``physics.faces_adjoint.face_states_adjoint`` followed through the diffusivity
// (``sia.coef_diffusivity``) and the flux q = -D dS/dn, in C++: the cell limiters and their
// weights once per cell, then per face the cotangents of the face-normal slope, the cross
// slope and the upwind MUSCL thickness, then back through the limiters to the padded surface
// and thickness, and the transposes of the ghost padding. Kinks take the one-sided
// derivatives that JAX's AD takes of the XLA expressions (``physics.faces_adjoint``'s module
// docstring): the limiters' weights (``mc_slope_weights``, ``superbee_slope_weights``), the
// upwind switch (no cotangent to the predicate), and for D_max = max(max Dx, max Dy) the
// cotangent shared equally by every face equal to the maximum, halved between the two
// directions at a tie (``lax.max``'s balanced rule). So the gradients equal those of the XLA
// expressions to round-off (``tests/numerics/test_native_adjoint.py``).
//
// Inputs: H, bed (..., ny, nx), coef (..., 2) (or, with the attribute coef_fields, the cell
// fields (..., 3, ny, nx) of sia_faces.cc), dmax (...) (the forward's D_max, unused: the
// maxima of the two directions are recomputed), ct_qx (..., ny, nx + 1), ct_qy (..., ny + 1,
// nx), ct_dmax (...), ct_H_in (..., ny, nx) (a cotangent of H from elsewhere, added to ct_H:
// the step's other uses of H, so that XLA need not add them in a fusion of its own; read only
// with the attribute has_ct_in); attributes dx, periodic_y, periodic_x, has_ct_in,
// coef_fields. Outputs: ct_H, ct_bed (..., ny, nx), ct_coef (the shape of coef).
// Its loops are mostly arithmetic on values in the first-level cache: with 512-bit vectors
// (GCC's default on AVX-512 CPUs is 256) the kernel takes 6-11 % less time on the valley (the
// forward kernels, which move more data per operation, gain nothing and keep 256). A tuning
// option only: the results are the same bit for bit.
#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
#pragma GCC target("prefer-vector-width=512")
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include "sia_kernels.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using glacier_native::grid_dims;
using glacier_native::grow;
using glacier_native::wrap_or_out;

// The value of ``stencils.mc_slope(a, b)`` (as in sia_faces.cc, bit for bit) and its weights
// (d/da, d/db) as ``faces_adjoint.mc_slope_weights``: (1/2, 1/2) where the centred difference
// is taken, 2 on the smaller one-sided difference where it is (b at |a| = |b|), else 0.
template <typename T>
inline T mc_weights(T a, T b, T& wa, T& wb) {
  T aa = std::fabs(a), ab = std::fabs(b);
  T half = T(0.5) * std::fabs(a + b), two_min = T(2) * std::min(aa, ab);
  const bool same = a * b > T(0), centred = half < two_min, pick_a = aa < ab;
  // Selects of constants (blends once vectorised): fewer instructions than 0/1 flags times
  // the weights.
  T x = pick_a ? T(2) : T(0), y = pick_a ? T(0) : T(2);
  x = centred ? T(0.5) : x;
  y = centred ? T(0.5) : y;
  wa = same ? x : T(0);
  wb = same ? y : T(0);
  return same ? std::copysign(std::min(half, two_min), a) : T(0);
}

// ``stencils.superbee_slope(a, b)`` and its weights as ``faces_adjoint.superbee_slope_weights``
// (JAX's balanced min/max: 1/2 to each argument at a tie), by r = |a| / |b|:
//   r < 1/2: (2, 0)   r = 1/2: (1, 1/2)   1/2 < r < 1: (0, 1)   r = 1: (1/2, 1/2)
//   1 < r < 2: (1, 0)   r = 2: (1/2, 1)   r > 2: (0, 2).
template <typename T>
inline T superbee_weights(T a, T b, T& wa, T& wb) {
  T aa = std::fabs(a), ab = std::fabs(b);
  T two_a = T(2) * aa, two_b = T(2) * ab;
  const bool same = a * b > T(0);
  // Branch-free: the table read from r > 2 down, each threshold's select overriding the
  // weights of the larger r (selects of constants: blends once vectorised, half the
  // instructions of 0/1 flags times weights). Where |a| = |b| = inf, the only input with no
  // ordering, this gives (1, 1/2).
  T x = T(0), y = T(2);  // r > 2
  x = (aa == two_b) ? T(0.5) : x;
  y = (aa == two_b) ? T(1) : y;
  x = (aa < two_b) ? T(1) : x;  // 1 < r < 2
  y = (aa < two_b) ? T(0) : y;
  x = (aa == ab) ? T(0.5) : x;
  y = (aa == ab) ? T(0.5) : y;
  x = (aa < ab) ? T(0) : x;  // 1/2 < r < 1
  y = (aa < ab) ? T(1) : y;
  x = (two_a == ab) ? T(1) : x;
  y = (two_a == ab) ? T(0.5) : y;
  x = (two_a < ab) ? T(2) : x;  // r < 1/2
  y = (two_a < ab) ? T(0) : y;
  wa = same ? x : T(0);
  wb = same ? y : T(0);
  T mag = std::max(std::min(two_a, ab), std::min(aa, two_b));
  return same ? std::copysign(mag, b) : T(0);
}

// A row of limited slopes mc_slope(a1 - a0, b1 - b0) / dx and their weights.
template <typename T>
__attribute__((noinline)) void mc_row(int64_t n, const T* __restrict a1, const T* __restrict a0,
                                      const T* __restrict b1, const T* __restrict b0, T inv_dx,
                                      T* __restrict c, T* __restrict wa, T* __restrict wb) {
  for (int64_t j = 0; j < n; ++j) {
    T x, y;
    c[j] = mc_weights(a1[j] - a0[j], b1[j] - b0[j], x, y) * inv_dx;
    wa[j] = x;
    wb[j] = y;
  }
}

// A row of MUSCL corrections superbee_slope(a1 - a0, b1 - b0) / 2 and their weights.
template <typename T>
__attribute__((noinline)) void superbee_row(int64_t n, const T* __restrict a0,
                                            const T* __restrict a1, const T* __restrict b0,
                                            const T* __restrict b1, T* __restrict c,
                                            T* __restrict wa, T* __restrict wb) {
  for (int64_t j = 0; j < n; ++j) {
    T x, y;
    c[j] = T(0.5) * superbee_weights(a1[j] - a0[j], b1[j] - b0[j], x, y);
    wa[j] = x;
    wb[j] = y;
  }
}

// The adjoint of a three-point stencil along a row, g[k] -= ca[k], g[k + 1] += ca[k] - cb[k],
// g[k + 2] += cb[k] (k0 <= k < k1), written as a gather so that it vectorises; ca and cb hold
// the values of k at index k + 2 and two zeros before and after them (``stencil_ends``).
template <typename T>
__attribute__((noinline)) void three_point_adjoint(int64_t k0, int64_t k1,
                                                   const T* __restrict ca,
                                                   const T* __restrict cb, T* __restrict g) {
  for (int64_t b = k0; b < k1 + 2; ++b) g[b] += (cb[b] - ca[b + 2]) + (ca[b + 1] - cb[b + 1]);
}

// The zeros of ``three_point_adjoint``'s ca and cb beside the values of [k0, k1).
template <typename T>
inline void stencil_ends(int64_t k0, int64_t k1, T* ca, T* cb) {
  for (int64_t b : {k0, k0 + 1, k1 + 2, k1 + 3}) ca[b] = cb[b] = T(0);
}

// The same stencil's adjoint across three rows (no dependence between columns).
template <typename T>
__attribute__((noinline)) void three_row_adjoint(int64_t n, const T* __restrict g,
                                                 const T* __restrict wa, const T* __restrict wb,
                                                 T scale, T* __restrict g0, T* __restrict g1,
                                                 T* __restrict g2) {
  for (int64_t j = 0; j < n; ++j) {
    T ca = wa[j] * (g[j] * scale), cb = wb[j] * (g[j] * scale);
    g0[j] -= ca;
    g1[j] += ca - cb;
    g2[j] += cb;
  }
}

// A row of y-faces' terms into the rows of cotangents on their two sides.
template <typename T>
__attribute__((noinline)) void y_face_scatter(
    int64_t n, const T* __restrict G, const T* __restrict K, const T* __restrict L,
    const T* __restrict R, T* __restrict gs0, T* __restrict gs1, T* __restrict gc0,
    T* __restrict gc1, T* __restrict gb0, T* __restrict gb1, T* __restrict gh0,
    T* __restrict gh1) {
  for (int64_t j = 0; j < n; ++j) {
    gs1[j] += G[j];
    gs0[j] -= G[j];
    gc0[j] += K[j];
    gc1[j] += K[j];
    gb0[j] += L[j];
    gb1[j] -= R[j];
    gh0[j] += L[j];
    gh1[j] += R[j];
  }
}

// A row of x-faces' terms (from index 1, zeros beside the faces walked) into the row of
// cotangents: the cells [k0, k1) beside the faces [k0, k1 - 1) walked. gc and gb (the row's
// own limiters' cotangents) are written, the padded fields' rows gs and gh added to.
template <typename T>
__attribute__((noinline)) void x_face_gather(int64_t k0, int64_t k1, const T* __restrict G,
                                             const T* __restrict K, const T* __restrict L,
                                             const T* __restrict R, T* __restrict gs,
                                             T* __restrict gc, T* __restrict gb,
                                             T* __restrict gh) {
  for (int64_t b = k0; b < k1; ++b) {  // face b - 1 (index b) and face b (index b + 1)
    gs[b] += G[b] - G[b + 1];
    gc[b] = K[b] + K[b + 1];
    gb[b] = L[b + 1] - R[b];
  }
  for (int64_t b = k0 + 1; b <= k1; ++b) gh[b] += L[b] + R[b - 1];
}

// One contribution src to an output row dst of n values: written (plus base, when given) if
// it is the row's first (``hit`` not set), else added.
template <typename T>
inline void write_or_add(unsigned char& hit, T* dst, const T* src, const T* base, int64_t n) {
  if (hit)
    for (int64_t j = 0; j < n; ++j) dst[j] += src[j];
  else if (base != nullptr)
    for (int64_t j = 0; j < n; ++j) dst[j] = base[j] + src[j];
  else
    std::copy(src, src + n, dst);
  hit = 1;
}

// The output rows that took no contribution: base's row (nothing to do where base is the
// output itself), or zero.
template <typename T>
inline void fill_rest(const unsigned char* hit, T* out, const T* base, int64_t ny, int64_t nx) {
  for (int64_t i = 0; i < ny; ++i) {
    if (hit[i]) continue;
    if (base == nullptr)
      std::fill(out + i * nx, out + (i + 1) * nx, T(0));
    else if (base != out)
      std::copy(base + i * nx, base + (i + 1) * nx, out + i * nx);
  }
}

template <typename T>
T* zeroed(std::vector<T>& v, int64_t n) {
  T* data = grow(v, n);
  std::fill(data, data + n, T(0));
  return data;
}

template <typename T>
struct Scratch {
  // Forward: padded H and S (whole fields), cell limiters with their weights (one row, or a
  // two-row ring), one row of face diffusivities (only when D_max's cotangent is not zero).
  std::vector<T> Hp, Sp, cx, cxa, cxb, cy, cya, cyb, sbx, sba_x, sbb_x, sby, sba_y, sbb_y, D;
  // Each face row's largest D and how many of its faces equal it (D_max's cotangent).
  std::vector<T> xmax, ymax;
  std::vector<int64_t> xcount, ycount;
  // The faces that can carry a flux: per x-face row and y-face row, [first, end).
  std::vector<int64_t> ice, xspan, yspan;
  std::vector<unsigned char> hit;  // the output rows written so far
  // Adjoint: cotangents of the above (gHp, gSp whole; the limiters' in rows), and one row of
  // face terms.
  std::vector<T> gHp, gSp, gcx, gcy, gsbx, gsby, G, K, L, R, E5, E3, CA, CB, Z;
  // One row of faces' coefficients (cell fields of the law's coefficients only).
  std::vector<T> FG, FS, TERMS;
};

template <typename T>
Scratch<T>& scratch() {
  thread_local Scratch<T> s;
  return s;
}

// One face's quantities, shared by the maximum pass and the adjoint pass.
template <typename T>
struct Face {
  T grad, cross, s2, Hu, D;
  bool low;
};

template <typename T>
inline Face<T> face(T s_lo, T s_hi, T c_lo, T c_hi, T h_lo, T h_hi, T sb_lo, T sb_hi, T gamma,
                    T slide, T inv_dx) {
  Face<T> F;
  F.grad = (s_hi - s_lo) * inv_dx;
  F.cross = T(0.5) * (c_lo + c_hi);
  F.s2 = F.grad * F.grad + F.cross * F.cross;
  F.low = F.grad <= T(0);
  F.Hu = glacier_native::pick(F.low, h_lo + sb_lo, h_hi - sb_hi);
  T H2 = F.Hu * F.Hu, H3 = H2 * F.Hu;
  F.D = gamma * (H3 * H2) * F.s2 + slide * H3 * F.s2;
  return F;
}

// The adjoint terms of a row of n faces, into G (d/dS differences: ct_grad / dx), K (half the
// cross slope's cotangent, to each of the two cells), L and R (the upwind thickness's
// cotangent, to the low or the high side's MUSCL state), and E5, E3 (each face's part of the
// coefficients' cotangents, summed by ``lane_sum``: a sum in the loop would not vectorise; with
// coefficient fields, taken to the cells by ``x_``/``y_face_coefficients_adjoint``).
// Ties: the faces whose D equals ``at_max`` take ``share`` of D_max's cotangent besides their
// own; StoreD: each face's D into D_out (the row's, for its maximum). The law's coefficients:
// gamma_s and slide_s, or (Field) each face's gam[f] and sld[f].
template <typename T, bool Ties, bool StoreD, bool Field>
__attribute__((noinline)) void face_row_adjoint(
    int64_t n, const T* __restrict s_lo, const T* __restrict s_hi, const T* __restrict c_lo,
    const T* __restrict c_hi, const T* __restrict h_lo, const T* __restrict h_hi,
    const T* __restrict sb_lo, const T* __restrict sb_hi, const T* __restrict ct_q,
    T at_max, T share, T gamma_s, T slide_s, const T* __restrict gam, const T* __restrict sld,
    T inv_dx, T* __restrict G, T* __restrict K, T* __restrict L, T* __restrict R,
    T* __restrict E5, T* __restrict E3, T* __restrict D_out) {
  for (int64_t f = 0; f < n; ++f) {
    const T gamma = Field ? gam[f] : gamma_s, slide = Field ? sld[f] : slide_s;
    Face<T> F = face(s_lo[f], s_hi[f], c_lo[f], c_hi[f], h_lo[f], h_hi[f], sb_lo[f], sb_hi[f],
                     gamma, slide, inv_dx);
    if (StoreD) D_out[f] = F.D;
    T ctD = -(ct_q[f] * F.grad) + ((Ties && F.D == at_max) ? share : T(0));
    T H2 = F.Hu * F.Hu, H3 = H2 * F.Hu, H5 = H3 * H2;
    E5[f] = ctD * H5 * F.s2;
    E3[f] = ctD * H3 * F.s2;
    T ct_s2 = ctD * (gamma * H5 + slide * H3);
    T ct_Hu = ctD * F.s2 * (gamma * T(5) * (H2 * H2) + slide * T(3) * H2);
    T ct_grad = -(ct_q[f] * F.D) + T(2) * F.grad * ct_s2;
    G[f] = ct_grad * inv_dx;
    K[f] = F.cross * ct_s2;  // (2 cross ct_s2) / 2 to each cell
    L[f] = F.low ? ct_Hu : T(0);
    R[f] = F.low ? T(0) : ct_Hu;
  }
}

// Sums of a row in 8 lanes (vectorisable), added to s8.
template <typename T>
inline void lane_sum(const T* __restrict d, int64_t n, T* __restrict s8) {
  int64_t f = 0;
  for (; f + 8 <= n; f += 8)
    for (int k = 0; k < 8; ++k) s8[k] += d[f + k];
  for (; f < n; ++f) s8[0] += d[f];
}

template <typename T>
__attribute__((noinline)) T array_max(const T* __restrict d, int64_t n) {
  T m8[8], nan8[8];
  for (int k = 0; k < 8; ++k) {
    m8[k] = -std::numeric_limits<T>::infinity();
    nan8[k] = T(0);
  }
  int64_t f = 0;
  for (; f + 8 <= n; f += 8)
    for (int k = 0; k < 8; ++k) {
      m8[k] = std::max(m8[k], d[f + k]);  // (m < v) ? v : m: one vector max
      nan8[k] += d[f + k] * T(0);  // NaN (or Inf) makes it NaN
    }
  for (; f < n; ++f) {
    m8[0] = std::max(m8[0], d[f]);
    nan8[0] += d[f] * T(0);
  }
  T m = m8[0], nan = T(0);
  for (int k = 0; k < 8; ++k) {
    m = std::max(m, m8[k]);
    nan += nan8[k];
  }
  return (nan == nan) ? m : std::numeric_limits<T>::quiet_NaN();
}

// The adjoint of the face coefficients (``glacier_native::face_coefficients_run``): from the
// cotangents E5[f], E3[f] of each face's (gamma, slide), with the weight w = m_lo m_hi and the
// cells' means gm, sm, each face's terms for its two cells: P5 = w E5 / 2 and P3 = w E3 / 2 to
// both cells' gamma and slide, and (gm E5 + sm E3) times the other cell's weight to each
// cell's weight (QL to the low cell, QH to the high one). Faces [f0, f1), cells lo[f - Shift]
// and hi[f], as in the forward.
template <int Shift, typename T>
inline void face_terms_run(int64_t f0, int64_t f1, const T* __restrict lo, const T* __restrict hi,
                           int64_t cells, const T* __restrict E5, const T* __restrict E3,
                           T* __restrict P5, T* __restrict P3, T* __restrict QL,
                           T* __restrict QH) {
  const T *g_lo = lo, *s_lo = lo + cells, *m_lo = lo + 2 * cells;
  const T *g_hi = hi, *s_hi = hi + cells, *m_hi = hi + 2 * cells;
  for (int64_t f = f0; f < f1; ++f) {
    const T ml = m_lo[f - Shift], mh = m_hi[f], w = ml * mh;
    const T ct_w = E5[f] * (T(0.5) * (g_lo[f - Shift] + g_hi[f]))
                   + E3[f] * (T(0.5) * (s_lo[f - Shift] + s_hi[f]));
    P5[f] = T(0.5) * (w * E5[f]);
    P3[f] = T(0.5) * (w * E3[f]);
    QL[f] = ct_w * mh;
    QH[f] = ct_w * ml;
  }
}

// Scratch rows of the face terms (nx + 2 values each).
template <typename T>
struct FaceTerms {
  T *P5, *P3, *QL, *QH;
};

// The x-faces' terms to the cells [c0, c1) beside them (cell j: faces j and j + 1), in a
// function of its own so that the pointers are ``__restrict`` and the loop vectorises.
template <typename T>
__attribute__((noinline)) void x_cells_gather(int64_t c0, int64_t c1, const T* __restrict P5,
                                              const T* __restrict P3, const T* __restrict QL,
                                              const T* __restrict QH, T* __restrict cg,
                                              T* __restrict cs, T* __restrict cm) {
  for (int64_t j = c0; j < c1; ++j) {
    cg[j] += P5[j] + P5[j + 1];
    cs[j] += P3[j] + P3[j + 1];
    cm[j] += QH[j] + QL[j + 1];
  }
}

// A y-face row's terms to the cells on one side: P5 and P3 to their gamma and slide, Q to
// their weight (``__restrict``, as above).
template <typename T>
__attribute__((noinline)) void y_cells_add(int64_t j0, int64_t j1, const T* __restrict P5,
                                           const T* __restrict P3, const T* __restrict Q,
                                           T* __restrict cg, T* __restrict cs,
                                           T* __restrict cm) {
  for (int64_t j = j0; j < j1; ++j) {
    cg[j] += P5[j];
    cs[j] += P3[j];
    cm[j] += Q[j];
  }
}

// x-face row ``row`` (faces [f0, f1) of nx + 1): the faces' terms, then gathered per cell
// (cell j is the high cell of face j and the low cell of face j + 1; the edge faces 0 and nx
// have the edge cell on both sides), into the cotangent row ``ct`` (laid out as the fields).
template <typename T>
inline void x_face_coefficients_adjoint(int64_t f0, int64_t f1, const T* E5, const T* E3,
                                        const T* row, T* ct, int64_t nx, int64_t cells,
                                        FaceTerms<T> t) {
  if (f0 >= f1) return;
  for (T* v : {t.P5, t.P3, t.QL, t.QH}) {  // zeros beside the faces walked, for the gather
    if (f0 > 0) v[f0 - 1] = T(0);
    if (f1 <= nx) v[f1] = T(0);
  }
  if (f0 == 0) face_terms_run<0>(0, 1, row, row, cells, E5, E3, t.P5, t.P3, t.QL, t.QH);
  face_terms_run<1>(std::max<int64_t>(f0, 1), std::min(f1, nx), row, row, cells, E5, E3, t.P5,
                    t.P3, t.QL, t.QH);
  if (f1 == nx + 1)
    face_terms_run<0>(nx - 1, nx, row, row, cells, E5 + 1, E3 + 1, t.P5 + 1, t.P3 + 1,
                      t.QL + 1, t.QH + 1);
  const int64_t c0 = std::max<int64_t>(f0 - 1, 0), c1 = std::min(f1, nx);
  T *cg = ct, *cs = ct + cells, *cm = ct + 2 * cells;
  const T *P5 = t.P5, *P3 = t.P3, *QL = t.QL, *QH = t.QH;
  x_cells_gather(c0, c1, P5, P3, QL, QH, cg, cs, cm);
  if (f0 == 0) {  // face 0: cell 0 is its low cell as well
    cg[0] += P5[0];
    cs[0] += P3[0];
    cm[0] += QL[0];
  }
  if (f1 == nx + 1) {  // face nx: cell nx - 1 is its high cell as well
    cg[nx - 1] += P5[nx];
    cs[nx - 1] += P3[nx];
    cm[nx - 1] += QH[nx];
  }
}

// A y-face row between the cell rows lo and hi (faces [j0, j1)): each face's terms to the
// cells beside it, into the cotangent rows ct_lo and ct_hi (the same row at the domain's
// edges).
template <typename T>
inline void y_face_coefficients_adjoint(int64_t j0, int64_t j1, const T* E5, const T* E3,
                                        const T* lo, const T* hi, T* ct_lo, T* ct_hi,
                                        int64_t cells, FaceTerms<T> t) {
  face_terms_run<0>(j0, j1, lo, hi, cells, E5, E3, t.P5, t.P3, t.QL, t.QH);
  // The rows below and above (the same row at the domain's edges: one after the other).
  y_cells_add(j0, j1, t.P5, t.P3, t.QL, ct_lo, ct_lo + cells, ct_lo + 2 * cells);
  y_cells_add(j0, j1, t.P5, t.P3, t.QH, ct_hi, ct_hi + cells, ct_hi + 2 * cells);
}

// cf: the law's coefficient fields (``glacier_native::face_coefficients_run``; then their
// cotangents go to ct_cf, and gamma, slide and ct_coef are not used), or null.
template <typename T>
void faces_vjp_one(const T* H, const T* bed, T gamma, T slide, const T* cf, T dx, int64_t ny,
                   int64_t nx, bool py, bool px, const T* ct_qx, const T* ct_qy, T ct_dmax,
                   const T* ct_H_in, T* ct_H, T* ct_bed, T* ct_coef, T* ct_cf) {
  const bool fields = cf != nullptr;
  if (fields) std::fill(ct_cf, ct_cf + 3 * ny * nx, T(0));
  const T inv_dx = T(1) / dx;
  const int64_t W4 = nx + 4, W2 = nx + 2;
  Scratch<T>& s = scratch<T>();
  T* Hp = grow(s.Hp, (ny + 4) * W4);
  T* Sp = grow(s.Sp, (ny + 2) * W2);
  // Padded thickness (zero ghosts, or wrapped); the padded surface below, where there is ice.
  for (int64_t a = 0; a < ny + 4; ++a) {
    int64_t i = wrap_or_out(a - 2, ny, py);
    T* row = Hp + a * W4;
    if (i < 0) {  // zero ghosts
      std::fill(row, row + W4, T(0));
      continue;
    }
    const T* src = H + i * nx;
    std::copy(src, src + nx, row + 2);
    for (int64_t b : {int64_t(0), int64_t(1), nx + 2, nx + 3}) {
      int64_t j = wrap_or_out(b - 2, nx, px);
      row[b] = (j < 0) ? T(0) : src[j];
    }
  }
  // Ice-free ground is skipped (``glacier_native::ice_span``): the x-faces of row i read the
  // padded columns f .. f + 3 of padded row i + 2, the y-faces of column j padded column
  // j + 2 of padded rows f .. f + 3; a face whose cells hold no ice adds nothing, and a row of
  // such faces is not walked at all.
  int64_t* ice = grow(s.ice, 2 * (ny + 4));  // per padded row: its ice's columns
  int64_t* xspan = grow(s.xspan, 2 * ny);
  int64_t* yspan = grow(s.yspan, 2 * (ny + 1));
  for (int64_t a = 0; a < ny + 4; ++a)
    glacier_native::ice_span(Hp + a * W4, W4, ice[2 * a], ice[2 * a + 1]);
  for (int64_t i = 0; i < ny; ++i) {
    const int64_t lo = ice[2 * (i + 2)], hi = ice[2 * (i + 2) + 1];
    xspan[2 * i] = std::max<int64_t>(0, lo - 3);
    xspan[2 * i + 1] = (lo < hi) ? std::min<int64_t>(nx + 1, hi) : 0;
  }
  for (int64_t f = 0; f <= ny; ++f) {
    int64_t lo = W4, hi = 0;
    for (int64_t a = f; a < f + 4; ++a) {
      lo = std::min(lo, ice[2 * a]);
      hi = std::max(hi, ice[2 * a + 1]);
    }
    yspan[2 * f] = std::max<int64_t>(0, lo - 2);
    yspan[2 * f + 1] = (lo < hi) ? std::min<int64_t>(nx, hi - 2) : 0;
  }
  auto y_active = [&](int64_t f) { return f >= 0 && f <= ny && yspan[2 * f] < yspan[2 * f + 1]; };
  auto y_needed = [&](int64_t k) { return y_active(k - 1) || y_active(k); };
  // The columns [j0, j1) of row k of the y-limiters that the active y-face rows k - 1 and k
  // read (their spans together; the limiters, their weights and cotangents are taken there).
  auto y_cols = [&](int64_t k, int64_t& j0, int64_t& j1) {
    j0 = nx;
    j1 = 0;
    for (int64_t f : {k - 1, k})
      if (y_active(f)) {
        j0 = std::min(j0, yspan[2 * f]);
        j1 = std::max(j1, yspan[2 * f + 1]);
      }
  };
  // The padded rows [row_lo, row_hi) that hold ice: the faces' terms reach at most 3 rows
  // beyond (a margin of 4 is kept), so the surface, the cotangents of the padded fields and
  // their transposes are taken on those rows only.
  int64_t row_lo = ny + 4, row_hi = 0;
  for (int64_t a = 0; a < ny + 4; ++a)
    if (ice[2 * a] < ice[2 * a + 1]) {
      row_lo = std::min(row_lo, a);
      row_hi = a + 1;
    }
  if (row_lo >= row_hi) {  // no ice: every face's D and q are 0, and so are their derivatives
    if (ct_H_in == nullptr)
      std::fill(ct_H, ct_H + ny * nx, T(0));
    else if (ct_H_in != ct_H)
      std::copy(ct_H_in, ct_H_in + ny * nx, ct_H);
    std::fill(ct_bed, ct_bed + ny * nx, T(0));
    if (!fields) ct_coef[0] = ct_coef[1] = T(0);
    return;
  }
  const int64_t hp0 = std::max<int64_t>(0, row_lo - 4);
  const int64_t hp1 = std::min<int64_t>(ny + 4, row_hi + 4);
  const int64_t sp0 = std::max<int64_t>(0, row_lo - 4);
  const int64_t sp1 = std::min<int64_t>(ny + 2, row_hi + 2);
  // The padded surface (the edge cell's bed, or wrapped) on those rows.
  for (int64_t a = sp0; a < sp1; ++a) {
    int64_t i = wrap_or_out(a - 1, ny, py);
    if (i < 0) i = std::min<int64_t>(std::max<int64_t>(a - 1, 0), ny - 1);
    const T* __restrict b = bed + i * nx;
    const T* __restrict h = Hp + (a + 1) * W4 + 1;
    T* __restrict row = Sp + a * W2;
    for (int64_t j = 0; j < nx; ++j) row[j + 1] = b[j] + h[j + 1];
    row[0] = (px ? b[nx - 1] : b[0]) + h[0];
    row[nx + 1] = (px ? b[0] : b[nx - 1]) + h[nx + 1];
  }
  // Cell limiters and their weights, computed row by row where they are used (the x-faces of
  // a row need its own; the y-faces between rows f and f + 1 need both rows', kept in
  // two-slot rings), so that the kernel's scratch stays small (about 4 fields besides its
  // inputs and outputs) and the step's other arrays stay in the second-level cache. For cell
  // row i: cy, its y-slopes on all nx + 2 surface columns, and sbx, the MUSCL corrections
  // along x of its padded cells 1..nx+2. For surface row a: cx, its x-slopes (padded columns
  // 1..nx); for padded row k + 1: sby, the MUSCL corrections along y.
  T* cy = grow(s.cy, W2);
  T* cya = grow(s.cya, W2);
  T* cyb = grow(s.cyb, W2);
  T* sbx = grow(s.sbx, W2);
  T* sxa = grow(s.sba_x, W2);
  T* sxb = grow(s.sbb_x, W2);
  T* cx = grow(s.cx, 2 * nx);
  T* cxa = grow(s.cxa, 2 * nx);
  T* cxb = grow(s.cxb, 2 * nx);
  T* sby = grow(s.sby, 2 * nx);
  T* sya = grow(s.sba_y, 2 * nx);
  T* syb = grow(s.sbb_y, 2 * nx);
  T* gcx = grow(s.gcx, 2 * nx);  // the cotangents of the two rows of cx and of sby
  T* gsby = grow(s.gsby, 2 * nx);
  // Row i's x-limiters on the columns [k0, k1) that its x-faces [f0, f1) read (the
  // faces f0 .. f1 - 1 read columns f0 .. f1).
  auto x_limiters = [&](int64_t i, int64_t k0, int64_t k1) {
    const int64_t m = k1 - k0;
    mc_row<T>(m, Sp + (i + 2) * W2 + k0, Sp + (i + 1) * W2 + k0, Sp + (i + 1) * W2 + k0,
              Sp + i * W2 + k0, inv_dx, cy + k0, cya + k0, cyb + k0);
    const T* h = Hp + (i + 2) * W4 + k0;
    superbee_row<T>(m, h, h + 1, h + 1, h + 2, sbx + k0, sxa + k0, sxb + k0);
  };
  auto slot = [nx](int64_t k) { return (k & 1) * nx; };
  auto y_limiters = [&](int64_t k) {  // row k of cx and of sby into slot k % 2
    int64_t j0, j1;
    y_cols(k, j0, j1);
    if (j0 >= j1) return;
    const int64_t m = j1 - j0;
    const T* r = Sp + k * W2 + j0;
    const int64_t o = slot(k) + j0;
    mc_row<T>(m, r + 2, r + 1, r + 1, r, inv_dx, cx + o, cxa + o, cxb + o);
    const T *h0 = Hp + k * W4 + 2 + j0, *h1 = Hp + (k + 1) * W4 + 2 + j0;
    const T* h2 = Hp + (k + 2) * W4 + 2 + j0;
    superbee_row<T>(m, h0, h1, h1, h2, sby + o, sya + o, syb + o);
    std::fill(gcx + o, gcx + o + m, T(0));
    std::fill(gsby + o, gsby + o + m, T(0));
  };
  // D_max's cotangent (only when it is not zero: a step of max_dt, or the last step of an
  // interval, does not depend on D_max) goes to the faces equal to the maximum, which are known
  // only once every face's D is. The adjoint is linear in each face's cotangent of D, so the
  // pass below keeps each face row's largest D and how many of its faces equal it, with the
  // faces' own cotangents; then the rows whose largest D is their direction's maximum (one or
  // a few, all rows only on a uniform slab) are walked again with D_max's share alone, the
  // other cotangents zero.
  const bool ties = ct_dmax != T(0);
  T* Drow = ties ? grow(s.D, nx + 1) : nullptr;
  T* xmax = ties ? grow(s.xmax, ny) : nullptr;
  T* ymax = ties ? grow(s.ymax, ny + 1) : nullptr;
  int64_t* xcount = ties ? grow(s.xcount, ny) : nullptr;
  int64_t* ycount = ties ? grow(s.ycount, ny + 1) : nullptr;
  T* zero_q = ties ? zeroed(s.Z, nx + 1) : nullptr;
  auto row_stats = [&](int64_t n, T& m, int64_t& count) {  // of the row in Drow
    m = array_max(Drow, n);
    int64_t c = 0;
    for (int64_t k = 0; k < n; ++k) c += (Drow[k] == m);
    count = c;
  };
  // Adjoint of the faces, into the cotangents of the padded surface and thickness and of the
  // cell limiters.
  T* gHp = grow(s.gHp, (ny + 4) * W4);
  T* gSp = grow(s.gSp, (ny + 2) * W2);
  std::fill(gHp + hp0 * W4, gHp + hp1 * W4, T(0));
  std::fill(gSp + sp0 * W2, gSp + sp1 * W2, T(0));
  T* gc = grow(s.gcy, W2);  // one row of cy's and of sbx's cotangents (x-faces only)
  T* gb = grow(s.gsbx, W2);
  T* CA = zeroed(s.CA, W4 + 2);
  T* CB = zeroed(s.CB, W4 + 2);
  const int64_t nrow = nx + 3;  // nx + 1 faces and a zero on each side
  T* G = zeroed(s.G, nrow);
  T* K = zeroed(s.K, nrow);
  T* L = zeroed(s.L, nrow);
  T* R = zeroed(s.R, nrow);
  T* E5 = grow(s.E5, nrow);
  T* E3 = grow(s.E3, nrow);
  T* FG = fields ? grow(s.FG, nrow) : nullptr;  // the faces' coefficients of the row walked
  T* FS = fields ? grow(s.FS, nrow) : nullptr;
  FaceTerms<T> terms{};  // the faces' terms of the coefficients' adjoint (fields only)
  if (fields) {
    T* v = grow(s.TERMS, 4 * nrow);
    terms = FaceTerms<T>{v, v + nrow, v + 2 * nrow, v + 3 * nrow};
  }
  T c5[8] = {}, c3[8] = {};
  // One row of faces: with ``D_out`` (the first pass, D_max's cotangent not zero) storing
  // their D; with ``share`` not zero (the second) adding it to the faces whose D equals
  // ``at_max``.
  // Faces [f0, f1) of the row's n are walked; the others (no ice in their stencil) add
  // nothing: their terms are zero, and so is their D.
  auto row_adjoint = [&](int64_t n, int64_t f0, int64_t f1, const T* s_lo, const T* s_hi,
                         const T* c_lo, const T* c_hi, const T* h_lo, const T* h_hi,
                         const T* sb_lo, const T* sb_hi, const T* ct_q, T at_max, T share,
                         T* D_out, T* g, T* k, T* l, T* r) {
    for (T* out : {g, k, l, r, E5, E3}) {
      std::fill(out, out + f0, T(0));
      std::fill(out + f1, out + n, T(0));
    }
    if (D_out != nullptr) {
      std::fill(D_out, D_out + f0, T(0));
      std::fill(D_out + f1, D_out + n, T(0));
    }
    const int64_t m = f1 - f0;
    const T* gam = fields ? FG + f0 : nullptr;
    const T* sld = fields ? FS + f0 : nullptr;
    auto walk = [&](auto kernel, T* d) {
      kernel(m, s_lo + f0, s_hi + f0, c_lo + f0, c_hi + f0, h_lo + f0, h_hi + f0, sb_lo + f0,
             sb_hi + f0, ct_q + f0, at_max, share, gamma, slide, gam, sld, inv_dx, g + f0,
             k + f0, l + f0, r + f0, E5 + f0, E3 + f0, d);
    };
    if (share != T(0))
      fields ? walk(face_row_adjoint<T, true, false, true>, nullptr)
             : walk(face_row_adjoint<T, true, false, false>, nullptr);
    else if (D_out != nullptr)
      fields ? walk(face_row_adjoint<T, false, true, true>, D_out + f0)
             : walk(face_row_adjoint<T, false, true, false>, D_out + f0);
    else
      fields ? walk(face_row_adjoint<T, false, false, true>, nullptr)
             : walk(face_row_adjoint<T, false, false, false>, nullptr);
    if (fields) return;  // the caller takes E5 and E3 to the cells
    lane_sum(E5, n, c5);
    lane_sum(E3, n, c3);
  };
  // x-faces, row i: face f between padded surface columns f, f + 1; cross slopes of cy's
  // columns f, f + 1; MUSCL states of Hp columns f + 1 (+ sbx f) and f + 2 (- sbx f + 1).
  // G, K, L, R hold the row's faces from index 1 (a zero on each side).
  auto x_row = [&](int64_t i, const T* ct_q, T at_max, T share, T* D_out) {
    const T* h = Hp + (i + 2) * W4;
    const T* r = Sp + (i + 1) * W2;
    const int64_t f0 = xspan[2 * i], f1 = xspan[2 * i + 1];
    const int64_t k0 = f0, k1 = f1 + 1;  // the limiters' columns
    x_limiters(i, k0, k1);
    // Face f between cells f - 1 and f of row i (the edge cell at the edges).
    if (fields)
      glacier_native::x_face_coefficients(f0, f1, cf + i * nx, nx, ny * nx, FG, FS);
    row_adjoint(nx + 1, f0, f1, r, r + 1, cy, cy + 1, h + 1, h + 2, sbx, sbx + 1, ct_q, at_max,
                share, D_out, G + 1, K + 1, L + 1, R + 1);
    if (fields)
      x_face_coefficients_adjoint(f0, f1, E5, E3, cf + i * nx, ct_cf + i * nx, nx, ny * nx,
                                  terms);
    G[0] = K[0] = L[0] = R[0] = T(0);  // the y-rows write from index 0
    G[nx + 2] = K[nx + 2] = L[nx + 2] = R[nx + 2] = T(0);
    x_face_gather<T>(k0, k1, G, K, L, R, gSp + (i + 1) * W2, gc, gb, gHp + (i + 2) * W4);
    // The row's cells have all their x-faces' cotangents: back through its MUSCL corrections
    // sb = superbee(h[k+1] - h[k], h[k+2] - h[k+1]) / 2 along the row (CA, CB: the
    // cotangents of the two differences, padded, for ``three_point_adjoint``) and its cross
    // slopes c = mc_slope(S[i+2] - S[i+1], S[i+1] - S[i]) / dx across three surface rows.
    // Columns [k0, k1) only: elsewhere gb and gc are zero.
    for (int64_t k = k0; k < k1; ++k) {
      CA[k + 2] = T(0.5) * sxa[k] * gb[k];
      CB[k + 2] = T(0.5) * sxb[k] * gb[k];
    }
    stencil_ends(k0, k1, CA, CB);
    three_point_adjoint<T>(k0, k1, CA, CB, gHp + (i + 2) * W4);
    three_row_adjoint<T>(k1 - k0, gc + k0, cyb + k0, cya + k0, inv_dx, gSp + i * W2 + k0,
                         gSp + (i + 1) * W2 + k0, gSp + (i + 2) * W2 + k0);
  };
  for (int64_t i = 0; i < ny; ++i) {
    if (xspan[2 * i] >= xspan[2 * i + 1]) {  // no ice: every D is 0, nothing to add
      if (ties) xmax[i] = T(0), xcount[i] = nx + 1;
      continue;
    }
    x_row(i, ct_qx + i * (nx + 1), T(0), T(0), Drow);
    if (ties) row_stats(nx + 1, xmax[i], xcount[i]);
  }
  // Back through the MUSCL corrections along y of padded row k + 1 (Hp rows k..k+2) and the
  // x-slopes of surface row k, once row k's cotangents are complete.
  auto y_chain = [&](int64_t k) {  // on the columns of ``y_limiters``
    int64_t j0, j1;
    y_cols(k, j0, j1);
    if (j0 >= j1) return;
    const int64_t o = slot(k);
    three_row_adjoint<T>(j1 - j0, gsby + o + j0, sya + o + j0, syb + o + j0, T(0.5),
                         gHp + k * W4 + 2 + j0, gHp + (k + 1) * W4 + 2 + j0,
                         gHp + (k + 2) * W4 + 2 + j0);
    const T *g = gcx + o, *wf = cxa + o, *wb = cxb + o;
    for (int64_t j = j0; j < j1; ++j) {  // the forward difference is the stencil's second
      T t = g[j] * inv_dx;
      CA[j + 2] = wb[j] * t;
      CB[j + 2] = wf[j] * t;
    }
    stencil_ends(j0, j1, CA, CB);
    three_point_adjoint<T>(j0, j1, CA, CB, gSp + k * W2);
  };
  // y-faces, face row f: between surface rows f, f + 1 (columns 1..nx); cross slopes of cx
  // rows f, f + 1; MUSCL states of Hp rows f + 1 (+ sby f) and f + 2 (- sby f + 1). The
  // limiters of rows f and f + 1 must be in their slots (``y_limiters``).
  auto y_row = [&](int64_t f, const T* ct_q, T at_max, T share, T* D_out) {
    const int64_t o0 = slot(f), o1 = slot(f + 1);
    const T *r0 = Sp + f * W2 + 1, *r1 = Sp + (f + 1) * W2 + 1;
    const T *h0 = Hp + (f + 1) * W4 + 2, *h1 = Hp + (f + 2) * W4 + 2;
    const int64_t j0 = yspan[2 * f], j1 = yspan[2 * f + 1];
    // Face f of column j between cell rows f - 1 and f (the edge row at the edges).
    const int64_t a = std::max<int64_t>(f - 1, 0) * nx, b = std::min<int64_t>(f, ny - 1) * nx;
    if (fields)
      glacier_native::y_face_coefficients(j0, j1, cf + a, cf + b, ny * nx, FG, FS);
    row_adjoint(nx, j0, j1, r0, r1, cx + o0, cx + o1, h0, h1, sby + o0, sby + o1, ct_q, at_max,
                share, D_out, G, K, L, R);
    if (fields)
      y_face_coefficients_adjoint(j0, j1, E5, E3, cf + a, cf + b, ct_cf + a, ct_cf + b, ny * nx,
                                  terms);
    y_face_scatter<T>(nx, G, K, L, R, gSp + f * W2 + 1, gSp + (f + 1) * W2 + 1, gcx + o0,
                      gcx + o1, gsby + o0, gsby + o1, gHp + (f + 1) * W4 + 2,
                      gHp + (f + 2) * W4 + 2);
  };
  std::fill(CA, CA + W4 + 2, T(0));
  std::fill(CB, CB + W4 + 2, T(0));
  if (y_needed(0)) y_limiters(0);
  for (int64_t f = 0; f <= ny; ++f) {
    if (y_needed(f + 1)) y_limiters(f + 1);  // into the slot of row f - 1, whose chain is done
    if (y_active(f)) {
      y_row(f, ct_qy + f * nx, T(0), T(0), Drow);
      if (ties) row_stats(nx, ymax[f], ycount[f]);
    } else if (ties) {
      ymax[f] = T(0), ycount[f] = nx;
    }
    if (y_needed(f)) y_chain(f);  // rows f of sby and cx have all their faces' cotangents now
  }
  if (y_needed(ny + 1)) y_chain(ny + 1);
  if (ties) {
    T mx = array_max(xmax, ny);  // NaN in any row: NaN
    T my = array_max(ymax, ny + 1);
    // D_max = maximum(max Dx, max Dy): the cotangent to the larger (half each at a tie),
    // shared equally by the faces equal to it. Where D holds NaN no face equals the maximum
    // and none takes it (JAX's rule gives NaN; the gradient of a blown-up run is not used).
    T ctx = (mx > my) ? ct_dmax : (mx == my) ? T(0.5) * ct_dmax : T(0);
    T cty = (my > mx) ? ct_dmax : (mx == my) ? T(0.5) * ct_dmax : T(0);
    int64_t nmx = 0, nmy = 0;
    for (int64_t i = 0; i < ny; ++i)
      nmx += glacier_native::pick(xmax[i] == mx, xcount[i], int64_t(0));
    for (int64_t f = 0; f <= ny; ++f)
      nmy += glacier_native::pick(ymax[f] == my, ycount[f], int64_t(0));
    T share_x = nmx ? ctx / T(nmx) : T(0);
    T share_y = nmy ? cty / T(nmy) : T(0);
    if (share_x != T(0))
      for (int64_t i = 0; i < ny; ++i)
        if (xmax[i] == mx && xspan[2 * i] < xspan[2 * i + 1])
          x_row(i, zero_q, mx, share_x, nullptr);
    if (share_y != T(0)) {
      std::fill(CA, CA + W4 + 2, T(0));  // the x-rows leave values past the y-rows' reach
      std::fill(CB, CB + W4 + 2, T(0));
      for (int64_t f = 0; f <= ny; ++f)
        if (ymax[f] == my && y_active(f)) {
          y_limiters(f);  // both rows' limiters, their cotangent slots zeroed
          y_limiters(f + 1);
          y_row(f, zero_q, my, share_y, nullptr);
          y_chain(f);
          y_chain(f + 1);
        }
    }
  }
  // S = pad(bed, 1, edge/wrap) + Hp[1:-1, 1:-1]; then the padding's transposes, in one pass
  // over the outputs: a row's first padded row is written (with ct_H_in added), the others
  // added, in the order of the padded rows; the rows no padded row reaches are set after.
  unsigned char* hit = grow(s.hit, ny);
  std::fill(hit, hit + ny, 0);
  for (int64_t a = sp0; a < sp1; ++a) {
    int64_t i = wrap_or_out(a - 1, ny, py);
    if (i < 0) i = std::min<int64_t>(std::max<int64_t>(a - 1, 0), ny - 1);
    const T* __restrict g = gSp + a * W2;
    T* __restrict gh = gHp + (a + 1) * W4 + 1;
    T* __restrict cb = ct_bed + i * nx;
    for (int64_t b = 0; b < W2; ++b) gh[b] += g[b];
    write_or_add<T>(hit[i], cb, g + 1, nullptr, nx);
    cb[px ? nx - 1 : 0] += g[0];
    cb[px ? 0 : nx - 1] += g[nx + 1];
  }
  fill_rest<T>(hit, ct_bed, nullptr, ny, nx);
  std::fill(hit, hit + ny, 0);
  for (int64_t a = hp0; a < hp1; ++a) {
    int64_t i = wrap_or_out(a - 2, ny, py);
    if (i < 0) continue;
    const T* __restrict g = gHp + a * W4;
    T* ch = ct_H + i * nx;  // may be ct_H_in (in place)
    write_or_add<T>(hit[i], ch, g + 2, ct_H_in ? ct_H_in + i * nx : nullptr, nx);
    for (int64_t b : {int64_t(0), int64_t(1), nx + 2, nx + 3}) {
      int64_t j = wrap_or_out(b - 2, nx, px);
      if (j >= 0) ch[j] += g[b];
    }
  }
  fill_rest<T>(hit, ct_H, ct_H_in, ny, nx);
  if (fields) return;
  T ct_gamma = T(0), ct_slide = T(0);
  for (int k = 0; k < 8; ++k) ct_gamma += c5[k], ct_slide += c3[k];
  ct_coef[0] = ct_gamma;
  ct_coef[1] = ct_slide;
}

template <ffi::DataType DT>
ffi::Error faces_vjp_impl(ffi::ThreadPool pool, ffi::Buffer<DT> H, ffi::Buffer<DT> bed, ffi::Buffer<DT> coef,
                          ffi::Buffer<DT> dmax, ffi::Buffer<DT> ct_qx, ffi::Buffer<DT> ct_qy,
                          ffi::Buffer<DT> ct_dmax, ffi::Buffer<DT> ct_H_in, double dx,
                          int64_t periodic_y, int64_t periodic_x, int64_t has_ct_in,
                          int64_t coef_fields, ffi::ResultBuffer<DT> ct_H,
                          ffi::ResultBuffer<DT> ct_bed, ffi::ResultBuffer<DT> ct_coef) {
  using T = ffi::NativeType<DT>;
  int64_t ny, nx, batch;
  if (!grid_dims(H.dimensions(), ny, nx, batch))
    return ffi::Error::InvalidArgument("H must have at least 2 dimensions");
  const int64_t per = coef_fields ? 3 * ny * nx : 2;  // coefficients per glacier
  if (bed.element_count() != H.element_count() || coef.element_count() != per * batch
      || ct_qx.element_count() != batch * ny * (nx + 1)
      || ct_qy.element_count() != batch * (ny + 1) * nx || ct_dmax.element_count() != batch
      || ct_H_in.element_count() != H.element_count())
    return ffi::Error::InvalidArgument("the faces adjoint's arguments do not fit H");
  (void)dmax;
  const std::function<void(int64_t)> one = [&](int64_t g) {
    const T* c = coef.typed_data() + per * g;
    T* ct_c = ct_coef->typed_data() + per * g;
    const bool fields = coef_fields != 0;
    faces_vjp_one<T>(H.typed_data() + g * ny * nx, bed.typed_data() + g * ny * nx,
                     fields ? T(0) : c[0], fields ? T(0) : c[1], fields ? c : nullptr, T(dx),
                     ny, nx, periodic_y != 0, periodic_x != 0,
                     ct_qx.typed_data() + g * ny * (nx + 1),
                     ct_qy.typed_data() + g * (ny + 1) * nx, ct_dmax.typed_data()[g],
                     has_ct_in ? ct_H_in.typed_data() + g * ny * nx : nullptr,
                     ct_H->typed_data() + g * ny * nx, ct_bed->typed_data() + g * ny * nx,
                     ct_c, fields ? ct_c : nullptr);
  };
  // The batch's glaciers shared with XLA's intra-op threads when together they are large
  // enough (each glacier whole on one thread).
  glacier_native::for_each_glacier(pool, glacier_native::shares_glaciers(batch, ny * nx), batch,
                                   one);
  return ffi::Error::Success();
}

}  // namespace

#define GLACIER_BIND_FACES_VJP(DT)               \
  ffi::Ffi::Bind()                               \
      .Ctx<ffi::ThreadPool>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Attr<double>("dx")                        \
      .Attr<int64_t>("periodic_y")               \
      .Attr<int64_t>("periodic_x")               \
      .Attr<int64_t>("has_ct_in")                \
      .Attr<int64_t>("coef_fields")              \
      .Ret<ffi::Buffer<DT>>()                    \
      .Ret<ffi::Buffer<DT>>()                    \
      .Ret<ffi::Buffer<DT>>()

XLA_FFI_DEFINE_HANDLER_SYMBOL(GlacierSiaFacesVjpF64, faces_vjp_impl<ffi::F64>,
                              GLACIER_BIND_FACES_VJP(ffi::F64));
XLA_FFI_DEFINE_HANDLER_SYMBOL(GlacierSiaFacesVjpF32, faces_vjp_impl<ffi::F32>,
                              GLACIER_BIND_FACES_VJP(ffi::F32));
