// CUDA kernel of ndcore::tally (semantics: ndcore/ops/reference.py). The block layout, skipping,
// pixel walk and warp-aggregated atomics are shared with iou_histogram (maps_cuda.cuh). Here a
// pixel is hot when its upsampled value is > the unit's threshold; it adds 1 to the unit's area
// and to the (unit, label) and (image, unit, category) counts of each of its label planes.
// Label values were validated on the host (check_tally_values), so the kernel trusts them.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cuda_runtime.h>

#include "../tally.h"
#include "../tally_common.h"
#include "maps_cuda.cuh"

namespace ndcore {
namespace {

using namespace ndcore::cuda;

constexpr int kMaxUnitsPerBlock = 8;

struct Params {
  const float* acts;          // [N, U, h, w]
  const float* thr;           // [U]
  const int32_t* labels;      // [N, P, sh, sw], values in [0, L)
  const int64_t* label_cat;   // [L], values in {-1} u [0, C)
  const SourceWeight* wy;     // [sh]
  const SourceWeight* wx;     // [sw]
  int64_t* inter;             // [U, L]
  int64_t* area;              // [N, U]
  int64_t* cat_hits;          // [N, U, C]
  int64_t n_units, tiles;
  int h, w, n_planes, sh, sw, n_labels, n_cats;
  int units_per_block, bands, rows_per_band;
  bool shared_labels, shared_cats;  // bins in shared memory (else global atomics)
};

__global__ void __launch_bounds__(kThreads) tally_kernel(Params p) {
  extern __shared__ int bins[];  // [L] label bins (if shared_labels), then [C] category bins
  __shared__ float max_scratch[kThreads / 32];
  __shared__ int sum_scratch[kThreads / 32];
  const int n_lab_bins = p.shared_labels ? p.n_labels : 0;
  const int n_cat_bins = p.shared_cats ? p.n_cats : 0;
  int* lab_bins = bins;
  int* cat_bins = bins + n_lab_bins;
  clear_bins(bins, n_lab_bins + n_cat_bins);

  const BlockWork bw = block_work(blockIdx.x, p.n_units, p.tiles, p.bands, p.units_per_block);
  const Band band = band_rows(p.wy, bw.band, p.rows_per_band, p.sh);
  const int npix = p.sh * p.sw;
  const int32_t* labels_n = p.labels + bw.n * p.n_planes * npix;

  for (int64_t u = bw.u_begin; u < bw.u_end; ++u) {
    const float* a = p.acts + (bw.n * p.n_units + u) * p.h * p.w;
    const float t = __ldg(p.thr + u);
    const float s = skip_bound(t);
    if (!(band_max(a, p.w, band, max_scratch) > s)) continue;  // uniform across the block

    int64_t* inter_u = p.inter + u * p.n_labels;
    int64_t* cats_nu = p.cat_hits + (bw.n * p.n_units + u) * p.n_cats;
    int area = 0;
    walk_band(band, p.sw, [&](bool valid, int y, int x) {
      float v;
      const bool hot = valid && candidate_value(a, p.w, p.wy, p.wx, y, x, s, &v) && v > t;
      area += hot;
      if (!__any_sync(kFullMask, hot)) return;  // most warps: nothing above the threshold
      const int pix = y * p.sw + x;
      for (int j = 0; j < p.n_planes; ++j) {
        const int lab = hot ? __ldg(labels_n + j * npix + pix) : 0;
        const int cat = lab > 0 ? static_cast<int>(__ldg(p.label_cat + lab)) : -1;
        if (p.shared_labels)
          warp_add(lab > 0, lab, [&](int k, int c) { add_shared(lab_bins, k, c); });
        else
          warp_add(lab > 0, lab, [&](int k, int c) { add_global(inter_u, k, c); });
        if (p.shared_cats)
          warp_add(cat >= 0, cat, [&](int k, int c) { add_shared(cat_bins, k, c); });
        else
          warp_add(cat >= 0, cat, [&](int k, int c) { add_global(cats_nu, k, c); });
      }
    });
    const int total = block_sum(area, sum_scratch);  // uniform; also a barrier
    if (total == 0) continue;  // no bin was touched
    if (threadIdx.x == 0) add_global(p.area + bw.n * p.n_units + u, 0, total);  // bands add up
    flush_bins(lab_bins, n_lab_bins, inter_u);
    flush_bins(cat_bins, n_cat_bins, cats_nu);
  }
}

TallyResult tally_cuda(const at::Tensor& acts, const at::Tensor& thresholds,
                       const at::Tensor& labels_in, const at::Tensor& label_category,
                       int64_t num_labels, int64_t num_categories) {
  check_tally_inputs(acts, thresholds, labels_in, label_category, num_labels, num_categories,
                     c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(acts.device());
  const at::Tensor labels =
      check_tally_values(labels_in, label_category, num_labels, num_categories);
  const int64_t n_img = acts.size(0), n_units = acts.size(1);
  auto opts = acts.options().dtype(at::kLong);
  at::Tensor inter = at::zeros({n_units, num_labels}, opts);
  at::Tensor area = at::zeros({n_img, n_units}, opts);
  at::Tensor cat_hits = at::zeros({n_img, n_units, num_categories}, opts);
  const int64_t sh = labels.size(2), sw = labels.size(3);
  if (sh * sw == 0 || n_img == 0 || n_units == 0) return {inter, area, cat_hits};

  const int device = acts.device().index();
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device);
  const at::Tensor wy = source_weights(acts.size(2), sh, acts, stream);
  const at::Tensor wx = source_weights(acts.size(3), sw, acts, stream);
  const LaunchPlan plan = plan_launch(n_img, n_units, sh, sw, kMaxUnitsPerBlock, device);

  Params p;
  p.acts = acts.data_ptr<float>();
  p.thr = thresholds.data_ptr<float>();
  p.labels = labels.data_ptr<int32_t>();
  p.label_cat = label_category.data_ptr<int64_t>();
  p.wy = reinterpret_cast<const SourceWeight*>(wy.data_ptr<int32_t>());
  p.wx = reinterpret_cast<const SourceWeight*>(wx.data_ptr<int32_t>());
  p.inter = inter.data_ptr<int64_t>();
  p.area = area.data_ptr<int64_t>();
  p.cat_hits = cat_hits.data_ptr<int64_t>();
  p.n_units = n_units;
  p.tiles = plan.tiles;
  p.h = static_cast<int>(acts.size(2));
  p.w = static_cast<int>(acts.size(3));
  p.n_planes = static_cast<int>(labels.size(1));
  p.sh = static_cast<int>(sh);
  p.sw = static_cast<int>(sw);
  p.n_labels = static_cast<int>(num_labels);     // <= kMaxLabels (checked)
  p.n_cats = static_cast<int>(num_categories);   // <= kMaxCategories (checked)
  p.units_per_block = plan.units_per_block;
  p.bands = plan.bands;
  p.rows_per_band = plan.rows_per_band;
  const void* kernel = reinterpret_cast<const void*>(&tally_kernel);
  p.shared_labels = reserve_shared_bins(kernel, device, num_labels);
  p.shared_cats = reserve_shared_bins(kernel, device, (p.shared_labels ? num_labels : 0) +
                                                          num_categories);
  const int64_t n_bins = (p.shared_labels ? num_labels : 0) + (p.shared_cats ? num_categories : 0);

  tally_kernel<<<static_cast<unsigned>(plan.blocks), kThreads, n_bins * sizeof(int), stream>>>(p);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {inter, area, cat_hits};
}

}  // namespace
}  // namespace ndcore

TORCH_LIBRARY_IMPL(ndcore, CUDA, m) { m.impl("tally", &ndcore::tally_cuda); }
