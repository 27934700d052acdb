// CPU helpers shared by the kernels of ndcore::tally and ndcore::iou_histogram (the selection ops
// use any_above too): walking the upsampled pixels of one (image, unit) map that may exceed a
// threshold, and spreading maps over at::parallel_for workers.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <vector>

#include "../tally_common.h"

// The walk below must be inlined into its caller: a closure left in memory makes every count
// increment (int64) possibly alias the closure's captured sizes, which are then reloaded.
#if defined(__GNUC__)
#define NDCORE_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define NDCORE_ALWAYS_INLINE inline
#endif

namespace ndcore {
namespace cpu {

// One axis of the upsampling: weights per output index, and for every low-res index the range of
// output indices whose first source sample it is (contiguous, since the map is monotone).
struct Axis {
  std::vector<SourceWeight> w;
  std::vector<int64_t> begin, end;  // per low-res index
  std::vector<int64_t> used;        // low-res indices with a non-empty output range

  Axis(int64_t in_size, int64_t out_size) : w(out_size), begin(in_size, 0), end(in_size, 0) {
    for (int64_t o = 0; o < out_size; ++o) {
      w[o] = source_weight(in_size, out_size, o);
      const int64_t i = w[o].i0;
      if (begin[i] == end[i]) begin[i] = o;
      end[i] = o + 1;
    }
    for (int64_t i = 0; i < in_size; ++i)
      if (end[i] > begin[i]) used.push_back(i);
  }
};

// Whether any of a[0..count) is > t (NaN is not): a branch-free OR the compiler vectorises (a
// running max with NaN handling is not), so maps with nothing above t cost one fast read.
inline bool any_above(const float* a, int64_t count, float t) {
  int32_t any = 0;
  for (int64_t i = 0; i < count; ++i) any |= a[i] > t;
  return any != 0;
}

// Calls fn(y, x, v) for every output pixel of the low-res map `a` ([ay.begin.size(), w]) whose
// upsampled value v, computed with the reference's float32 operations, is > t. Only the cells
// with a corner > skip = skip_bound(t) are interpolated: every other pixel is <= t (see
// skip_bound), and a map whose max is <= skip costs one pass over it. `xa`/`xb` are scratch rows
// of the output width. Work is per low-res cell: the x-interpolation of a cell's two rows is done
// once per output column and reused down the cell's output rows.
template <class Fn>
NDCORE_ALWAYS_INLINE void for_each_pixel_above(const float* a, int64_t w, const Axis& ay, const Axis& ax,
                                 float t, float skip, float* xa, float* xb, Fn&& fn) {
  if (!any_above(a, static_cast<int64_t>(ay.begin.size()) * w, skip)) return;
  for (const int64_t r : ay.used) {
    const float* row0 = a + r * w;
    const float* row1 = a + (r + ay.w[ay.begin[r]].step) * w;
    for (const int64_t c : ax.used) {
      const int64_t c1 = c + ax.w[ax.begin[c]].step;
      const Corners k{row0[c], row0[c1], row1[c], row1[c1]};
      if (!(corner_max(k) > skip)) continue;
      const int64_t x_begin = ax.begin[c], x_end = ax.end[c];
      for (int64_t x = x_begin; x < x_end; ++x) {
        xa[x] = lerp_x(ax.w[x].l0, ax.w[x].l1, k.v00, k.v01);
        xb[x] = lerp_x(ax.w[x].l0, ax.w[x].l1, k.v10, k.v11);
      }
      for (int64_t y = ay.begin[r]; y < ay.end[r]; ++y) {
        const float l0y = ay.w[y].l0, l1y = ay.w[y].l1;
        for (int64_t x = x_begin; x < x_end; ++x) {
          const float v = lerp_y(l0y, l1y, xa[x], xb[x]);
          if (v > t) fn(y, x, v);  // the test here, not in fn: the compiler keeps this loop tight
        }
      }
    }
  }
}

// Runs block(n0, n1, u0, u1, acc) over all images x units, where `acc` ([U, row] int64, zeroed)
// accumulates per unit across images. Units split in small chunks taken dynamically (activity
// differs a lot between units; a chunk owns its units' rows, nothing to merge). With fewer units
// than 2x the workers, images are split instead and each worker accumulates privately, summed
// at the end, unless those copies would exceed `max_private_bytes`.
template <class Block>
void parallel_over_maps(int64_t n_img, int64_t n_units, at::Tensor& acc, Block&& block,
                        int64_t max_private_bytes = int64_t(256) << 20) {
  const int64_t n_workers = at::get_num_threads();
  const int64_t row = n_units ? acc.numel() / n_units : 0;
  int64_t* acc_ptr = acc.data_ptr<int64_t>();
  const bool split_images = n_units < 2 * n_workers && n_workers > 1 &&
                            n_workers * acc.numel() * 8 <= max_private_bytes;
  if (!split_images) {
    const int64_t chunk =
        std::max<int64_t>(1, std::min<int64_t>(16, n_units / (4 * n_workers)));
    const int64_t n_chunks = (n_units + chunk - 1) / chunk;
    std::atomic<int64_t> next{0};
    at::parallel_for(0, n_workers, 1, [&](int64_t, int64_t) {
      for (int64_t k = next++; k < n_chunks; k = next++)
        block(0, n_img, k * chunk, std::min(n_units, (k + 1) * chunk), acc_ptr);
    });
    return;
  }
  at::Tensor partial = at::zeros({n_workers, n_units, row}, acc.options());
  int64_t* part_ptr = partial.data_ptr<int64_t>();
  at::parallel_for(0, n_img, 1, [&](int64_t n0, int64_t n1) {
    const int64_t tid = at::get_thread_num();
    block(n0, n1, 0, n_units, part_ptr + tid * n_units * row);
  });
  acc.copy_(partial.sum(0).view_as(acc));
}

}  // namespace cpu
}  // namespace ndcore
