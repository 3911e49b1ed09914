// The reverse-mode adjoint (vector-Jacobian product) of the limiter kernel of sia_faces.cc, as
// one CPU kernel: an XLA FFI custom call, built on first use by ``physics.native``.
//
// The forward (``sia.limit_outflow`` + ``sia.flux_divergence`` + ``sia.edge_outflow``):
//   out = (max(qx_e, 0) + max(-qx_w, 0) + max(qy_n, 0) + max(-qy_s, 0)) * (dt / dx),
//   scale = min(1, H / max(out, floor))     (floor: 1e-30 in float64, 1e-6 in float32),
//   lx = qx * (qx > 0 ? scale_left : scale_right), ly likewise (ghost factors: 0, or wrapped),
//   div = (lx_e - lx_w + ly_n - ly_s) / dx,
//   edge = sum lx[:, nx] - sum lx[:, 0] + sum ly[ny, :] - sum ly[0, :].
// Given the cotangents ct_div, ct_edge it returns ct_H, ct_qx, ct_qy, ct_dt: what ``jax.vjp``
// of those XLA expressions returns, to round-off, kinks included. JAX's AD conventions decide
// the one-sided derivatives there, and this kernel takes the same:
//   - max(x, y), min(x, y): the cotangent goes to the argument equal to the result, half to
//     each at a tie (x == y): max(q, 0) at q == 0 (ice-free cells: q = 0 exactly) passes 1/2,
//     as do min(1, H / m) at H / m == 1 and max(out, floor) at out == floor;
//   - select (the donor switch qx > 0): the cotangent goes to the selected factor only, none
//     to the predicate; the flux itself takes the selected factor (also at q == 0);
//   - H / m: ct_H = ct / m and ct_m = -ct H / m^2 (JAX: -((ct * (1 / (m * m))) * H); here
//     -(ct_H * (H / m)) with the forward's ratio, one division less, equal to round-off);
//   - out = sum * (dt / dx): ct_sum = ct_out * dt / dx, ct_dt = (sum of ct_out * sum) / dx;
//   - a ghost factor copied from a cell (periodic axis) hands its cotangent back to that cell;
//     the zero ghosts of a closed edge take none.
// The adjoint is three passes over the rows of a glacier: (A) the forward's donor factors
// (with the ghost ring) and the ratios H / m; (B) the limited fluxes' cotangents from ct_div
// (the divergence's transpose, / dx) and ct_edge, the fluxes' direct part of ct_q (ct_l times
// the donor factor) and the factors' cotangents (ct_l q, to the donor cell, ghosts folded
// back); (C) per cell through min(1, H / max(out, floor)) to ct_H and ct_out, and per face
// through the four maxima and dt / dx to the rest of ct_q and to ct_dt. In each row only the
// columns of cells with ice or beside a face with a flux are walked (zero cotangents outside).
//
// The same file holds the fused adjoint of the limiter and the step's end
// (``limit_update_vjp_impl``, end of file), which makes ct_div itself in pass B, row by row.
//
// Inputs: H (..., ny, nx), qx (..., ny, nx + 1), qy (..., ny + 1, nx), dt (...), ct_div (...,
// ny, nx), ct_edge (...); attributes dx, periodic_y, periodic_x. Outputs: ct_H (..., ny, nx),
// ct_qx (..., ny, nx + 1), ct_qy (..., ny + 1, nx), ct_dt (...).
// 512-bit vectors on AVX-512 CPUs, as in sia_faces_adjoint.cc (a few per cent here). A tuning
// option only: the results are the same bit for bit.
#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
#pragma GCC target("prefer-vector-width=512")
#endif

#include <algorithm>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "sia_kernels.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using glacier_native::grid_dims;
using glacier_native::grow;

// Scratch arrays of one thread, grown when a larger grid comes.
template <typename T>
struct LimitVjpScratch {
  std::vector<T> sc, cs, ratio, g, term, flux;
  std::vector<unsigned char> alive;
  std::vector<int64_t> span;
};

// The step's end fused in (``limit_update_vjp``): its inputs besides H, div q and dt, the
// cotangents of its outputs, and where the cotangents of b and of the ice-free field go.
template <typename T>
struct StepEnd {
  const T* b;
  const T* m;  // the 0/1 ice-free field, or nullptr
  const T* ct_out;
  T ct_applied, ct_removed;
  T* ct_b;
  T* ct_m;  // nullptr without m
};

template <typename T>
LimitVjpScratch<T>& limit_vjp_scratch() {
  thread_local LimitVjpScratch<T> scratch;
  return scratch;
}

// The weight of max(x, y) towards x: 1 where x > y, 1/2 at a tie, else 0 (also for NaN), as
// two halves (two compares and masks: a nested select compiles to much more).
template <typename T>
inline T above_weight(T x, T y) {
  return ((x > y) ? T(0.5) : T(0)) + ((x >= y) ? T(0.5) : T(0));
}

// The cotangent of a face flux q through max(q, 0) (in the outflow of the cell below, whose
// outflow cotangent is lo) and max(-q, 0) (in the outflow of the cell above, hi): lo where
// q > 0, -hi where q < 0, (lo - hi) / 2 at q == 0, none for NaN; as halves, so that it
// compiles to compares, masks and adds (lo + lo and the 1/2 are exact).
template <typename T>
inline T max_pair_ct(T q, T lo, T hi) {
  return T(0.5) * ((((q > T(0)) ? lo : T(0)) + ((q >= T(0)) ? lo : T(0)))
                   - (((q < T(0)) ? hi : T(0)) + ((q <= T(0)) ? hi : T(0))));
}

// Pass A, one row of cells: the donor factors min(1, H / max(out, floor)) into s and the
// ratios H / max(out, floor) into r (the forward's expressions, bit for bit). Returns whether
// a cell with ice (or NaN) is limited, its ratio not above 1 (or NaN), so that min(1, ratio)
// passes a cotangent to it (``limit_vjp_one``'s pass C), or a flux beside it is NaN.
template <typename T>
__attribute__((noinline)) bool factor_row(int64_t n, const T* __restrict h,
                                          const T* __restrict q, const T* __restrict qlo,
                                          const T* __restrict qhi, T rate, T floor,
                                          T* __restrict s, T* __restrict r) {
  unsigned limited = 0;
  for (int64_t j = 0; j < n; ++j) {
    T out = ((((q[j + 1] > T(0)) ? q[j + 1] : T(0)) + ((-q[j] > T(0)) ? -q[j] : T(0)))
             + ((qhi[j] > T(0)) ? qhi[j] : T(0))) + ((-qlo[j] > T(0)) ? -qlo[j] : T(0));
    out = out * rate;
    T ratio = h[j] / ((out > floor) ? out : floor);
    r[j] = ratio;
    s[j] = (ratio < T(1)) ? ratio : T(1);
    limited |= unsigned(h[j] != T(0)) & unsigned(!(ratio > T(1)));
    limited |= unsigned(q[j] != q[j]) | unsigned(q[j + 1] != q[j + 1])
               | unsigned(qhi[j] != qhi[j]) | unsigned(qlo[j] != qlo[j]);
  }
  return limited != 0;
}

// Pass B, one row of n + 1 x-faces: ct_l[f] = g[f] - g[f + 1] (g: the row's ct_div / dx with
// -ct_edge at both ends, which is the edge outflow's -ct_edge at face 0 and +ct_edge at face
// n); the direct part of ct_q into o, and the donor factors' cotangents (ct_l q, to the cell
// the flux leaves) assigned to the row's cells c[0 .. n) (cell j: c[j]), those of the two
// ghosts returned in c[-1] (left of face 0) and c[n] (right of face n).
template <typename T>
__attribute__((noinline)) void x_face_row(int64_t n, const T* __restrict q,
                                          const T* __restrict s, const T* __restrict g,
                                          T* __restrict o, T* __restrict p,
                                          T* __restrict c) {
  for (int64_t f = 0; f <= n; ++f) {
    T ct = g[f] - g[f + 1];
    o[f] = ct * glacier_native::pick(q[f] > T(0), s[f], s[f + 1]);
    p[f] = ct * q[f];
  }
  // Cell j: the flux of face j + 1 leaves it towards +, that of face j towards -.
  for (int64_t j = 0; j < n; ++j)
    c[j] = glacier_native::pick(q[j + 1] > T(0), p[j + 1], T(0)) +
           glacier_native::pick(q[j] > T(0), T(0), p[j]);
  c[-1] = (q[0] > T(0)) ? p[0] : T(0);
  c[n] = (q[n] > T(0)) ? T(0) : p[n];
}

// Whether a cell of a row's [0, n) has a flux leaving it (or a NaN one): with no ice, its
// factor 0 would pass that flux's cotangent on (``limit_vjp_one``'s pass A).
template <typename T>
__attribute__((noinline)) bool outflow_row(int64_t n, const T* __restrict q,
                                           const T* __restrict qlo, const T* __restrict qhi) {
  unsigned any = 0;
  for (int64_t j = 0; j < n; ++j)
    any |= unsigned(!(q[j + 1] <= T(0))) | unsigned(!(q[j] >= T(0)))
           | unsigned(!(qhi[j] <= T(0))) | unsigned(!(qlo[j] >= T(0)));
  return any != 0;
}

// Pass B without the factors' cotangents (no cell limited: pass C has nothing to pass on),
// one row of n + 1 x-faces: the direct part of ct_q only, as ``x_face_row``.
template <typename T>
__attribute__((noinline)) void x_face_row_direct(int64_t n, const T* __restrict q,
                                                 const T* __restrict s, const T* __restrict g,
                                                 T* __restrict o) {
  for (int64_t f = 0; f <= n; ++f)
    o[f] = (g[f] - g[f + 1]) * glacier_native::pick(q[f] > T(0), s[f], s[f + 1]);
}

// The same for a row of y-faces, as ``y_face_row``.
template <typename T>
__attribute__((noinline)) void y_face_row_direct(int64_t n, const T* __restrict q,
                                                 const T* __restrict slo,
                                                 const T* __restrict shi,
                                                 const T* __restrict glo,
                                                 const T* __restrict ghi, T* __restrict o) {
  for (int64_t j = 0; j < n; ++j)
    o[j] = (glo[j] - ghi[j]) * glacier_native::pick(q[j] > T(0), slo[j], shi[j]);
}

// Pass B, one row of y-faces between the cells below (factors slo, cotangents clo) and above
// (shi, chi): ct_l = glo - ghi, the direct part of ct_q into o, ct_l q added to the donor's.
template <typename T>
__attribute__((noinline)) void y_face_row(int64_t n, const T* __restrict q,
                                          const T* __restrict slo, const T* __restrict shi,
                                          const T* __restrict glo, const T* __restrict ghi,
                                          T* __restrict o, T* __restrict clo,
                                          T* __restrict chi) {
  for (int64_t j = 0; j < n; ++j) {
    T ct = glo[j] - ghi[j];
    bool up = q[j] > T(0);
    o[j] = ct * glacier_native::pick(up, slo[j], shi[j]);
    T w = ct * q[j];
    clo[j] += up ? w : T(0);
    chi[j] += up ? T(0) : w;
  }
}

// Pass C, one row of cells: from the factors' cotangents c (overwritten with the outflow
// sums' cotangents ct_out * dt / dx) to ct_H (oh; ``Add``: added to it); ct_out times the
// outflow sum into t (for ct_dt).
template <typename T, bool Add>
__attribute__((noinline)) void cell_row(int64_t n, const T* __restrict q,
                                        const T* __restrict qlo, const T* __restrict qhi,
                                        const T* __restrict r, T rate, T floor,
                                        T* __restrict c, T* __restrict oh, T* __restrict t) {
  for (int64_t j = 0; j < n; ++j) {
    T sum = ((((q[j + 1] > T(0)) ? q[j + 1] : T(0)) + ((-q[j] > T(0)) ? -q[j] : T(0)))
             + ((qhi[j] > T(0)) ? qhi[j] : T(0))) + ((-qlo[j] > T(0)) ? -qlo[j] : T(0));
    T out = sum * rate;
    T m = (out > floor) ? out : floor;
    T ratio = r[j];
    // min(1, ratio): weight 1 below 1, 1/2 at 1; max(out, floor): 1 above, 1/2 at the floor.
    T w_ratio = above_weight(T(1), ratio);
    T w_out = above_weight(out, floor);
    T ct_ratio = c[j] * w_ratio;
    T ct_h = ct_ratio / m;
    oh[j] = Add ? oh[j] + ct_h : ct_h;
    T ct_m = -(ct_h * ratio);  // JAX: -((ct_ratio * (1 / (m * m))) * H), one division less
    T ct_out = ct_m * w_out;
    t[j] = ct_out * sum;
    c[j] = ct_out * rate;
  }
}

// Pass C, one row of x-faces: face f is max(q, 0) of cell f - 1 (c[f - 1]) and max(-q, 0) of
// cell f (c[f]); c[-1] and c[n] are zero ghosts.
template <typename T>
__attribute__((noinline)) void x_max_row(int64_t n, const T* __restrict q,
                                         const T* __restrict c, T* __restrict o) {
  for (int64_t f = 0; f <= n; ++f)
    o[f] += max_pair_ct(q[f], c[f - 1], c[f]);
}

// Pass C, one row of y-faces between the cells below (clo) and above (chi).
template <typename T>
__attribute__((noinline)) void y_max_row(int64_t n, const T* __restrict q,
                                         const T* __restrict clo, const T* __restrict chi,
                                         T* __restrict o) {
  for (int64_t j = 0; j < n; ++j) o[j] += max_pair_ct(q[j], clo[j], chi[j]);
}

// Sum of a row into 8 lanes (a vectorisable loop: a scalar sum is not vectorised without
// reassociation).
template <typename T>
inline void lane_sum(const T* __restrict t, int64_t n, T* __restrict acc8) {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) acc8[k] += t[j + k];
  for (; j < n; ++j) acc8[0] += t[j];
}

// ``end`` (the fused adjoint of the limiter and the step's end): ct_div is not given but
// made row by row, from the step end's adjoint (``glacier_native::update_vjp_cells``) at the
// row's div q, which is made as the forward makes it (the limited fluxes of the donor
// factors of pass A, bit for bit); ct_H and ct_dt then take both parts.
template <typename T>
void limit_vjp_one(const T* H, const T* qx, const T* qy, T dt, const T* ct_div, T ct_edge,
                   T dx, int64_t ny, int64_t nx, bool py, bool px, T* ct_H, T* ct_qx,
                   T* ct_qy, T* ct_dt, const StepEnd<T>* end = nullptr) {
  const T floor = sizeof(T) == 8 ? T(1e-30) : T(1e-6);
  const T rate = dt / dx;
  const T inv_dx = T(1) / dx;
  const int64_t W = nx + 2;
  LimitVjpScratch<T>& scratch = limit_vjp_scratch<T>();
  T* sc = grow(scratch.sc, (ny + 2) * W);  // donor factors with a ghost ring
  T* cs = grow(scratch.cs, (ny + 2) * W);  // their cotangents, then the outflows'
  T* ratio = grow(scratch.ratio, ny * nx);
  T* g = grow(scratch.g, 3 * W);  // rows of ct_div / dx: previous, current, edge-only
  T* term = grow(scratch.term, nx + 1);  // a row of faces or cells
  // Rows of ice-free cells whose faces carry no flux are skipped: their factors are
  // min(1, 0 / m) = 0, so their limited fluxes (q times 0) and the factors' cotangents (the
  // limited fluxes' cotangents times q = 0) are zero, and so is what they give to H, to q and
  // to dt. A row of y-faces is walked when a row beside it is. (With the face kernel's fluxes
  // a flux leaves only a cell with ice, so ice-free ground away from the margin is skipped.)
  //
  // Within a row, the columns [a, b) of the cells that hold ice or border a face with a flux
  // are walked (``span``), the same argument cell by cell: outside them a cell's factor is 0,
  // and so is every cotangent it would give or take. The x-faces a .. b are walked (those of
  // the cells a .. b - 1), a row of y-faces on the union of its two rows' columns. (On a
  // periodic grid, where ghosts fold back, an alive row is walked whole.)
  unsigned char* alive = grow(scratch.alive, ny);
  int64_t* span = grow(scratch.span, 2 * ny);
  const bool whole = px || py;
  for (int64_t i = 0; i < ny; ++i) {  // NaN counts
    int64_t a = nx, b = 0, lo, hi;
    auto add = [&](int64_t l, int64_t h) {
      if (l < h) {
        a = std::min(a, std::max<int64_t>(l, 0));
        b = std::max(b, std::min(h, nx));
      }
    };
    glacier_native::ice_span(H + i * nx, nx, lo, hi);
    add(lo, hi);
    glacier_native::ice_span(qx + i * (nx + 1), nx + 1, lo, hi);
    add(lo - 1, hi);  // face f: cells f - 1 and f
    glacier_native::ice_span(qy + i * nx, nx, lo, hi);  // y-faces below
    add(lo, hi);
    glacier_native::ice_span(qy + (i + 1) * nx, nx, lo, hi);  // and above
    add(lo, hi);
    alive[i] = a < b;
    if (!alive[i] || whole) a = 0, b = alive[i] ? nx : 0;
    span[2 * i] = a;
    span[2 * i + 1] = b;
  }
  // The columns [j0, j1) of y-face row f: the union of its alive rows' spans.
  auto y_columns = [&](int64_t f, int64_t& j0, int64_t& j1) {
    const int64_t below = (f > 0) ? f - 1 : (py ? ny - 1 : -1);
    const int64_t above = (f < ny) ? f : (py ? 0 : -1);
    j0 = nx;
    j1 = 0;
    for (int64_t r : {below, above})
      if (r >= 0 && alive[r]) {
        j0 = std::min(j0, span[2 * r]);
        j1 = std::max(j1, span[2 * r + 1]);
      }
  };

  // (A) The donor factors, as the forward: ghosts 0, or wrapped. ``limited``: whether any
  // cell with ice is limited (``factor_row``) or a flux leaves a cell without ice
  // (``outflow_row``). When neither (the common case: the limiter acts only where a step
  // would empty a cell), every factor is 1 where there is ice and 0 where there is none, and
  // no factor passes a cotangent on: min(1, ratio) has none for a ratio above 1, and the
  // factor of a cell without ice takes the cotangents of the fluxes leaving it times those
  // fluxes, zero (the face kernel's fluxes never leave such a cell: its MUSCL state is 0, as
  // H is at a minimum there and its superbee correction is 0 too). Then pass B keeps only
  // the fluxes' direct part and pass C is skipped: the same cotangents (the signs of their
  // zeros aside), without the factors' cotangents or the adjoint of the outflow sums.
  bool limited = false;
  std::fill(sc, sc + W, T(0));
  std::fill(sc + (ny + 1) * W, sc + (ny + 2) * W, T(0));
  for (int64_t i = 0; i < ny; ++i) {
    sc[(i + 1) * W] = sc[(i + 1) * W + nx + 1] = T(0);
    if (!alive[i]) {  // H = 0: factor min(1, 0 / m) = 0
      std::fill(sc + (i + 1) * W + 1, sc + (i + 1) * W + 1 + nx, T(0));
      continue;
    }
    // Cells without ice: factor and ratio 0 / m = 0 (as in the forward kernel, only the
    // row's ice [lo, hi) pays the division).
    int64_t lo, hi;
    glacier_native::ice_span(H + i * nx, nx, lo, hi);
    if (lo >= hi) lo = hi = 0;
    T* s = sc + (i + 1) * W + 1;
    T* r = ratio + i * nx;
    std::fill(s, s + lo, T(0));
    std::fill(s + hi, s + nx, T(0));
    std::fill(r, r + lo, T(0));
    std::fill(r + hi, r + nx, T(0));
    limited |= factor_row<T>(hi - lo, H + i * nx + lo, qx + i * (nx + 1) + lo,
                             qy + i * nx + lo, qy + (i + 1) * nx + lo, rate, floor, s + lo,
                             r + lo);
    // The cells of the walked columns [a, b) without ice (outside [lo, hi); a cell outside
    // [a, b) has no flux on its faces).
    const int64_t a = span[2 * i], b = span[2 * i + 1], c = std::max(hi, a);
    if (!limited && a < lo)
      limited = outflow_row<T>(lo - a, qx + i * (nx + 1) + a, qy + i * nx + a,
                               qy + (i + 1) * nx + a);
    if (!limited && c < b)
      limited = outflow_row<T>(b - c, qx + i * (nx + 1) + c, qy + i * nx + c,
                               qy + (i + 1) * nx + c);
  }
  if (px)
    for (int64_t i = 1; i <= ny; ++i) {
      sc[i * W] = sc[i * W + nx];
      sc[i * W + nx + 1] = sc[i * W + 1];
    }
  if (py) {
    std::copy(sc + ny * W + 1, sc + ny * W + 1 + nx, sc + 1);
    std::copy(sc + 1 * W + 1, sc + 1 * W + 1 + nx, sc + (ny + 1) * W + 1);
  }

  // (B) Cotangents of the limited fluxes. g rows hold ct_div / dx in [1, nx] and -ct_edge in
  // the two ends; the edge-only row (all -ct_edge) stands for the rows of cells outside the
  // domain, so that y-face 0 gets -ct_edge and y-face ny +ct_edge (the edge outflow's terms).
  T* g_prev = g;
  T* g_cur = g + W;
  T* g_edge = g + 2 * W;
  std::fill(g_edge, g_edge + W, -ct_edge);
  std::fill(cs, cs + W, T(0));
  std::fill(cs + (ny + 1) * W, cs + (ny + 2) * W, T(0));
  T* flux = end ? grow(scratch.flux, 6 * nx + 1) : nullptr;  // lx, ly below and above, div,
  T end_dt = T(0);                                            // ct_div: one row each
  for (int64_t i = 0; i < ny; ++i) {
    const T* __restrict cd = end ? nullptr : ct_div + i * nx;
    if (end) {
      T* lx = flux;
      T* lo = lx + nx + 1;
      T* hi = lo + nx;
      T* dv = hi + nx;
      T* cdv = dv + nx;
      if (alive[i]) {  // as limit_one in sia_faces.cc
        glacier_native::donor_row<T>(nx + 1, qx + i * (nx + 1), sc + (i + 1) * W,
                                     sc + (i + 1) * W + 1, lx);
        glacier_native::donor_row<T>(nx, qy + i * nx, sc + i * W + 1, sc + (i + 1) * W + 1, lo);
        glacier_native::donor_row<T>(nx, qy + (i + 1) * nx, sc + (i + 1) * W + 1,
                                     sc + (i + 2) * W + 1, hi);
        glacier_native::divergence_row<T>(nx, lx, lo, hi, inv_dx, dv);
      } else {
        std::fill(dv, dv + nx, T(0));
      }
      T acc = T(0);
      if (end->m)
        glacier_native::update_vjp_cells<T, true>(
            nx, H + i * nx, dv, dt, end->b + i * nx, end->m + i * nx, end->ct_out + i * nx,
            end->ct_applied, end->ct_removed, ct_H + i * nx, cdv, end->ct_b + i * nx,
            end->ct_m + i * nx, &acc);
      else
        glacier_native::update_vjp_cells<T, false>(
            nx, H + i * nx, dv, dt, end->b + i * nx, nullptr, end->ct_out + i * nx,
            end->ct_applied, end->ct_removed, ct_H + i * nx, cdv, end->ct_b + i * nx, nullptr,
            &acc);
      end_dt += acc;
      cd = cdv;
    }
    g_cur[0] = g_cur[nx + 1] = -ct_edge;
    for (int64_t j = 0; j < nx; ++j) g_cur[j + 1] = cd[j] * inv_dx;
    T* c = cs + (i + 1) * W + 1;
    const int64_t a = span[2 * i], b = span[2 * i + 1];
    T* oq = ct_qx + i * (nx + 1);
    if (a >= b) {
      std::fill(oq, oq + nx + 1, T(0));
    } else {
      std::fill(oq, oq + a, T(0));
      std::fill(oq + b + 1, oq + nx + 1, T(0));
    }
    if (!limited) {  // the fluxes' direct part only (see pass A)
      if (a < b)
        x_face_row_direct<T>(b - a, qx + i * (nx + 1) + a, sc + (i + 1) * W + a, g_cur + a,
                             oq + a);
    } else {
      std::fill(c, c + a, T(0));
      std::fill(c + b, c + nx, T(0));
      if (a < b) {
        // Faces a .. b; the cells a - 1 and b it returns as ghosts are outside the span,
        // where no flux leaves a cell: zero (or, periodic, the ghosts that fold back).
        x_face_row<T>(b - a, qx + i * (nx + 1) + a, sc + (i + 1) * W + a, g_cur + a, oq + a,
                      term, c + a);
        if (px) {  // the ghosts' factors were copies of cells nx - 1 and 0
          c[nx - 1] += c[-1];
          c[0] += c[nx];
        }
        if (a > 0) c[a - 1] = T(0);
        if (b < nx) c[b] = T(0);
      }
      c[-1] = c[nx] = T(0);  // zero ghosts for pass C
    }
    int64_t j0, j1;
    y_columns(i, j0, j1);
    T* oy = ct_qy + i * nx;
    std::fill(oy, oy + std::min(j0, nx), T(0));
    std::fill(oy + std::max(j1, j0), oy + nx, T(0));
    const T* glo = (i == 0 ? g_edge : g_prev) + 1 + j0;
    if (j0 < j1 && !limited)
      y_face_row_direct<T>(j1 - j0, qy + i * nx + j0, sc + i * W + 1 + j0,
                           sc + (i + 1) * W + 1 + j0, glo, g_cur + 1 + j0, oy + j0);
    else if (j0 < j1)
      y_face_row<T>(j1 - j0, qy + i * nx + j0, sc + i * W + 1 + j0, sc + (i + 1) * W + 1 + j0,
                    glo, g_cur + 1 + j0, oy + j0, cs + i * W + 1 + j0, c + j0);
    std::swap(g_prev, g_cur);
  }
  {
    int64_t j0, j1;
    y_columns(ny, j0, j1);
    T* oy = ct_qy + ny * nx;
    std::fill(oy, oy + std::min(j0, nx), T(0));
    std::fill(oy + std::max(j1, j0), oy + nx, T(0));
    if (j0 < j1 && !limited)
      y_face_row_direct<T>(j1 - j0, qy + ny * nx + j0, sc + ny * W + 1 + j0,
                           sc + (ny + 1) * W + 1 + j0, g_prev + 1 + j0, g_edge + 1 + j0,
                           oy + j0);
    else if (j0 < j1)
      y_face_row<T>(j1 - j0, qy + ny * nx + j0, sc + ny * W + 1 + j0,
                    sc + (ny + 1) * W + 1 + j0, g_prev + 1 + j0, g_edge + 1 + j0, oy + j0,
                    cs + ny * W + 1 + j0, cs + (ny + 1) * W + 1 + j0);
  }
  if (!limited) {  // no pass C: no cotangent through the factors (see pass A)
    if (!end) std::fill(ct_H, ct_H + ny * nx, T(0));
    *ct_dt = T(0) / dx + end_dt;
    return;
  }
  if (py) {  // the ghost rows' factors were copies of rows ny - 1 and 0
    T* top = cs + ny * W + 1;
    T* bottom = cs + 1 * W + 1;
    const T* below = cs + 1;
    const T* above = cs + (ny + 1) * W + 1;
    for (int64_t j = 0; j < nx; ++j) top[j] += below[j];
    for (int64_t j = 0; j < nx; ++j) bottom[j] += above[j];
  }
  std::fill(cs, cs + W, T(0));
  std::fill(cs + (ny + 1) * W, cs + (ny + 2) * W, T(0));

  // (C) Through the factors to ct_H and the outflows, then through the maxima to ct_q.
  T acc8[8] = {T(0), T(0), T(0), T(0), T(0), T(0), T(0), T(0)};
  for (int64_t i = 0; i < ny; ++i) {
    const T* q = qx + i * (nx + 1);
    T* c = cs + (i + 1) * W + 1;
    const int64_t a = span[2 * i], b = span[2 * i + 1];
    T* oh = ct_H + i * nx;
    if (!end) {  // outside the span c stays 0: no cotangent of the outflow
      std::fill(oh, oh + a, T(0));
      std::fill(oh + b, oh + nx, T(0));
    }
    if (a < b) {
      if (end)
        cell_row<T, true>(b - a, q + a, qy + i * nx + a, qy + (i + 1) * nx + a,
                          ratio + i * nx + a, rate, floor, c + a, oh + a, term);
      else
        cell_row<T, false>(b - a, q + a, qy + i * nx + a, qy + (i + 1) * nx + a,
                           ratio + i * nx + a, rate, floor, c + a, oh + a, term);
      lane_sum(term, b - a, acc8);
      x_max_row<T>(b - a, q + a, c + a, ct_qx + i * (nx + 1) + a);
    }
    int64_t j0, j1;
    y_columns(i, j0, j1);
    if (j0 < j1)
      y_max_row<T>(j1 - j0, qy + i * nx + j0, cs + i * W + 1 + j0, c + j0,
                   ct_qy + i * nx + j0);
  }
  {
    int64_t j0, j1;
    y_columns(ny, j0, j1);
    if (j0 < j1)
      y_max_row<T>(j1 - j0, qy + ny * nx + j0, cs + ny * W + 1 + j0,
                   cs + (ny + 1) * W + 1 + j0, ct_qy + ny * nx + j0);
  }
  T total = T(0);
  for (int k = 0; k < 8; ++k) total += acc8[k];
  *ct_dt = total / dx + end_dt;
}

template <ffi::DataType DT>
ffi::Error limit_vjp_impl(ffi::ThreadPool pool, ffi::Buffer<DT> H, ffi::Buffer<DT> qx, ffi::Buffer<DT> qy,
                          ffi::Buffer<DT> dt, ffi::Buffer<DT> ct_div, ffi::Buffer<DT> ct_edge,
                          double dx, int64_t periodic_y, int64_t periodic_x,
                          ffi::ResultBuffer<DT> ct_H, ffi::ResultBuffer<DT> ct_qx,
                          ffi::ResultBuffer<DT> ct_qy, ffi::ResultBuffer<DT> ct_dt) {
  using T = ffi::NativeType<DT>;
  int64_t ny, nx, batch;
  if (!grid_dims(H.dimensions(), ny, nx, batch))
    return ffi::Error::InvalidArgument("H must have at least 2 dimensions");
  auto count = [](const auto& buffer) { return static_cast<int64_t>(buffer.element_count()); };
  if (count(qx) != batch * ny * (nx + 1) || count(qy) != batch * (ny + 1) * nx
      || count(dt) != batch || count(ct_div) != batch * ny * nx || count(ct_edge) != batch)
    return ffi::Error::InvalidArgument("qx, qy, dt, ct_div and ct_edge must fit H");
  if (ny == 0 || nx == 0) {  // no cells: no factor, no flux that a cotangent reaches
    for (auto* out : {&ct_H, &ct_qx, &ct_qy, &ct_dt})
      std::fill((*out)->typed_data(), (*out)->typed_data() + (*out)->element_count(), T(0));
    return ffi::Error::Success();
  }
  const std::function<void(int64_t)> one = [&](int64_t g) {
    limit_vjp_one<T>(H.typed_data() + g * ny * nx, qx.typed_data() + g * ny * (nx + 1),
                     qy.typed_data() + g * (ny + 1) * nx, dt.typed_data()[g],
                     ct_div.typed_data() + g * ny * nx, ct_edge.typed_data()[g], T(dx), ny, nx,
                     periodic_y != 0, periodic_x != 0, ct_H->typed_data() + g * ny * nx,
                     ct_qx->typed_data() + g * ny * (nx + 1),
                     ct_qy->typed_data() + g * (ny + 1) * nx, ct_dt->typed_data() + g);
  };
  // The batch's glaciers shared with XLA's intra-op threads when together they are large
  // enough (each glacier whole on one thread).
  glacier_native::for_each_glacier(pool, glacier_native::shares_glaciers(batch, ny * nx), batch,
                                   one);
  return ffi::Error::Success();
}

// The fused adjoint of the limiter and the step's end (``native.limited_step_end_native``):
// the step's end H_new, applied, removed = update(H, div, dt, b, ice_free) at div, edge =
// limit(H, qx, qy, dt), differentiated in one call that remakes div q row by row instead of
// keeping it (so that reverse mode need not rerun the limiter kernel), ct_div never leaving
// the row. Inputs: H, qx, qy, dt, b, ice_free (H stands in without one), ct_edge, ct_out,
// ct_applied, ct_removed; attributes dx, periodic_y, periodic_x, has_ice_free. Outputs:
// ct_H, ct_qx, ct_qy, ct_dt, ct_b, ct_ice_free (zeros without one).
template <ffi::DataType DT>
ffi::Error limit_update_vjp_impl(
    ffi::ThreadPool pool, ffi::Buffer<DT> H, ffi::Buffer<DT> qx, ffi::Buffer<DT> qy,
    ffi::Buffer<DT> dt, ffi::Buffer<DT> b, ffi::Buffer<DT> ice_free, ffi::Buffer<DT> ct_edge,
    ffi::Buffer<DT> ct_out, ffi::Buffer<DT> ct_applied, ffi::Buffer<DT> ct_removed, double dx,
    int64_t periodic_y, int64_t periodic_x, int64_t has_ice_free, ffi::ResultBuffer<DT> ct_H,
    ffi::ResultBuffer<DT> ct_qx, ffi::ResultBuffer<DT> ct_qy, ffi::ResultBuffer<DT> ct_dt,
    ffi::ResultBuffer<DT> ct_b, ffi::ResultBuffer<DT> ct_m) {
  using T = ffi::NativeType<DT>;
  int64_t ny, nx, batch;
  if (!grid_dims(H.dimensions(), ny, nx, batch))
    return ffi::Error::InvalidArgument("H must have at least 2 dimensions");
  auto count = [](const auto& buffer) { return static_cast<int64_t>(buffer.element_count()); };
  const int64_t n = ny * nx;
  if (count(qx) != batch * ny * (nx + 1) || count(qy) != batch * (ny + 1) * nx
      || count(dt) != batch || count(b) != batch * n || count(ice_free) != batch * n
      || count(ct_edge) != batch || count(ct_out) != batch * n || count(ct_applied) != batch
      || count(ct_removed) != batch)
    return ffi::Error::InvalidArgument("the fused adjoint's arguments do not fit H");
  if (has_ice_free == 0)  // the stand-in field (H) takes no cotangent
    std::fill(ct_m->typed_data(), ct_m->typed_data() + ct_m->element_count(), T(0));
  if (ny == 0 || nx == 0) {
    for (auto* out : {&ct_H, &ct_qx, &ct_qy, &ct_dt, &ct_b, &ct_m})
      std::fill((*out)->typed_data(), (*out)->typed_data() + (*out)->element_count(), T(0));
    return ffi::Error::Success();
  }
  const std::function<void(int64_t)> one = [&](int64_t g) {
    StepEnd<T> end{b.typed_data() + g * n,
                   has_ice_free != 0 ? ice_free.typed_data() + g * n : nullptr,
                   ct_out.typed_data() + g * n, ct_applied.typed_data()[g],
                   ct_removed.typed_data()[g], ct_b->typed_data() + g * n,
                   has_ice_free != 0 ? ct_m->typed_data() + g * n : nullptr};
    limit_vjp_one<T>(H.typed_data() + g * n, qx.typed_data() + g * ny * (nx + 1),
                     qy.typed_data() + g * (ny + 1) * nx, dt.typed_data()[g], nullptr,
                     ct_edge.typed_data()[g], T(dx), ny, nx, periodic_y != 0, periodic_x != 0,
                     ct_H->typed_data() + g * n, ct_qx->typed_data() + g * ny * (nx + 1),
                     ct_qy->typed_data() + g * (ny + 1) * nx, ct_dt->typed_data() + g, &end);
  };
  glacier_native::for_each_glacier(pool, glacier_native::shares_glaciers(batch, n), batch, one);
  return ffi::Error::Success();
}

}  // namespace

#define GLACIER_BIND_LIMIT_VJP(DT)               \
  ffi::Ffi::Bind()                               \
      .Ctx<ffi::ThreadPool>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Attr<double>("dx")                        \
      .Attr<int64_t>("periodic_y")               \
      .Attr<int64_t>("periodic_x")               \
      .Ret<ffi::Buffer<DT>>()                    \
      .Ret<ffi::Buffer<DT>>()                    \
      .Ret<ffi::Buffer<DT>>()                    \
      .Ret<ffi::Buffer<DT>>()

XLA_FFI_DEFINE_HANDLER_SYMBOL(GlacierSiaLimitVjpF64, limit_vjp_impl<ffi::F64>,
                              GLACIER_BIND_LIMIT_VJP(ffi::F64));
XLA_FFI_DEFINE_HANDLER_SYMBOL(GlacierSiaLimitVjpF32, limit_vjp_impl<ffi::F32>,
                              GLACIER_BIND_LIMIT_VJP(ffi::F32));

#define GLACIER_BIND_LIMIT_UPDATE_VJP(DT)        \
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
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Attr<double>("dx")                        \
      .Attr<int64_t>("periodic_y")               \
      .Attr<int64_t>("periodic_x")               \
      .Attr<int64_t>("has_ice_free")             \
      .Ret<ffi::Buffer<DT>>()                    \
      .Ret<ffi::Buffer<DT>>()                    \
      .Ret<ffi::Buffer<DT>>()                    \
      .Ret<ffi::Buffer<DT>>()                    \
      .Ret<ffi::Buffer<DT>>()                    \
      .Ret<ffi::Buffer<DT>>()

XLA_FFI_DEFINE_HANDLER_SYMBOL(GlacierSiaLimitUpdateVjpF64, limit_update_vjp_impl<ffi::F64>,
                              GLACIER_BIND_LIMIT_UPDATE_VJP(ffi::F64));
XLA_FFI_DEFINE_HANDLER_SYMBOL(GlacierSiaLimitUpdateVjpF32, limit_update_vjp_impl<ffi::F32>,
                              GLACIER_BIND_LIMIT_UPDATE_VJP(ffi::F32));
