// CPU kernel of ndcore::tally (semantics: ndcore/ops/reference.py).
//
// Work is organised so that almost nothing is done for the (image, unit) maps and bilinear cells
// that cannot exceed the threshold (the threshold is a top quantile, so most cannot):
//   * a map whose max is <= the skip bound S (see tally_common.h) is skipped outright;
//   * otherwise only the low-res cells with a corner > S are interpolated, over the block of
//     output pixels whose source cell it is, with the reference's exact float32 operations;
//   * each pixel above the threshold bumps the unit's counters for its labels directly (no mask).
// Parallelism: unit chunks are handed out dynamically to at::parallel_for workers (so
// torch.set_num_threads is obeyed). A chunk owns its units' rows of every output, so there is
// nothing to merge; with fewer units than workers, images are split instead and each worker
// accumulates `intersection` privately, merged at the end.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <limits>
#include <vector>

#include "../tally.h"
#include "../tally_common.h"

namespace ndcore {
namespace {

// One axis of the upsampling: weights per output index, and for every low-res index the range of
// output indices whose first source sample it is (contiguous, since the map is monotone).
struct Axis {
  std::vector<SourceWeight> w;
  std::vector<int64_t> begin, end;  // per low-res index
  std::vector<int64_t> used;        // low-res indices with a non-empty output range

  Axis(int64_t in_size, int64_t out_size)
      : w(out_size), begin(in_size, 0), end(in_size, 0) {
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

// Everything a worker needs, read-only (outputs are written through the raw pointers).
struct Problem {
  int64_t n_img, n_units, h, w, n_planes, sh, sw, n_labels, n_cats;
  const float* acts;
  const float* thr;
  std::vector<float> skip;  // skip bound per unit
  const int32_t* labels;
  std::vector<int32_t> cat;  // category of each label, -1 for none (or label 0)
  int64_t* area;             // [N, U]
  int64_t* cat_hits;         // [N, U, C]
  const Axis* ay;
  const Axis* ax;
};

inline float ignore_nan_max(float m, float v) { return v > m ? v : m; }

float map_max(const float* a, int64_t count) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < count; ++i) m = ignore_nan_max(m, a[i]);
  return m;
}

// Counts one pixel above threshold of map (n, u): every label plane once.
inline void count_pixel(const Problem& pb, const int32_t* labels_n, int64_t p, int64_t* inter_u,
                        int64_t* cats_nu) {
  const int64_t npix = pb.sh * pb.sw;
  for (int64_t j = 0; j < pb.n_planes; ++j) {
    const int32_t lab = labels_n[j * npix + p];
    if (lab == 0) continue;  // column 0 of intersection is 0 by definition
    ++inter_u[lab];
    const int32_t c = pb.cat[lab];
    if (c >= 0) ++cats_nu[c];
  }
}

// Map (n, u): interpolate the cells that may exceed the threshold and count their pixels above
// it. `xa`/`xb` are scratch rows of length sw. Returns the mask area.
int64_t tally_map(const Problem& pb, int64_t n, int64_t u, int64_t* inter_u, float* xa,
                  float* xb) {
  const float* a = pb.acts + (n * pb.n_units + u) * pb.h * pb.w;
  const float s = pb.skip[u];
  if (!(map_max(a, pb.h * pb.w) > s)) return 0;
  const float t = pb.thr[u];
  const int32_t* labels_n = pb.labels + n * pb.n_planes * pb.sh * pb.sw;
  int64_t* cats_nu = pb.cat_hits + (n * pb.n_units + u) * pb.n_cats;
  const Axis& ay = *pb.ay;
  const Axis& ax = *pb.ax;
  int64_t area = 0;
  for (const int64_t r : ay.used) {
    const float* row0 = a + r * pb.w;
    const float* row1 = a + (r + ay.w[ay.begin[r]].step) * pb.w;
    for (const int64_t c : ax.used) {
      const int64_t c1 = c + ax.w[ax.begin[c]].step;
      const float cmax = ignore_nan_max(ignore_nan_max(row0[c], row0[c1]),
                                        ignore_nan_max(row1[c], row1[c1]));
      if (!(cmax > s)) continue;
      const int64_t x_begin = ax.begin[c], x_end = ax.end[c];
      for (int64_t x = x_begin; x < x_end; ++x) {
        xa[x] = lerp_x(ax.w[x].l0, ax.w[x].l1, row0[c], row0[c1]);
        xb[x] = lerp_x(ax.w[x].l0, ax.w[x].l1, row1[c], row1[c1]);
      }
      for (int64_t y = ay.begin[r]; y < ay.end[r]; ++y) {
        const float l0y = ay.w[y].l0, l1y = ay.w[y].l1;
        for (int64_t x = x_begin; x < x_end; ++x) {
          if (lerp_y(l0y, l1y, xa[x], xb[x]) > t) {
            ++area;
            count_pixel(pb, labels_n, y * pb.sw + x, inter_u, cats_nu);
          }
        }
      }
    }
  }
  return area;
}

// Images [n0, n1) x units [u0, u1); `inter` is a [U, L] accumulator.
void tally_block(const Problem& pb, int64_t n0, int64_t n1, int64_t u0, int64_t u1,
                 int64_t* inter) {
  std::vector<float> xa(pb.sw), xb(pb.sw);
  // Images outermost: an image's label planes stay in cache while its units are counted.
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t u = u0; u < u1; ++u)
      pb.area[n * pb.n_units + u] =
          tally_map(pb, n, u, inter + u * pb.n_labels, xa.data(), xb.data());
}

void check_label_values(const at::Tensor& labels, const at::Tensor& label_category,
                        int64_t num_labels, int64_t num_categories) {
  if (labels.numel()) {
    const auto [lo, hi] = at::aminmax(labels);
    TORCH_CHECK_VALUE(lo.item<int32_t>() >= 0 && hi.item<int32_t>() < num_labels,
                      "ndcore::tally: label values must lie in [0, ", num_labels, "), got [",
                      lo.item<int32_t>(), ", ", hi.item<int32_t>(), "]");
  }
  const auto [clo, chi] = at::aminmax(label_category);
  TORCH_CHECK_VALUE(clo.item<int64_t>() >= -1 && chi.item<int64_t>() < num_categories,
                    "ndcore::tally: label_category values must be -1 or lie in [0, ",
                    num_categories, ")");
}

TallyResult tally_cpu(const at::Tensor& acts, const at::Tensor& thresholds,
                      const at::Tensor& labels, const at::Tensor& label_category,
                      int64_t num_labels, int64_t num_categories) {
  check_tally_inputs(acts, thresholds, labels, label_category, num_labels, num_categories,
                     c10::DeviceType::CPU);
  check_label_values(labels, label_category, num_labels, num_categories);
  const int64_t n_img = acts.size(0), n_units = acts.size(1);
  auto opts = acts.options().dtype(at::kLong);
  at::Tensor inter = at::zeros({n_units, num_labels}, opts);
  at::Tensor area = at::zeros({n_img, n_units}, opts);
  at::Tensor cat_hits = at::zeros({n_img, n_units, num_categories}, opts);
  if (labels.size(2) * labels.size(3) == 0 || n_img == 0 || n_units == 0)
    return {inter, area, cat_hits};

  const Axis ay(acts.size(2), labels.size(2)), ax(acts.size(3), labels.size(3));
  Problem pb{n_img, n_units, acts.size(2), acts.size(3), labels.size(1), labels.size(2),
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

  const int64_t n_workers = at::get_num_threads();
  int64_t* inter_ptr = inter.data_ptr<int64_t>();
  if (n_units >= 2 * n_workers) {
    // Units split in small chunks taken dynamically: activity differs a lot between units.
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(16, n_units / (4 * n_workers)));
    const int64_t n_chunks = (n_units + chunk - 1) / chunk;
    std::atomic<int64_t> next{0};
    at::parallel_for(0, n_workers, 1, [&](int64_t, int64_t) {
      for (int64_t k = next++; k < n_chunks; k = next++)
        tally_block(pb, 0, n_img, k * chunk, std::min(n_units, (k + 1) * chunk), inter_ptr);
    });
  } else {
    // Few units: split the images; each worker keeps its own intersection, summed afterwards.
    at::Tensor partial = at::zeros({n_workers, n_units, num_labels}, opts);
    int64_t* part_ptr = partial.data_ptr<int64_t>();
    at::parallel_for(0, n_img, 1, [&](int64_t n0, int64_t n1) {
      const int64_t tid = at::get_thread_num();
      tally_block(pb, n0, n1, 0, n_units, part_ptr + tid * n_units * num_labels);
    });
    inter = partial.sum(0);
  }
  inter.select(1, 0).zero_();
  return {inter, area, cat_hits};
}

}  // namespace
}  // namespace ndcore

TORCH_LIBRARY_IMPL(ndcore, CPU, m) { m.impl("tally", &ndcore::tally_cpu); }
