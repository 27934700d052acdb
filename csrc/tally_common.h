// Arithmetic shared by the CPU and CUDA kernels of every ndcore op (tally, iou_histogram), host
// and device: the skip bound, the bilinear source weights, the interpolation in the reference's
// float32 operation order, and the edge search. Anything that decides a count lives here once.
#pragma once

#include <math.h>
#include <cstdint>

#ifdef __CUDACC__
#define NDCORE_HD __host__ __device__ __forceinline__
#else
#define NDCORE_HD inline
#endif

namespace ndcore {

// Skip bound S for threshold T: if the four corners of a bilinear cell are all <= S, every value
// interpolated in that cell is <= T, *including float32 rounding*.
//
// Why a margin: a float32 convex combination can exceed its largest input. For corners <= S the
// result is at most fl(l0*fl(l0'*S + l1'*S) + ...) (rounding and multiplication by non-negative
// weights are monotone), and with l0 = fl(1 - l1) the weights sum to at most 1 + u (u = 2^-24),
// so the result is <= S * (1+u)^6 when S >= 0 and <= S * (1-u)^6 when S < 0, plus at most
// 6 * 2^-150 in the subnormal range. A relative margin of 2^-18 and an absolute one of 2^-140
// cover both. T == 0 is exact without a margin: non-positive corners give a non-positive result,
// and dead ReLU units (T == 0, all-zero maps) are the most common case to skip.
// NaN corners never need interpolation (the result is NaN, never > T), so maxima may ignore
// them. A NaN or +inf threshold gives a NaN bound: `max > S` is then false and everything is
// skipped, which is exact since no value compares > NaN or > +inf.
NDCORE_HD float skip_bound(float t) {
  if (t == 0.0f) return 0.0f;
  const double td = static_cast<double>(t);
  double s = td - fabs(td) * 0x1p-18 - 0x1p-140;
  if (t > 0.0f && s < 0.0) s = 0.0;  // corners <= 0 give a result <= 0 < t
  // Round toward -inf so that the float bound is not above the double one.
  float sf = static_cast<float>(s);
  if (static_cast<double>(sf) > s) sf = nextafterf(sf, -INFINITY);
  return sf;
}

// max that ignores NaN in `v` (see skip_bound: NaN corners never need interpolation).
NDCORE_HD float ignore_nan_max(float m, float v) { return v > m ? v : m; }

// Source index, step to the second sample (0 at the edge) and the two weights of one output
// coordinate, with the float32 operations of reference._source_weights / ATen's
// area_pixel_compute_source_index (align_corners=False). No FMA: compile with contraction off.
struct SourceWeight {
  int32_t i0;
  int32_t step;
  float l0;
  float l1;
};

NDCORE_HD SourceWeight source_weight(int64_t in_size, int64_t out_size, int64_t dst) {
  const float scale = static_cast<float>(static_cast<double>(in_size) / static_cast<double>(out_size));
  float src = scale * (static_cast<float>(dst) + 0.5f) - 0.5f;
  if (src < 0.0f) src = 0.0f;
  int64_t i0 = static_cast<int64_t>(floorf(src));
  if (i0 > in_size - 1) i0 = in_size - 1;
  SourceWeight w;
  w.i0 = static_cast<int32_t>(i0);
  w.step = i0 < in_size - 1 ? 1 : 0;
  w.l1 = src - static_cast<float>(i0);
  w.l0 = 1.0f - w.l1;
  return w;
}

// The reference's operation order: l0y * (l0x*a + l1x*b) + l1y * (l0x*c + l1x*d), each product
// and sum rounded separately. On the device the _rn intrinsics forbid FMA contraction whatever
// the compiler flags; on the host the build passes -ffp-contract=off.
NDCORE_HD float mul_add2(float l0, float a, float l1, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(__fmul_rn(l0, a), __fmul_rn(l1, b));
#else
  return l0 * a + l1 * b;
#endif
}
NDCORE_HD float lerp_x(float l0x, float l1x, float a, float b) { return mul_add2(l0x, a, l1x, b); }
NDCORE_HD float lerp_y(float l0y, float l1y, float top, float bottom) {
  return mul_add2(l0y, top, l1y, bottom);
}

// The four samples of the bilinear cell of one output pixel.
struct Corners {
  float v00, v01, v10, v11;
};

NDCORE_HD float corner_max(const Corners& c) {
  return ignore_nan_max(ignore_nan_max(c.v00, c.v01), ignore_nan_max(c.v10, c.v11));
}

NDCORE_HD float bilerp(const SourceWeight& wy, const SourceWeight& wx, const Corners& c) {
  return lerp_y(wy.l0, wy.l1, lerp_x(wx.l0, wx.l1, c.v00, c.v01),
                lerp_x(wx.l0, wx.l1, c.v10, c.v11));
}

// Number of edges e (strictly increasing, finite) with v > e: the first k with !(v > edges[k]),
// by bisection. A NaN v compares false with every edge and gives 0 (so it is never counted),
// exactly as `v > e` does in the reference.
NDCORE_HD int32_t count_edges_below(const float* edges, int32_t n_edges, float v) {
  int32_t lo = 0, hi = n_edges;  // invariant: v > edges[k] for k < lo, not for k >= hi
  while (lo < hi) {
    const int32_t mid = lo + ((hi - lo) >> 1);
    if (v > edges[mid])
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

// count_edges_below(edges, n_edges, v), found by walking at most kWalk steps from `hint` (any
// guess in [0, n_edges], ideally close) before bisecting the rest. Exact for any hint: `v > edges[k]` holds for a prefix of k (strictly increasing edges; none
// for NaN), so once it holds at k every edge before k counts, and once it fails at k no edge
// from k on does.
NDCORE_HD int32_t count_edges_below_from(const float* edges, int32_t n_edges, float v,
                                         int32_t hint) {
  constexpr int32_t kWalk = 4;
  int32_t k = hint;
  if (k < n_edges && v > edges[k]) {  // the count is > k: walk up
    const int32_t stop = k + kWalk < n_edges ? k + kWalk : n_edges;
    for (++k; k < stop; ++k)
      if (!(v > edges[k])) return k;
    return stop + count_edges_below(edges + stop, n_edges - stop, v);  // all before stop count
  }
  // The count is <= k: walk down.
  const int32_t stop = k - kWalk > 0 ? k - kWalk : 0;
  for (; k > stop; --k)
    if (v > edges[k - 1]) return k;
  return count_edges_below(edges, stop, v);  // none from stop on counts
}

}  // namespace ndcore
