// CPU kernel of ndcore::tally (semantics: ndcore/ops/reference.py).
//
// Work is organised so that almost nothing is done for the (image, unit) maps and bilinear cells
// that cannot exceed the threshold (the threshold is a top quantile, so most cannot): see
// for_each_pixel_above in maps_cpu.h. Each pixel above the threshold bumps the unit's
// counters for its labels directly (no mask). Parallelism: parallel_over_maps (maps_cpu.h).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <vector>

#include "../tally.h"
#include "../tally_common.h"
#include "maps_cpu.h"

namespace ndcore {
namespace {

// Everything a worker needs, read-only (outputs are written through the raw pointers).
struct Problem {
  int64_t n_units, h, w, n_planes, sh, sw, n_labels, n_cats;
  const float* acts;
  const float* thr;
  std::vector<float> skip;  // skip bound per unit
  const int32_t* labels;
  std::vector<int32_t> cat;  // category of each label, -1 for none (or label 0)
  int64_t* area;             // [N, U]
  int64_t* cat_hits;         // [N, U, C]
  const cpu::Axis* ay;
  const cpu::Axis* ax;
};

// Map (n, u): counts its pixels above the threshold into inter_u (every label plane once) and
// cat_hits; returns the mask area. `xa`/`xb` are scratch rows of length sw.
int64_t tally_map(const Problem& pb, int64_t n, int64_t u, int64_t* inter_u, float* xa,
                  float* xb) {
  const float* a = pb.acts + (n * pb.n_units + u) * pb.h * pb.w;
  // Copied into locals captured by value: the counters written below are int64 like these
  // fields, so the compiler would otherwise reload them from `pb` after every increment.
  const float t = pb.thr[u];
  const int64_t npix = pb.sh * pb.sw, sw = pb.sw, n_planes = pb.n_planes;
  const int32_t* labels_n = pb.labels + n * n_planes * npix;
  const int32_t* cat = pb.cat.data();
  int64_t* cats_nu = pb.cat_hits + (n * pb.n_units + u) * pb.n_cats;
  int64_t area = 0;
  cpu::for_each_pixel_above(
      a, pb.w, *pb.ay, *pb.ax, t, pb.skip[u], xa, xb,
      [&area, npix, sw, n_planes, labels_n, cat, cats_nu, inter_u](int64_t y, int64_t x, float) {
        ++area;
        const int64_t p = y * sw + x;
        for (int64_t j = 0; j < n_planes; ++j) {
          const int32_t lab = labels_n[j * npix + p];
          if (lab == 0) continue;  // column 0 of intersection is 0 by definition
          ++inter_u[lab];
          const int32_t c = cat[lab];
          if (c >= 0) ++cats_nu[c];
        }
      });
  return area;
}

TallyResult tally_cpu(const at::Tensor& acts, const at::Tensor& thresholds,
                      const at::Tensor& labels_in, const at::Tensor& label_category,
                      int64_t num_labels, int64_t num_categories) {
  check_tally_inputs(acts, thresholds, labels_in, label_category, num_labels, num_categories,
                     c10::DeviceType::CPU);
  const at::Tensor labels =
      check_tally_values(labels_in, label_category, num_labels, num_categories);
  const int64_t n_img = acts.size(0), n_units = acts.size(1);
  auto opts = acts.options().dtype(at::kLong);
  at::Tensor inter = at::zeros({n_units, num_labels}, opts);
  at::Tensor area = at::zeros({n_img, n_units}, opts);
  at::Tensor cat_hits = at::zeros({n_img, n_units, num_categories}, opts);
  if (labels.size(2) * labels.size(3) == 0 || n_img == 0 || n_units == 0)
    return {inter, area, cat_hits};

  const cpu::Axis ay(acts.size(2), labels.size(2)), ax(acts.size(3), labels.size(3));
  Problem pb{n_units, acts.size(2), acts.size(3), labels.size(1), labels.size(2),
             labels.size(3), num_labels, num_categories};
  pb.acts = acts.data_ptr<float>();
  pb.thr = thresholds.data_ptr<float>();
  pb.skip.resize(n_units);
  for (int64_t u = 0; u < n_units; ++u) pb.skip[u] = skip_bound(pb.thr[u]);
  pb.labels = labels.data_ptr<int32_t>();
  const int64_t* lc = label_category.data_ptr<int64_t>();
  pb.cat.assign(lc, lc + num_labels);
  pb.cat[0] = -1;  // label 0 (none) never counts for a category
  pb.area = area.data_ptr<int64_t>();
  pb.cat_hits = cat_hits.data_ptr<int64_t>();
  pb.ay = &ay;
  pb.ax = &ax;

  cpu::parallel_over_maps(n_img, n_units, inter,
                          [&](int64_t n0, int64_t n1, int64_t u0, int64_t u1, int64_t* acc) {
    std::vector<float> xa(pb.sw), xb(pb.sw);
    // Images outermost: an image's label planes stay in cache while its units are counted.
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t u = u0; u < u1; ++u)
        pb.area[n * n_units + u] =
            tally_map(pb, n, u, acc + u * num_labels, xa.data(), xb.data());
  });
  inter.select(1, 0).zero_();
  return {inter, area, cat_hits};
}

}  // namespace
}  // namespace ndcore

TORCH_LIBRARY_IMPL(ndcore, CPU, m) { m.impl("tally", &ndcore::tally_cpu); }
