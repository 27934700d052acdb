// CUDA helpers shared by the kernels of ndcore::tally and ndcore::iou_histogram.
//
// Both kernels have the same shape: a block takes one image, a tile of units and a band of output
// rows (LaunchPlan), and for each unit of its tile
//   * reduces the max of the low-res rows its band reads and skips the unit when it is <= the
//     skip bound (tally_common.h);
//   * walks its band's pixels kThreads at a time (walk_band; coalesced label reads, no integer
//     division per pixel), skipping cells whose corners are all <= the bound;
//   * adds counts with warp-aggregated atomics (warp_add), into shared-memory bins when they fit.
// Compiled with --fmad=false, and the interpolation uses _rn intrinsics (tally_common.h), so the
// values round exactly as the reference's float32 operations.
#pragma once

#include <ATen/ATen.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "../tally_common.h"
#include "launch_plan.h"

namespace ndcore {
namespace cuda {

constexpr unsigned kFullMask = 0xffffffffu;

// The upsampling weights of every output row (or column), on the device of `like`, as
// [out_size] SourceWeight (16 bytes each) stored in an int32 tensor [out_size, 4].
at::Tensor source_weights(int64_t in_size, int64_t out_size, const at::Tensor& like,
                          cudaStream_t stream);

// Shared-memory histograms: up to 48 KiB a block needs no opt-in; beyond, up to 96 KiB (two
// 256-thread blocks still fit an SM of recent GPUs), the kernel's limit is raised. Larger
// histograms use global int64 atomics instead.
constexpr int64_t kDefaultSharedBytes = 48 * 1024;
constexpr int64_t kMaxSharedBytes = 96 * 1024;

// Whether n_bins int32 bins fit in the dynamic shared memory of a block of `kernel` (next to its
// static shared memory) on this device; raises the kernel's limit when above the default.
bool reserve_shared_bins(const void* kernel, int device_index, int64_t n_bins);

// Output rows [y0, y1) of band `band`, and the low-res rows [r0, r1] they interpolate from.
struct Band {
  int y0, y1;      // output rows
  int r0, r1;      // low-res rows read: [r0, r1]
};

__device__ __forceinline__ Band band_rows(const SourceWeight* wy, int band, int rows_per_band,
                                          int sh) {
  Band b;
  b.y0 = band * rows_per_band;
  b.y1 = min(sh, b.y0 + rows_per_band);
  b.r0 = wy[b.y0].i0;
  b.r1 = wy[b.y1 - 1].i0 + wy[b.y1 - 1].step;
  return b;
}

// Block-wide max (NaN ignored); every thread gets the result. `scratch` holds kThreads/32 floats.
__device__ __forceinline__ float block_max(float v, float* scratch) {
  for (int off = 16; off > 0; off >>= 1) v = ignore_nan_max(v, __shfl_xor_sync(kFullMask, v, off));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // scratch may still be read from the previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float m = scratch[0];
  for (int i = 1; i < kThreads / 32; ++i) m = ignore_nan_max(m, scratch[i]);
  return m;
}

// Block-wide sum; every thread gets the result. `scratch` holds kThreads/32 ints.
__device__ __forceinline__ int block_sum(int v, int* scratch) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(kFullMask, v, off);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  int s = 0;
  for (int i = 0; i < kThreads / 32; ++i) s += scratch[i];
  return s;
}

// Max of the low-res rows [r0, r1] of map `a` (width w), over the block.
__device__ __forceinline__ float band_max(const float* a, int w, const Band& b, float* scratch) {
  float m = -INFINITY;
  const int begin = b.r0 * w, end = (b.r1 + 1) * w;  // host-checked: h * w < 2^31
  for (int i = begin + threadIdx.x; i < end; i += kThreads) m = ignore_nan_max(m, __ldg(a + i));
  return block_max(m, scratch);
}

// Calls body(valid, y, x) for the pixels of rows [b.y0, b.y1) of a width-sw image, pixel
// (y0 * sw + base + threadIdx.x) at step base. Every thread of the block makes the same number of
// calls (valid is false past the band's end), so body may use warp-synchronous primitives.
// (y, x) advance by adding kThreads with a carry: no division per pixel.
template <class Body>
__device__ __forceinline__ void walk_band(const Band& b, int sw, Body&& body) {
  const int count = (b.y1 - b.y0) * sw;
  const int dy = kThreads / sw, dx = kThreads % sw;
  int y = b.y0 + threadIdx.x / sw, x = threadIdx.x % sw;
  for (int base = 0; base < count; base += kThreads) {
    body(base + static_cast<int>(threadIdx.x) < count, y, x);
    y += dy;
    x += dx;
    if (x >= sw) {
      x -= sw;
      ++y;
    }
  }
}

// Upsampled value of pixel (y, x) of map `a` (width w) into *v, unless its cell's corners are all
// <= skip (then the value is <= the threshold skip was derived from) and false is returned.
__device__ __forceinline__ bool candidate_value(const float* a, int w, const SourceWeight* wys,
                                                const SourceWeight* wxs, int y, int x,
                                                float skip, float* v) {
  const SourceWeight wy = wys[y], wx = wxs[x];
  const float* row0 = a + wy.i0 * w;
  const float* row1 = row0 + wy.step * w;
  const Corners c{__ldg(row0 + wx.i0), __ldg(row0 + wx.i0 + wx.step), __ldg(row1 + wx.i0),
                  __ldg(row1 + wx.i0 + wx.step)};
  if (!(corner_max(c) > skip)) return false;
  *v = bilerp(wy, wx, c);
  return true;
}

// Warp-aggregated increment: every lane of the warp must call it; lanes with `active` add 1 to
// bin `key` (>= 0). Lanes sharing a key elect one leader that adds the group's size, so a large
// region of one label costs one atomic per warp instead of 32.
template <class Add>
__device__ __forceinline__ void warp_add(bool active, int key, Add&& add) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
  const unsigned peers = __match_any_sync(kFullMask, active ? key : -1);
  const int lane = threadIdx.x & 31;
  if (active && lane == __ffs(peers) - 1) add(key, __popc(peers));
#else
  if (active) add(key, 1);
#endif
}

__device__ __forceinline__ void add_shared(int* bins, int key, int count) {
  atomicAdd(bins + key, count);
}

__device__ __forceinline__ void add_global(int64_t* bins, int key, int count) {
  atomicAdd(reinterpret_cast<unsigned long long*>(bins + key),
            static_cast<unsigned long long>(count));
}

// Adds the non-zero shared bins to their int64 global counterparts (other blocks add to the
// same unit's counts), then clears them for the next unit.
__device__ __forceinline__ void flush_bins(int* bins, int n_bins, int64_t* out) {
  __syncthreads();
  for (int i = threadIdx.x; i < n_bins; i += kThreads) {
    const int c = bins[i];
    if (c) {
      add_global(out, i, c);
      bins[i] = 0;
    }
  }
  __syncthreads();
}

__device__ __forceinline__ void clear_bins(int* bins, int n_bins) {
  for (int i = threadIdx.x; i < n_bins; i += kThreads) bins[i] = 0;
  __syncthreads();
}

// Block coordinates of the plan: image, first unit of the tile, band.
struct BlockWork {
  int64_t n, u_begin, u_end;
  int band;
};

__device__ __forceinline__ BlockWork block_work(int64_t block, int64_t n_units, int64_t tiles,
                                                int bands, int units_per_block) {
  BlockWork w;
  w.band = static_cast<int>(block % bands);
  const int64_t rest = block / bands;
  const int64_t tile = rest % tiles;
  w.n = rest / tiles;
  w.u_begin = tile * units_per_block;
  w.u_end = min(n_units, w.u_begin + units_per_block);
  return w;
}

}  // namespace cuda
}  // namespace ndcore
