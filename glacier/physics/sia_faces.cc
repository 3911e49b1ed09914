// The SIA face fluxes of ``physics.sia.fluxes`` for Glen's law (n = 3; A and sliding scalars or
// cell fields) as one CPU kernel: an XLA FFI custom call, built on first use by ``physics.native``.
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
// element], or with the attribute coef_fields (..., 3, ny, nx): gamma, slide and an outline
// weight per cell, each face taking the mean of its two cells' coefficients (the domain's
// edges the edge cell's: ``grid.cell_to_face``, as ``laws.GlenLaw.diffusivity`` averages a
// field A) times the product of their weights (``laws.ClosedOutline``); attributes dx,
// periodic_y, periodic_x, coef_fields. Outputs: qx (..., ny, nx + 1), qy (..., ny + 1, nx),
// dmax (...).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <thread>
#include <vector>

#include "sia_kernels.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using glacier_native::grid_dims;
using glacier_native::grow;
using glacier_native::wrap_or_out;

// minmod((a + b) / 2, 2 minmod(a, b)) (``stencils.mc_slope``), written as what it is when a and
// b have one sign: that sign times min(|a + b| / 2, 2 |a|, 2 |b|) (the same value, bit for
// bit: |a + b| = |a| + |b| then, and the factors of 2 are exact), else 0.
template <typename T>
inline T mc_slope(T a, T b) {
  T mag = std::min(T(0.5) * std::fabs(a + b), T(2) * std::min(std::fabs(a), std::fabs(b)));
  return (a * b > T(0)) ? std::copysign(mag, a) : T(0);
}

template <typename T>
inline T superbee_slope(T a, T b) {
  T aa = std::fabs(a), ab = std::fabs(b);
  T m1 = std::min(T(2) * aa, ab), m2 = std::min(aa, T(2) * ab);
  T mag = std::max(m1, m2);
  return (a * b > T(0)) ? std::copysign(mag, b) : T(0);
}

// One face between a low and a high cell: its flux into q[f], its diffusivity returned.
template <typename T, bool Field>
inline T face_flux(int64_t f, const T* __restrict s_lo, const T* __restrict s_hi,
                   const T* __restrict c_lo, const T* __restrict c_hi, const T* __restrict h_lo,
                   const T* __restrict h_hi, const T* __restrict sb_lo,
                   const T* __restrict sb_hi, T gamma_s, T slide_s, const T* __restrict gam,
                   const T* __restrict sld, T inv_dx, T* __restrict q) {
  const T gamma = Field ? gam[f] : gamma_s, slide = Field ? sld[f] : slide_s;
  T grad = (s_hi[f] - s_lo[f]) * inv_dx;
  T cross = T(0.5) * (c_lo[f] + c_hi[f]);
  T s2 = grad * grad + cross * cross;
  T Hl = h_lo[f] + sb_lo[f];  // the low cell's MUSCL state at the face
  T Hr = h_hi[f] - sb_hi[f];  // the high cell's
  T Hu = (grad <= T(0)) ? Hl : Hr;  // flow towards + takes the low side's
  T H2 = Hu * Hu, H3 = H2 * Hu;
  T D = gamma * (H3 * H2) * s2 + slide * H3 * s2;
  q[f] = -D * grad;
  return D;
}

// One row of faces: the face between a low and a high cell, from their surfaces, cross
// slopes, thicknesses and superbee corrections; fluxes into q. The law's coefficients: the
// scalars gamma, slide, or (Field) each face's gam[f], sld[f]. The diffusivities go to the
// running maxima m8 of 8 lanes (face f to lane f % 8 in blocks of 8, the rest to lane 0: a
// vectorisable loop, as a scalar max reduction is not without -ffinite-math-only), and NaN
// or Inf in any of them makes nan8 NaN; the lanes are locals during the loop.
template <typename T, bool Field>
__attribute__((noinline)) void face_row(
    int64_t n, const T* __restrict s_lo, const T* __restrict s_hi, const T* __restrict c_lo,
    const T* __restrict c_hi, const T* __restrict h_lo, const T* __restrict h_hi,
    const T* __restrict sb_lo, const T* __restrict sb_hi, T gamma_s, T slide_s,
    const T* __restrict gam, const T* __restrict sld, T inv_dx, T* __restrict q,
    T* __restrict m8_io, T* __restrict nan8_io) {
  T m8[8], nan8[8];
  for (int k = 0; k < 8; ++k) m8[k] = m8_io[k], nan8[k] = nan8_io[k];
  int64_t f = 0;
  for (; f + 8 <= n; f += 8)
    for (int k = 0; k < 8; ++k) {
      T D = face_flux<T, Field>(f + k, s_lo, s_hi, c_lo, c_hi, h_lo, h_hi, sb_lo, sb_hi,
                                gamma_s, slide_s, gam, sld, inv_dx, q);
      m8[k] = (D > m8[k]) ? D : m8[k];
      nan8[k] += D * T(0);
    }
  for (; f < n; ++f) {
    T D = face_flux<T, Field>(f, s_lo, s_hi, c_lo, c_hi, h_lo, h_hi, sb_lo, sb_hi, gamma_s,
                              slide_s, gam, sld, inv_dx, q);
    m8[0] = (D > m8[0]) ? D : m8[0];
    nan8[0] += D * T(0);
  }
  for (int k = 0; k < 8; ++k) m8_io[k] = m8[k], nan8_io[k] = nan8[k];
}

// Scratch arrays of one thread, grown when a larger grid comes.
template <typename T>
struct FaceScratch {
  std::vector<T> Hp, Sp, cx, cy, sbx, sby, fg, fs;
  std::vector<int64_t> span;  // per padded row: its ice's columns, then the faces'
};

template <typename T>
FaceScratch<T>& face_scratch() {
  thread_local FaceScratch<T> scratch;
  return scratch;
}

template <typename T>
struct LimitScratch {
  std::vector<T> sc, lx, ly;
  std::vector<unsigned char> active, needed;
};

template <typename T>
LimitScratch<T>& limit_scratch() {
  thread_local LimitScratch<T> scratch;
  return scratch;
}

// Rows of cells per band: the kernel works band by band (each band's scratch stays in the
// first-level caches on any grid), recomputing the few padded and limiter rows that two
// neighbouring bands share.
constexpr int64_t kBand = 16;

// Fluxes of x-face rows [r0, r1) and y-face rows [r0, fe) (fe = r1, or ny + 1 for the last
// band), with the running maxima of D in m8 and NaN seen in nan8. The law's coefficients:
// gamma and slide, or (cf not null) the cell fields of ``glacier_native::face_coefficients_run``.
template <typename T>
void faces_band(const T* H, const T* bed, T gamma, T slide, const T* cf, T inv_dx,
                int64_t ny, int64_t nx, bool py, bool px, int64_t r0, int64_t r1, T* qx, T* qy,
                T* m8, T* nan8) {
  const int64_t fe = (r1 == ny) ? ny + 1 : r1;
  const int64_t W = nx + 4, SW = nx + 2;
  // Padded thickness Hp (2 ghosts: zero, or wrapped) rows [r0, fe + 3); padded surface Sp
  // (1 ghost: the edge cell's bed with no ice, or wrapped) rows [r0, r1 + 2). Row indices
  // below are those of the padded arrays; the scratch holds them from r0 on.
  // The thread's scratch, looked up once (a thread_local's every use costs a TLS call in a
  // shared library); raw pointers from here on.
  FaceScratch<T>& scratch = face_scratch<T>();
  T* Hp = grow(scratch.Hp, (fe + 3 - r0) * W);
  T* Sp = grow(scratch.Sp, (r1 + 2 - r0) * SW);
  T* cx = grow(scratch.cx, (fe + 1 - r0) * nx);
  T* cy = grow(scratch.cy, (r1 - r0) * SW);
  T* sbx = grow(scratch.sbx, (r1 - r0) * (nx + 2));
  T* sby = grow(scratch.sby, (fe + 1 - r0) * nx);
  T* fg = cf ? grow(scratch.fg, nx + 1) : nullptr;  // one row of faces' coefficients
  T* fsl = cf ? grow(scratch.fs, nx + 1) : nullptr;
  auto hp = [=](int64_t a) { return Hp + (a - r0) * W; };
  auto sp = [=](int64_t a) { return Sp + (a - r0) * SW; };
  for (int64_t a = r0; a < fe + 3; ++a) {
    T* row = hp(a);
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
  // Ice-free ground is skipped (``glacier_native::ice_span``): per padded row a, [lo, hi) are
  // the padded columns that hold ice (NaN and Inf count: they must reach D_max); the faces
  // that can carry a flux and the limiters they read are computed, the other fluxes set to 0.
  int64_t* span = grow(scratch.span, 2 * (fe + 3 - r0) + 4 * (fe + 1 - r0));
  int64_t* ice = span;                           // padded rows [r0, fe + 3): lo, hi
  int64_t* xr = span + 2 * (fe + 3 - r0);        // x-face rows [r0, r1): f0, f1
  int64_t* yr = xr + 2 * (fe + 1 - r0);          // y-face rows [r0, fe): j0, j1
  int64_t band_lo = W, band_hi = 0;  // the band's ice columns, all rows together
  for (int64_t a = r0; a < fe + 3; ++a) {
    int64_t lo, hi;
    glacier_native::ice_span(hp(a), W, lo, hi);
    if (lo < hi) {
      band_lo = std::min(band_lo, lo);
      band_hi = std::max(band_hi, hi);
    }
    ice[2 * (a - r0)] = lo;
    ice[2 * (a - r0) + 1] = hi;
  }
  if (band_lo >= band_hi) {  // no ice near the band: no flux
    std::fill(qx + r0 * (nx + 1), qx + r1 * (nx + 1), T(0));
    std::fill(qy + r0 * nx, qy + fe * nx, T(0));
    return;
  }
  // The surface, on the columns the faces and limiters read (padded H columns band_lo - 3 ..
  // band_hi; a margin of 6).
  const int64_t sb0 = std::max<int64_t>(0, band_lo - 6), sb1 = std::min<int64_t>(SW, band_hi + 6);
  for (int64_t a = r0; a < r1 + 2; ++a) {
    int64_t i = wrap_or_out(a - 1, ny, py);
    if (i < 0) i = std::min<int64_t>(std::max<int64_t>(a - 1, 0), ny - 1);
    const T* __restrict b = bed + i * nx;
    const T* __restrict h = hp(a + 1) + 1;
    T* __restrict row = sp(a);
    const int64_t j0 = std::max<int64_t>(sb0, 1) - 1, j1 = std::min<int64_t>(sb1, nx + 1) - 1;
    for (int64_t j = j0; j < j1; ++j) row[j + 1] = b[j] + h[j + 1];
    if (sb0 == 0) row[0] = (px ? b[nx - 1] : b[0]) + h[0];
    if (sb1 == SW) row[nx + 1] = (px ? b[0] : b[nx - 1]) + h[nx + 1];
  }
  // x-face f of row i reads padded cells f .. f + 3 of padded row i + 2.
  for (int64_t i = r0; i < r1; ++i) {
    const int64_t lo = ice[2 * (i + 2 - r0)], hi = ice[2 * (i + 2 - r0) + 1];
    xr[2 * (i - r0)] = std::max<int64_t>(0, lo - 3);
    xr[2 * (i - r0) + 1] = (lo < hi) ? std::min<int64_t>(nx + 1, hi) : 0;
  }
  // y-face f of column j reads padded column j + 2 of padded rows f .. f + 3.
  for (int64_t f = r0; f < fe; ++f) {
    int64_t lo = W, hi = 0;
    for (int64_t a = f; a < f + 4; ++a) {
      lo = std::min(lo, ice[2 * (a - r0)]);
      hi = std::max(hi, ice[2 * (a - r0) + 1]);
    }
    yr[2 * (f - r0)] = std::max<int64_t>(0, lo - 2);
    yr[2 * (f - r0) + 1] = (lo < hi) ? std::min<int64_t>(nx, hi - 2) : 0;
  }
  // The columns [j0, j1) of cross-slope and superbee row k that the y-faces k - 1 and k read.
  auto y_need = [=](int64_t k, int64_t& j0, int64_t& j1) {
    j0 = nx;
    j1 = 0;
    for (int64_t f = std::max(r0, k - 1); f < std::min(fe, k + 1); ++f)
      if (yr[2 * (f - r0)] < yr[2 * (f - r0) + 1]) {
        j0 = std::min(j0, yr[2 * (f - r0)]);
        j1 = std::max(j1, yr[2 * (f - r0) + 1]);
      }
  };
  // Cell limiters, once per cell that a face reads: cx, the x-slopes of the surface's rows a
  // (nx each); cy, the y-slopes of cell row i on the surface's columns (nx + 2); sbx, the
  // superbee corrections along x of the padded cells 1 .. nx + 2 of cell row i; sby, along y
  // of padded row k + 1.
  for (int64_t a = r0; a < fe + 1; ++a) {
    int64_t j0, j1;
    y_need(a, j0, j1);
    const T* __restrict s = sp(a);
    T* __restrict c = cx + (a - r0) * nx;
    for (int64_t j = j0; j < j1; ++j)
      c[j] = mc_slope(s[j + 2] - s[j + 1], s[j + 1] - s[j]) * inv_dx;
  }
  for (int64_t i = r0; i < r1; ++i) {
    const int64_t b0 = xr[2 * (i - r0)], b1 = xr[2 * (i - r0) + 1] + 1;  // faces f0 .. f1
    const T* __restrict up = sp(i + 2);
    const T* __restrict mid = sp(i + 1);
    const T* __restrict lo = sp(i);
    T* __restrict c = cy + (i - r0) * SW;
    for (int64_t b = b0; b < b1; ++b) c[b] = mc_slope(up[b] - mid[b], mid[b] - lo[b]) * inv_dx;
  }
  for (int64_t i = r0; i < r1; ++i) {
    const int64_t k0 = xr[2 * (i - r0)], k1 = xr[2 * (i - r0) + 1] + 1;
    const T* __restrict h = hp(i + 2);
    T* __restrict c = sbx + (i - r0) * (nx + 2);
    for (int64_t k = k0; k < k1; ++k)  // padded cell k + 1
      c[k] = T(0.5) * superbee_slope(h[k + 1] - h[k], h[k + 2] - h[k + 1]);
  }
  for (int64_t k = r0; k < fe + 1; ++k) {  // padded row k + 1
    int64_t j0, j1;
    y_need(k, j0, j1);
    const T* __restrict h0 = hp(k) + 2;
    const T* __restrict h1 = hp(k + 1) + 2;
    const T* __restrict h2 = hp(k + 2) + 2;
    T* __restrict c = sby + (k - r0) * nx;
    for (int64_t j = j0; j < j1; ++j) c[j] = T(0.5) * superbee_slope(h1[j] - h0[j], h2[j] - h1[j]);
  }
  // x-faces: face f of row i lies between cells f - 1 and f (padded f + 1 and f + 2).
  for (int64_t i = r0; i < r1; ++i) {
    const int64_t f0 = xr[2 * (i - r0)], f1 = xr[2 * (i - r0) + 1];
    T* q = qx + i * (nx + 1);
    if (f0 >= f1) {
      std::fill(q, q + nx + 1, T(0));
      continue;
    }
    std::fill(q, q + f0, T(0));
    std::fill(q + f1, q + nx + 1, T(0));
    const T* h = hp(i + 2) + f0;
    const T* s = sp(i + 1) + f0;
    const T* c = cy + (i - r0) * SW + f0;
    const T* sb = sbx + (i - r0) * (nx + 2) + f0;
    if (cf) {  // x-face f between cells f - 1 and f of row i (the edge cell at the edges)
      glacier_native::x_face_coefficients(f0, f1, cf + i * nx, nx, ny * nx, fg, fsl);
      face_row<T, true>(f1 - f0, s, s + 1, c, c + 1, h + 1, h + 2, sb, sb + 1, gamma, slide,
                        fg + f0, fsl + f0, inv_dx, q + f0, m8, nan8);
    } else {
      face_row<T, false>(f1 - f0, s, s + 1, c, c + 1, h + 1, h + 2, sb, sb + 1, gamma, slide,
                         nullptr, nullptr, inv_dx, q + f0, m8, nan8);
    }
  }
  // y-faces: face f of column j lies between cells f - 1 and f (padded rows f + 1, f + 2).
  for (int64_t f = r0; f < fe; ++f) {
    const int64_t j0 = yr[2 * (f - r0)], j1 = yr[2 * (f - r0) + 1];
    T* q = qy + f * nx;
    if (j0 >= j1) {
      std::fill(q, q + nx, T(0));
      continue;
    }
    std::fill(q, q + j0, T(0));
    std::fill(q + j1, q + nx, T(0));
    if (cf) {  // y-face f between cell rows f - 1 and f (the edge row at the edges)
      const int64_t a = std::max<int64_t>(f - 1, 0) * nx, b = std::min<int64_t>(f, ny - 1) * nx;
      glacier_native::y_face_coefficients(j0, j1, cf + a, cf + b, ny * nx, fg, fsl);
    }
    const auto row = cf ? face_row<T, true> : face_row<T, false>;
    row(j1 - j0, sp(f) + 1 + j0, sp(f + 1) + 1 + j0, cx + (f - r0) * nx + j0,
        cx + (f + 1 - r0) * nx + j0, hp(f + 1) + 2 + j0, hp(f + 2) + 2 + j0,
        sby + (f - r0) * nx + j0, sby + (f + 1 - r0) * nx + j0, gamma, slide,
        cf ? fg + j0 : nullptr, cf ? fsl + j0 : nullptr, inv_dx, q + j0, m8, nan8);
  }
}

// Cells from which a glacier's bands are shared with XLA's intra-op threads (below, waking a
// thread costs more than it saves).
constexpr int64_t kParallelCells = 32768;

// One glacier: its bands, pulled from a shared counter by the calling thread and by up to
// ``threads - 1`` tasks on XLA's intra-op pool. The caller works through the bands itself if
// no task starts, and waits only for bands that a task claimed; the shared state lives as
// long as the last task that holds it.
template <typename T>
void faces_one(const T* H, const T* bed, T gamma, T slide, const T* cf, T dx,
               int64_t ny, int64_t nx, bool py, bool px, T* qx, T* qy, T* dmax_out,
               ffi::ThreadPool* pool) {
  const T inv_dx = T(1) / dx;
  const int64_t nb = (ny + kBand - 1) / kBand;
  struct Shared {
    std::atomic<int64_t> next{0}, done{0};
    std::vector<T> m8, nan8;  // per band
  };
  auto shared = std::make_shared<Shared>();
  shared->m8.assign(static_cast<size_t>(8 * nb), T(0));
  shared->nan8.assign(static_cast<size_t>(8 * nb), T(0));
  auto work = [=]() {
    for (int64_t b = shared->next.fetch_add(1); b < nb; b = shared->next.fetch_add(1)) {
      const int64_t r0 = b * kBand;
      faces_band<T>(H, bed, gamma, slide, cf, inv_dx, ny, nx, py, px, r0,
                    std::min(ny, r0 + kBand), qx, qy, &shared->m8[8 * b], &shared->nan8[8 * b]);
      shared->done.fetch_add(1, std::memory_order_release);
    }
  };
  int64_t helpers = 0;
  if (pool != nullptr && ny * nx >= kParallelCells)
    helpers = std::min<int64_t>(pool->num_threads(), nb) - 1;
  for (int64_t k = 0; k < helpers; ++k) pool->Schedule(std::function<void()>(work));
  work();
  while (shared->done.load(std::memory_order_acquire) < nb) std::this_thread::yield();
  T dmax = T(0), nan = T(0);
  for (int64_t k = 0; k < 8 * nb; ++k) {
    dmax = (shared->m8[k] > dmax) ? shared->m8[k] : dmax;
    nan += shared->nan8[k];
  }
  *dmax_out = (nan == nan) ? dmax : std::numeric_limits<T>::quiet_NaN();
}

template <ffi::DataType DT>
ffi::Error faces_impl(ffi::ThreadPool pool, ffi::Buffer<DT> H, ffi::Buffer<DT> bed,
                      ffi::Buffer<DT> coef, double dx, int64_t periodic_y, int64_t periodic_x,
                      int64_t coef_fields, ffi::ResultBuffer<DT> qx, ffi::ResultBuffer<DT> qy,
                      ffi::ResultBuffer<DT> dmax) {
  using T = ffi::NativeType<DT>;
  int64_t ny, nx, batch;
  if (!grid_dims(H.dimensions(), ny, nx, batch))
    return ffi::Error::InvalidArgument("H must have at least 2 dimensions");
  const int64_t per = coef_fields ? 3 * ny * nx : 2;  // coefficients per glacier
  if (bed.element_count() != H.element_count() || coef.element_count() != per * batch)
    return ffi::Error::InvalidArgument(
        "bed must match H and coef hold 2 values (or 3 fields) per glacier");
  const T* h = H.typed_data();
  const T* b = bed.typed_data();
  const T* c = coef.typed_data();
  T* ox = qx->typed_data();
  T* oy = qy->typed_data();
  T* om = dmax->typed_data();
  // Glaciers too small for their bands to be shared: the batch's glaciers are, when together
  // they are large enough.
  const bool by_glacier =
      ny * nx < kParallelCells && glacier_native::shares_glaciers(batch, ny * nx);
  const std::function<void(int64_t)> one = [&](int64_t g) {
    const T* cf = coef_fields ? c + g * per : nullptr;
    faces_one<T>(h + g * ny * nx, b + g * ny * nx, cf ? T(0) : c[per * g],
                 cf ? T(0) : c[per * g + 1], cf, T(dx), ny, nx,
                 periodic_y != 0, periodic_x != 0, ox + g * ny * (nx + 1),
                 oy + g * (ny + 1) * nx, om + g, by_glacier ? nullptr : &pool);
  };
  glacier_native::for_each_glacier(pool, by_glacier, batch, one);
  return ffi::Error::Success();
}

}  // namespace

#define GLACIER_BIND(DT)                         \
  ffi::Ffi::Bind()                               \
      .Ctx<ffi::ThreadPool>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Attr<double>("dx")                        \
      .Attr<int64_t>("periodic_y")               \
      .Attr<int64_t>("periodic_x")               \
      .Attr<int64_t>("coef_fields")              \
      .Ret<ffi::Buffer<DT>>()                    \
      .Ret<ffi::Buffer<DT>>()                    \
      .Ret<ffi::Buffer<DT>>()

XLA_FFI_DEFINE_HANDLER_SYMBOL(GlacierSiaFacesF64, faces_impl<ffi::F64>, GLACIER_BIND(ffi::F64));
XLA_FFI_DEFINE_HANDLER_SYMBOL(GlacierSiaFacesF32, faces_impl<ffi::F32>, GLACIER_BIND(ffi::F32));

// ---------------------------------------------------------------------------------------------
// The outflow limiter and the flux divergence of ``sia.limit_outflow`` + ``sia.flux_divergence``
// + ``sia.edge_outflow``: each face flux scaled by its donor cell's min(1, H / (dt * outflow /
// dx)) (ghost cells: factor 0, or wrapped), then div q [m a-1] at the cells and the net flux out
// through the domain's edges. Inputs: H (..., ny, nx), qx (..., ny, nx + 1), qy (..., ny + 1,
// nx), dt (...); attributes dx, periodic_y, periodic_x. Outputs: div (..., ny, nx), edge (...).
namespace {

using glacier_native::divergence_row;
using glacier_native::donor_row;

template <typename T>
void limit_one(const T* H, const T* qx, const T* qy, T dt, T dx, int64_t ny, int64_t nx,
               bool py, bool px, T* div, T* edge) {
  const T floor = sizeof(T) == 8 ? T(1e-30) : T(1e-6);
  const T rate = dt / dx;
  const int64_t W = nx + 2;
  const T inv_dx = T(1) / dx;
  LimitScratch<T>& scratch = limit_scratch<T>();
  T* sc = grow(scratch.sc, (ny + 2) * W);  // donor factors with a ghost ring (0: no ice)
  T* lx = grow(scratch.lx, nx + 1);  // one row of limited x-fluxes
  T* ly = grow(scratch.ly, 2 * nx);  // its two rows of limited y-fluxes
  // Rows without flux are skipped: a cell row whose faces all carry q = 0 has div q = 0 (the
  // limited fluxes are q times a finite factor), and its donor factors are read only by its
  // own faces and its two neighbour rows' shared y-faces.
  unsigned char* active = grow(scratch.active, ny);
  unsigned char* needed = grow(scratch.needed, ny + 1);
  // (``needed`` holds, first, whether each row of y-faces carries a flux.)
  for (int64_t f = 0; f <= ny; ++f) needed[f] = glacier_native::any_nonzero(qy + f * nx, nx);
  for (int64_t i = 0; i < ny; ++i)
    active[i] = needed[i] || needed[i + 1] ||
                glacier_native::any_nonzero(qx + i * (nx + 1), nx + 1);
  for (int64_t i = 0; i < ny; ++i) {
    const int64_t below = (i > 0) ? i - 1 : (py ? ny - 1 : -1);
    const int64_t above = (i + 1 < ny) ? i + 1 : (py ? 0 : -1);
    needed[i] = active[i] || (below >= 0 && active[below]) || (above >= 0 && active[above]);
  }
  std::fill(sc, sc + W, T(0));
  std::fill(sc + (ny + 1) * W, sc + (ny + 2) * W, T(0));
  for (int64_t i = 1; i <= ny; ++i) sc[i * W] = sc[i * W + nx + 1] = T(0);
  for (int64_t i = 0; i < ny; ++i) {
    if (!needed[i]) continue;
    const T* __restrict q = qx + i * (nx + 1);
    const T* __restrict qlo = qy + i * nx;
    const T* __restrict qhi = qy + (i + 1) * nx;
    const T* __restrict h = H + i * nx;
    T* __restrict s = &sc[(i + 1) * W + 1];
    // Cells without ice (H = 0) take the factor 0 whatever their outflow: 0 / out, or, where
    // a NaN flux makes out NaN, a NaN that the flux itself carries into div q anyway. Only
    // the row's ice [lo, hi) pays the division.
    int64_t lo, hi;
    glacier_native::ice_span(h, nx, lo, hi);
    if (lo >= hi) lo = hi = 0;
    std::fill(s, s + lo, T(0));
    std::fill(s + hi, s + nx, T(0));
    for (int64_t j = lo; j < hi; ++j) {
      T out = ((((q[j + 1] > T(0)) ? q[j + 1] : T(0)) + ((-q[j] > T(0)) ? -q[j] : T(0)))
               + ((qhi[j] > T(0)) ? qhi[j] : T(0))) + ((-qlo[j] > T(0)) ? -qlo[j] : T(0));
      out = out * rate;
      T ratio = h[j] / ((out > floor) ? out : floor);
      s[j] = (ratio < T(1)) ? ratio : T(1);
    }
  }
  if (px)
    for (int64_t i = 1; i <= ny; ++i) {
      sc[i * W] = sc[i * W + nx];
      sc[i * W + nx + 1] = sc[i * W + 1];
    }
  if (py) {
    std::copy(&sc[ny * W + 1], &sc[ny * W + 1] + nx, &sc[1]);
    std::copy(&sc[1 * W + 1], &sc[1 * W + 1] + nx, &sc[(ny + 1) * W + 1]);
  }
  // Limited fluxes (a face takes the factor of the cell its flux leaves) and their divergence,
  // row by row: the row's x-faces, its two rows of y-faces. The row of y-faces above an active
  // row is the one below the next: kept for it (``lo`` and ``hi`` swap), so that each y-face
  // row is scaled once (the same product as before, when both rows computed it).
  T e = T(0);
  T* lo = ly;
  T* hi = ly + nx;
  bool lo_ready = false;  // whether lo holds the limited y-faces below row i
  for (int64_t i = 0; i < ny; ++i) {
    if (!active[i]) {
      std::fill(div + i * nx, div + (i + 1) * nx, T(0));
      lo_ready = false;
      continue;
    }
    const T* q = qx + i * (nx + 1);
    const T* s = sc + (i + 1) * W;  // s[f]: the cell left of face f (ghost at 0)
    T* l = lx;
    donor_row<T>(nx + 1, q, s, s + 1, l);
    if (!lo_ready) donor_row<T>(nx, qy + i * nx, sc + i * W + 1, sc + (i + 1) * W + 1, lo);
    donor_row<T>(nx, qy + (i + 1) * nx, sc + (i + 1) * W + 1, sc + (i + 2) * W + 1, hi);
    divergence_row<T>(nx, l, lo, hi, inv_dx, div + i * nx);
    e += l[nx] - l[0];
    if (i == 0)
      for (int64_t j = 0; j < nx; ++j) e -= lo[j];
    if (i == ny - 1)
      for (int64_t j = 0; j < nx; ++j) e += hi[j];
    std::swap(lo, hi);
    lo_ready = true;
  }
  *edge = e;
}

template <ffi::DataType DT>
ffi::Error limit_impl(ffi::ThreadPool pool, ffi::Buffer<DT> H, ffi::Buffer<DT> qx,
                      ffi::Buffer<DT> qy,
                      ffi::Buffer<DT> dt, double dx, int64_t periodic_y, int64_t periodic_x,
                      ffi::ResultBuffer<DT> div, ffi::ResultBuffer<DT> edge) {
  using T = ffi::NativeType<DT>;
  int64_t ny, nx, batch;
  if (!grid_dims(H.dimensions(), ny, nx, batch))
    return ffi::Error::InvalidArgument("H must have at least 2 dimensions");
  if (qx.element_count() != batch * ny * (nx + 1) || qy.element_count() != batch * (ny + 1) * nx
      || dt.element_count() != batch)
    return ffi::Error::InvalidArgument("qx, qy and dt must fit H");
  const std::function<void(int64_t)> one = [&](int64_t g) {
    limit_one<T>(H.typed_data() + g * ny * nx, qx.typed_data() + g * ny * (nx + 1),
                 qy.typed_data() + g * (ny + 1) * nx, dt.typed_data()[g], T(dx), ny, nx,
                 periodic_y != 0, periodic_x != 0, div->typed_data() + g * ny * nx,
                 edge->typed_data() + g);
  };
  // The batch's glaciers shared with XLA's intra-op threads when together they are large
  // enough (each glacier whole on one thread).
  glacier_native::for_each_glacier(pool, glacier_native::shares_glaciers(batch, ny * nx), batch,
                                   one);
  return ffi::Error::Success();
}

}  // namespace

#define GLACIER_BIND_LIMIT(DT)                   \
  ffi::Ffi::Bind()                               \
      .Ctx<ffi::ThreadPool>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Attr<double>("dx")                        \
      .Attr<int64_t>("periodic_y")               \
      .Attr<int64_t>("periodic_x")               \
      .Ret<ffi::Buffer<DT>>()                    \
      .Ret<ffi::Buffer<DT>>()

XLA_FFI_DEFINE_HANDLER_SYMBOL(GlacierSiaLimitF64, limit_impl<ffi::F64>,
                              GLACIER_BIND_LIMIT(ffi::F64));
XLA_FFI_DEFINE_HANDLER_SYMBOL(GlacierSiaLimitF32, limit_impl<ffi::F32>,
                              GLACIER_BIND_LIMIT(ffi::F32));
