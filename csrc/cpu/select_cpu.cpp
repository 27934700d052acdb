// CPU kernels of ndcore::values_above, ndcore::kept_cells and ndcore::fill_cells (semantics:
// ndcore/ops/select.py).
//
// The first two read each map once and keep a few percent of it. Work is split over contiguous
// ranges (of units, or of maps in (row, unit) order); each range collects its output in its own
// buffers, which are then concatenated in range order, so the result is the same for any number
// of threads.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "../select.h"
#include "maps_cpu.h"

namespace ndcore {
namespace {

// Appends the values of p[0..n) above t to out, in order (branch-free into a scratch buffer:
// which values pass is data-dependent and would defeat the branch predictor).
inline void append_above(const float* p, int64_t n, float t, std::vector<float>& scratch,
                         std::vector<float>& out) {
  float* s = scratch.data();
  int64_t k = 0;
  for (int64_t i = 0; i < n; ++i) {
    s[k] = p[i];
    k += p[i] > t;
  }
  out.insert(out.end(), s, s + k);
}

std::tuple<at::Tensor, at::Tensor> values_above_cpu(const at::Tensor& maps,
                                                    const at::Tensor& floor) {
  check_select_inputs(kValuesAbove, maps, floor, "floor", false, c10::DeviceType::CPU);
  const int64_t n_rows = maps.size(0), n_units = maps.size(1);
  const int64_t hw = maps.size(2) * maps.size(3);
  const float* m = maps.data_ptr<float>();
  const float* f = floor.data_ptr<float>();
  std::vector<std::vector<float>> per_unit(n_units);
  at::parallel_for(0, n_units, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch(hw);
    for (int64_t u = begin; u < end; ++u) {
      for (int64_t b = 0; b < n_rows; ++b) {
        const float* map = m + (b * n_units + u) * hw;
        if (cpu::any_above(map, hw, f[u])) append_above(map, hw, f[u], scratch, per_unit[u]);
      }
    }
  });
  at::Tensor counts = at::empty({n_units}, maps.options().dtype(at::kLong));
  int64_t* c = counts.data_ptr<int64_t>();
  int64_t most = 0;
  for (int64_t u = 0; u < n_units; ++u) {
    c[u] = static_cast<int64_t>(per_unit[u].size());
    most = std::max(most, c[u]);
  }
  at::Tensor values =
      at::full({n_units, most}, -std::numeric_limits<float>::infinity(), maps.options());
  float* v = values.data_ptr<float>();
  for (int64_t u = 0; u < n_units; ++u) {
    if (c[u]) std::memcpy(v + u * most, per_unit[u].data(), c[u] * sizeof(float));
  }
  return {values, counts};
}

// What one range of maps keeps: the maps (flat row * U + unit), how many cells each, and the
// cells (position within the map, value).
struct KeptRange {
  std::vector<int64_t> maps;
  std::vector<int32_t> cells;
  std::vector<int32_t> positions;
  std::vector<float> values;
};

// Keeps, of map p [h, w], the cells within one step (3x3) of a value above t; false when no
// value is above t. Rows are bit masks of `words` 64-bit words (bit x % 64 of word x / 64 is
// column x): the neighbourhood is a few shifts and ORs per word, and only the kept cells are
// visited when writing them out. `above` and `near` are scratch of h * words words.
bool keep_map(const float* p, int64_t h, int64_t w, float t, std::vector<uint64_t>& above,
              std::vector<uint64_t>& near, KeptRange& out) {
  if (!cpu::any_above(p, h * w, t)) return false;
  const int64_t words = (w + 63) / 64;
  const uint64_t last_word = w % 64 ? (uint64_t(1) << (w % 64)) - 1 : ~uint64_t(0);
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t j = 0; j < words; ++j) {
      const float* v = p + y * w + j * 64;
      const int64_t n = std::min<int64_t>(64, w - j * 64);
      uint64_t bits = 0;
      for (int64_t b = 0; b < n; ++b) bits |= static_cast<uint64_t>(v[b] > t) << b;
      above[y * words + j] = bits;
    }
  }
  for (int64_t y = 0; y < h; ++y) {  // each value's row neighbours, across word boundaries
    const uint64_t* a = above.data() + y * words;
    for (int64_t j = 0; j < words; ++j) {
      const uint64_t from_left = j > 0 ? a[j - 1] >> 63 : 0;
      const uint64_t from_right = j + 1 < words ? a[j + 1] << 63 : 0;
      uint64_t r = a[j] | (a[j] << 1) | (a[j] >> 1) | from_left | from_right;
      if (j + 1 == words) r &= last_word;
      near[y * words + j] = r;
    }
  }
  const size_t before = out.positions.size();
  for (int64_t y = 0; y < h; ++y) {  // ... and those of the rows above and below
    for (int64_t j = 0; j < words; ++j) {
      uint64_t m = near[y * words + j];
      if (y > 0) m |= near[(y - 1) * words + j];
      if (y + 1 < h) m |= near[(y + 1) * words + j];
      for (; m; m &= m - 1) {
        const int64_t i = y * w + j * 64 + std::countr_zero(m);
        out.positions.push_back(static_cast<int32_t>(i));
        out.values.push_back(p[i]);
      }
    }
  }
  out.cells.push_back(static_cast<int32_t>(out.positions.size() - before));
  return true;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> kept_cells_cpu(
    const at::Tensor& maps, const at::Tensor& bound) {
  check_select_inputs(kKeptCells, maps, bound, "bound", true, c10::DeviceType::CPU);
  const int64_t n_units = maps.size(1), h = maps.size(2), w = maps.size(3), hw = h * w;
  const int64_t n_maps = maps.size(0) * n_units;
  const float* m = maps.data_ptr<float>();
  const float* t = bound.data_ptr<float>();
  std::map<int64_t, KeptRange> ranges;  // by first map
  std::mutex lock;
  at::parallel_for(0, n_maps, 16, [&](int64_t begin, int64_t end) {
    KeptRange out;
    std::vector<uint64_t> above(h * ((w + 63) / 64)), near(above.size());
    for (int64_t i = begin; i < end; ++i) {
      if (keep_map(m + i * hw, h, w, t[i % n_units], above, near, out)) out.maps.push_back(i);
    }
    std::lock_guard<std::mutex> guard(lock);
    ranges.emplace(begin, std::move(out));
  });
  int64_t n_kept = 0, n_cells = 0;
  for (const auto& [_, r] : ranges) {
    n_kept += static_cast<int64_t>(r.maps.size());
    n_cells += static_cast<int64_t>(r.positions.size());
  }
  const auto longs = maps.options().dtype(at::kLong);
  at::Tensor rows = at::empty({n_kept}, longs), units = at::empty({n_kept}, longs);
  at::Tensor positions = at::empty({n_cells}, maps.options().dtype(at::kInt));
  at::Tensor values = at::empty({n_cells}, maps.options());
  int64_t *row = rows.data_ptr<int64_t>(), *unit = units.data_ptr<int64_t>();
  int32_t* pos = positions.data_ptr<int32_t>();
  float* val = values.data_ptr<float>();
  int64_t k = 0;
  for (const auto& [_, r] : ranges) {
    std::memcpy(val, r.values.data(), r.values.size() * sizeof(float));
    val += r.values.size();
    size_t cell = 0;
    for (size_t j = 0; j < r.maps.size(); ++j, ++k) {
      row[k] = r.maps[j] / n_units;
      unit[k] = r.maps[j] % n_units;
      // k * hw + position < n_maps * hw <= 2^31 - 1 (checked)
      const int32_t offset = static_cast<int32_t>(k * hw);
      for (int32_t c = 0; c < r.cells[j]; ++c, ++cell) *pos++ = offset + r.positions[cell];
    }
  }
  return {rows, units, positions, values};
}

at::Tensor fill_cells_cpu(const at::Tensor& rows, const at::Tensor& units,
                          const at::Tensor& positions, const at::Tensor& values,
                          const at::Tensor& fill, int64_t num_images, int64_t h, int64_t w) {
  check_fill_cells_inputs(rows, units, positions, values, fill, num_images, h, w,
                          c10::DeviceType::CPU);
  const int64_t n_units = fill.size(0), hw = h * w;
  at::Tensor out = at::empty({num_images, n_units, h, w}, fill.options());
  float* o = out.data_ptr<float>();
  const float* f = fill.data_ptr<float>();
  at::parallel_for(0, num_images, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b)
      for (int64_t u = 0; u < n_units; ++u) std::fill_n(o + (b * n_units + u) * hw, hw, f[u]);
  });
  const int64_t *row = rows.data_ptr<int64_t>(), *unit = units.data_ptr<int64_t>();
  const int32_t* pos = positions.data_ptr<int32_t>();
  const float* val = values.data_ptr<float>();
  // Positions ascend (checked), so a range finds its kept map k once and then walks forward.
  at::parallel_for(0, positions.numel(), 1 << 14, [&](int64_t begin, int64_t end) {
    int64_t k = pos[begin] / hw;
    for (int64_t i = begin; i < end; ++i) {
      while (pos[i] >= (k + 1) * hw) ++k;
      o[(row[k] * n_units + unit[k]) * hw + (pos[i] - k * hw)] = val[i];
    }
  });
  return out;
}

}  // namespace
}  // namespace ndcore

TORCH_LIBRARY_IMPL(ndcore, CPU, m) {
  m.impl("values_above", &ndcore::values_above_cpu);
  m.impl("kept_cells", &ndcore::kept_cells_cpu);
  m.impl("fill_cells", &ndcore::fill_cells_cpu);
}
