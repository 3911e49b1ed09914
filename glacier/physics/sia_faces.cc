// The SIA face fluxes of ``physics.sia.fluxes`` for Glen's law (n = 3, scalar A and sliding)
// as one CPU kernel: an XLA FFI custom call, built on first use by ``physics.native``.
//
// Same expressions as ``physics.faces.face_states_autodiff`` and ``sia.glen_diffusivity_parts``
// (MUSCL-superbee thickness from the upstream side, monotonised-central cross slopes, D =
// gamma H^5 |grad S|^2 + slide H^3 |grad S|^2, q = -D dS/dn), computed in one pass with the
// cell limiters evaluated once per cell and plain (not NaN-propagating) min and max inside the
// limiters. What XLA spends on its NaN-preserving min/max, on minor-axis pads and on
// recomputing each cell's limiter for both of its faces is what this kernel saves. NaN or Inf
// in the input still reaches D_max, which is what the solver's blow-up check reads.
//
// Inputs: H (..., ny, nx), bed (..., ny, nx), coef (..., 2) = (gamma, slide) [per batch
// element]; attributes dx, periodic_y, periodic_x. Outputs: qx (..., ny, nx + 1),
// qy (..., ny + 1, nx), dmax (...).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

template <typename T>
inline T minmod(T a, T b) {
  return (a * b > T(0)) ? ((std::fabs(a) < std::fabs(b)) ? a : b) : T(0);
}

template <typename T>
inline T mc_slope(T a, T b) {
  return minmod(T(0.5) * (a + b), T(2) * minmod(a, b));
}

template <typename T>
inline T superbee_slope(T a, T b) {
  T aa = std::fabs(a), ab = std::fabs(b);
  T m1 = std::min(T(2) * aa, ab), m2 = std::min(aa, T(2) * ab);
  T mag = std::max(m1, m2);
  return (a * b > T(0)) ? std::copysign(mag, b) : T(0);
}

// Running maxima of a row in 8 lanes (a vectorisable loop: a scalar max reduction is not
// vectorised without -ffinite-math-only), and NaN seen in any lane.
template <typename T>
inline void lane_max(const T* d, int64_t n, T* m8, T* nan8) {
  int64_t f = 0;
  for (; f + 8 <= n; f += 8)
    for (int k = 0; k < 8; ++k) {
      T v = d[f + k];
      m8[k] = (v > m8[k]) ? v : m8[k];
      nan8[k] += v * T(0);  // NaN (or Inf) makes it NaN
    }
  for (; f < n; ++f) {
    T v = d[f];
    m8[0] = (v > m8[0]) ? v : m8[0];
    nan8[0] += v * T(0);
  }
}

// One row of faces: the face between a low and a high cell, from their surfaces, cross
// slopes, thicknesses and superbee corrections; flux into q, diffusivity into d.
template <typename T>
__attribute__((noinline)) void face_row(
    int64_t n, const T* __restrict s_lo, const T* __restrict s_hi, const T* __restrict c_lo,
    const T* __restrict c_hi, const T* __restrict h_lo, const T* __restrict h_hi,
    const T* __restrict sb_lo, const T* __restrict sb_hi, T gamma, T slide, T inv_dx,
    T* __restrict q, T* __restrict d) {
  for (int64_t f = 0; f < n; ++f) {
    T grad = (s_hi[f] - s_lo[f]) * inv_dx;
    T cross = T(0.5) * (c_lo[f] + c_hi[f]);
    T s2 = grad * grad + cross * cross;
    T Hl = h_lo[f] + sb_lo[f];  // the low cell's MUSCL state at the face
    T Hr = h_hi[f] - sb_hi[f];  // the high cell's
    T Hu = (grad <= T(0)) ? Hl : Hr;  // flow towards + takes the low side's
    T H2 = Hu * Hu, H3 = H2 * Hu;
    T D = gamma * (H3 * H2) * s2 + slide * H3 * s2;
    q[f] = -D * grad;
    d[f] = D;
  }
}

// Index of a ghost-padded coordinate k in [-g, n + g) into [0, n): wrapped, or -1 (outside).
inline int64_t wrap_or_out(int64_t k, int64_t n, bool periodic) {
  if (k >= 0 && k < n) return k;
  if (!periodic) return -1;
  return ((k % n) + n) % n;
}

template <typename T>
void faces_one(const T* H, const T* bed, T gamma, T slide, T dx, int64_t ny, int64_t nx,
               bool py, bool px, T* qx, T* qy, T* dmax_out) {
  // Padded thickness (2 ghosts, zero or wrapped) and surface (1 ghost: the edge cell's bed
  // with no ice, or wrapped).
  const int64_t W = nx + 4, Hh = ny + 4;
  thread_local std::vector<T> Hp, Sp, cx, cy, sbx, sby, drow;
  Hp.resize(static_cast<size_t>(W * Hh));
  for (int64_t a = 0; a < Hh; ++a) {
    T* row = &Hp[a * W];
    int64_t i = wrap_or_out(a - 2, ny, py);
    if (i < 0) {
      std::fill(row, row + W, T(0));
      continue;
    }
    const T* src = H + i * nx;
    std::copy(src, src + nx, row + 2);
    row[0] = px ? src[((nx - 2) % nx + nx) % nx] : T(0);
    row[1] = px ? src[nx - 1] : T(0);
    row[nx + 2] = px ? src[0] : T(0);
    row[nx + 3] = px ? src[1 % nx] : T(0);
  }
  const int64_t SW = nx + 2, SH = ny + 2;
  Sp.resize(static_cast<size_t>(SW * SH));
  for (int64_t a = 0; a < SH; ++a) {
    int64_t i = wrap_or_out(a - 1, ny, py);
    if (i < 0) i = std::min<int64_t>(std::max<int64_t>(a - 1, 0), ny - 1);
    const T* b = bed + i * nx;
    const T* h = &Hp[(a + 1) * W + 1];
    T* row = &Sp[a * SW];
    for (int64_t j = 0; j < nx; ++j) row[j + 1] = b[j] + h[j + 1];
    row[0] = (px ? b[nx - 1] : b[0]) + h[0];
    row[nx + 1] = (px ? b[0] : b[nx - 1]) + h[nx + 1];
  }
  // Cell limiters, once per cell. cx: (ny + 2, nx) x-slopes on the surface's rows a;
  // cy: (ny, nx + 2) y-slopes on its columns b. sbx: (ny, nx + 2) superbee corrections along
  // x of padded cells 1 .. nx + 2; sby: (ny + 2, nx) along y.
  const T inv_dx = T(1) / dx;
  cx.resize(static_cast<size_t>(SH * nx));
  cy.resize(static_cast<size_t>(ny * SW));
  for (int64_t a = 0; a < SH; ++a) {
    const T* s = &Sp[a * SW];
    T* c = &cx[a * nx];
    for (int64_t j = 0; j < nx; ++j) c[j] = mc_slope(s[j + 2] - s[j + 1], s[j + 1] - s[j]) * inv_dx;
  }
  for (int64_t i = 0; i < ny; ++i) {
    const T* up = &Sp[(i + 2) * SW];
    const T* mid = &Sp[(i + 1) * SW];
    const T* lo = &Sp[i * SW];
    T* c = &cy[i * SW];
    for (int64_t b = 0; b < SW; ++b) c[b] = mc_slope(up[b] - mid[b], mid[b] - lo[b]) * inv_dx;
  }
  sbx.resize(static_cast<size_t>(ny * (nx + 2)));
  sby.resize(static_cast<size_t>((ny + 2) * nx));
  for (int64_t i = 0; i < ny; ++i) {
    const T* h = &Hp[(i + 2) * W];
    T* c = &sbx[i * (nx + 2)];
    for (int64_t k = 0; k < nx + 2; ++k)  // padded cell k + 1
      c[k] = T(0.5) * superbee_slope(h[k + 1] - h[k], h[k + 2] - h[k + 1]);
  }
  for (int64_t k = 0; k < ny + 2; ++k) {  // padded row k + 1
    const T* h0 = &Hp[k * W + 2];
    const T* h1 = &Hp[(k + 1) * W + 2];
    const T* h2 = &Hp[(k + 2) * W + 2];
    T* c = &sby[k * nx];
    for (int64_t j = 0; j < nx; ++j) c[j] = T(0.5) * superbee_slope(h1[j] - h0[j], h2[j] - h1[j]);
  }
  T m8[8] = {0, 0, 0, 0, 0, 0, 0, 0}, nan8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  drow.resize(static_cast<size_t>(std::max(nx, ny) + 1));
  T* __restrict d = drow.data();
  // x-faces: face f of row i lies between cells f - 1 and f (padded f + 1 and f + 2).
  for (int64_t i = 0; i < ny; ++i) {
    const T* h = &Hp[(i + 2) * W];
    const T* s = &Sp[(i + 1) * SW];
    const T* c = &cy[i * SW];
    const T* sb = &sbx[i * (nx + 2)];
    face_row<T>(nx + 1, s, s + 1, c, c + 1, h + 1, h + 2, sb, sb + 1, gamma, slide, inv_dx,
                &qx[i * (nx + 1)], d);
    lane_max(d, nx + 1, m8, nan8);
  }
  // y-faces: face f of column j lies between cells f - 1 and f (padded rows f + 1, f + 2).
  for (int64_t f = 0; f <= ny; ++f) {
    face_row<T>(nx, &Sp[f * SW + 1], &Sp[(f + 1) * SW + 1], &cx[f * nx], &cx[(f + 1) * nx],
                &Hp[(f + 1) * W + 2], &Hp[(f + 2) * W + 2], &sby[f * nx], &sby[(f + 1) * nx],
                gamma, slide, inv_dx, &qy[f * nx], d);
    lane_max(d, nx, m8, nan8);
  }
  T dmax = T(0), nan = T(0);
  for (int k = 0; k < 8; ++k) {
    dmax = (m8[k] > dmax) ? m8[k] : dmax;
    nan += nan8[k];
  }
  *dmax_out = (nan == nan) ? dmax : std::numeric_limits<T>::quiet_NaN();
}

template <ffi::DataType DT>
ffi::Error faces_impl(ffi::Buffer<DT> H, ffi::Buffer<DT> bed, ffi::Buffer<DT> coef, double dx,
                      int64_t periodic_y, int64_t periodic_x, ffi::ResultBuffer<DT> qx,
                      ffi::ResultBuffer<DT> qy, ffi::ResultBuffer<DT> dmax) {
  using T = ffi::NativeType<DT>;
  auto dims = H.dimensions();
  if (dims.size() < 2) return ffi::Error::InvalidArgument("H must have at least 2 dimensions");
  const int64_t ny = dims[dims.size() - 2], nx = dims[dims.size() - 1];
  int64_t batch = 1;
  for (size_t k = 0; k + 2 < dims.size(); ++k) batch *= dims[k];
  if (bed.element_count() != H.element_count() || coef.element_count() != 2 * batch)
    return ffi::Error::InvalidArgument("bed must match H and coef hold 2 values per glacier");
  const T* h = H.typed_data();
  const T* b = bed.typed_data();
  const T* c = coef.typed_data();
  T* ox = qx->typed_data();
  T* oy = qy->typed_data();
  T* om = dmax->typed_data();
  for (int64_t g = 0; g < batch; ++g) {
    faces_one<T>(h + g * ny * nx, b + g * ny * nx, c[2 * g], c[2 * g + 1], T(dx), ny, nx,
                 periodic_y != 0, periodic_x != 0, ox + g * ny * (nx + 1),
                 oy + g * (ny + 1) * nx, om + g);
  }
  return ffi::Error::Success();
}

}  // namespace

#define GLACIER_BIND(DT)                         \
  ffi::Ffi::Bind()                               \
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Attr<double>("dx")                        \
      .Attr<int64_t>("periodic_y")               \
      .Attr<int64_t>("periodic_x")               \
      .Ret<ffi::Buffer<DT>>()                    \
      .Ret<ffi::Buffer<DT>>()                    \
      .Ret<ffi::Buffer<DT>>()

XLA_FFI_DEFINE_HANDLER_SYMBOL(GlacierSiaFacesF64, faces_impl<ffi::F64>, GLACIER_BIND(ffi::F64));
XLA_FFI_DEFINE_HANDLER_SYMBOL(GlacierSiaFacesF32, faces_impl<ffi::F32>, GLACIER_BIND(ffi::F32));
