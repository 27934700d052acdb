// Schemas and input checks of the selection ops (semantics: ndcore/ops/select.py). They pick, in
// one read of a batch of maps, what pass 1 keeps of it: the values above each unit's running tail
// floor (values_above), and the cells pass 2 needs around the values above a bound (kept_cells);
// fill_cells makes pass 2's dense maps from the kept cells again.
// The CPU kernels are cpu/select_cpu.cpp; on CUDA the op runs its PyTorch reference (registered
// from Python), whose gathers are fast there.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <limits>
#include <vector>

#include "checks.h"
#include "select.h"

namespace ndcore {

void check_select_inputs(const char* op, const at::Tensor& maps, const at::Tensor& floor,
                         const char* floor_name, bool int32_positions,
                         c10::DeviceType kernel_device) {
  check_same_device(op, {{"maps", &maps}, {floor_name, &floor}}, kernel_device);
  TORCH_CHECK_VALUE(maps.dim() == 4, op, ": maps must be [B, U, h, w], got shape ",
                    maps.sizes());
  TORCH_CHECK_VALUE(floor.dim() == 1 && floor.size(0) == maps.size(1), op, ": ", floor_name,
                    " must have shape [", maps.size(1), "], got shape ", floor.sizes());
  TORCH_CHECK_VALUE(maps.scalar_type() == at::kFloat, op, ": maps must be float32, got ",
                    c10::getDtypeNames(maps.scalar_type()).first);
  TORCH_CHECK_VALUE(floor.scalar_type() == at::kFloat, op, ": ", floor_name,
                    " must be float32, got ", c10::getDtypeNames(floor.scalar_type()).first);
  if (int32_positions) {
    TORCH_CHECK_VALUE(maps.numel() <= std::numeric_limits<int32_t>::max(), op, ": maps has ",
                      maps.numel(), " values but kept cells are numbered with int32 (at most ",
                      std::numeric_limits<int32_t>::max(), "); use smaller batches");
  }
  check_contiguous(op, {{"maps", &maps}, {floor_name, &floor}});
}

void check_fill_cells_inputs(const at::Tensor& rows, const at::Tensor& units,
                             const at::Tensor& positions, const at::Tensor& values,
                             const at::Tensor& fill, int64_t num_images, int64_t h, int64_t w,
                             c10::DeviceType kernel_device) {
  const char* op = kFillCells;
  check_same_device(op, {{"rows", &rows}, {"units", &units}, {"positions", &positions},
                         {"values", &values}, {"fill", &fill}},
                    kernel_device);
  TORCH_CHECK_VALUE(rows.dim() == 1 && units.dim() == 1 && rows.size(0) == units.size(0), op,
                    ": rows and units must be 1-d and of one length, got shapes ", rows.sizes(),
                    " and ", units.sizes());
  TORCH_CHECK_VALUE(positions.dim() == 1 && values.dim() == 1 &&
                        positions.size(0) == values.size(0),
                    op, ": positions and values must be 1-d and of one length, got shapes ",
                    positions.sizes(), " and ", values.sizes());
  TORCH_CHECK_VALUE(fill.dim() == 1, op, ": fill must be [U], got shape ", fill.sizes());
  TORCH_CHECK_VALUE(num_images >= 0 && h >= 0 && w >= 0, op,
                    ": num_images, h and w must be >= 0, got ", num_images, ", ", h, ", ", w);
  const int64_t n_kept = rows.size(0), cells = n_kept * h * w;  // n_kept <= N * U
  TORCH_CHECK_VALUE(n_kept <= num_images * fill.size(0), op, ": ", n_kept,
                    " kept maps but only ", num_images, " x ", fill.size(0), " maps");
  TORCH_CHECK_VALUE(cells <= std::numeric_limits<int32_t>::max(), op, ": ", n_kept,
                    " kept maps of ", h, "x", w, " have more cells than int32 positions number");
  TORCH_CHECK_VALUE(rows.scalar_type() == at::kLong && units.scalar_type() == at::kLong, op,
                    ": rows and units must be int64, got ",
                    c10::getDtypeNames(rows.scalar_type()).first, " and ",
                    c10::getDtypeNames(units.scalar_type()).first);
  TORCH_CHECK_VALUE(positions.scalar_type() == at::kInt, op, ": positions must be int32, got ",
                    c10::getDtypeNames(positions.scalar_type()).first);
  TORCH_CHECK_VALUE(values.scalar_type() == at::kFloat && fill.scalar_type() == at::kFloat, op,
                    ": values and fill must be float32, got ",
                    c10::getDtypeNames(values.scalar_type()).first, " and ",
                    c10::getDtypeNames(fill.scalar_type()).first);
  check_contiguous(op, {{"rows", &rows}, {"units", &units}, {"positions", &positions},
                        {"values", &values}, {"fill", &fill}});
  // Value checks (one sync on a GPU): each map once and in order, each cell once and in range.
  std::vector<at::Tensor> stats;
  const int64_t n_units = fill.size(0);
  if (n_kept) {
    const at::Tensor keys = rows * n_units + units;
    stats.push_back(at::logical_and(rows.ge(0), rows.lt(num_images)).all());
    stats.push_back(at::logical_and(units.ge(0), units.lt(n_units)).all());
    stats.push_back(n_kept > 1 ? keys.slice(0, 1).gt(keys.slice(0, 0, -1)).all()
                               : at::ones({}, rows.options().dtype(at::kBool)));
  }
  if (positions.numel()) {
    stats.push_back(positions.min());
    stats.push_back(positions.max());
    stats.push_back(positions.numel() > 1
                        ? positions.slice(0, 1).gt(positions.slice(0, 0, -1)).all()
                        : at::ones({}, rows.options().dtype(at::kBool)));
  }
  const std::vector<int64_t> v = to_host(stats);
  size_t i = 0;
  if (n_kept) {
    TORCH_CHECK_VALUE(v[i], op, ": rows must lie in [0, ", num_images, ")");
    TORCH_CHECK_VALUE(v[i + 1], op, ": units must lie in [0, ", n_units, ")");
    TORCH_CHECK_VALUE(v[i + 2], op,
                      ": kept maps must be distinct and in (row, unit) order");
    i += 3;
  }
  if (positions.numel()) {
    TORCH_CHECK_VALUE(v[i] >= 0 && v[i + 1] < cells, op, ": positions must lie in [0, ", cells,
                      "), got [", v[i], ", ", v[i + 1], "]");
    TORCH_CHECK_VALUE(v[i + 2], op, ": positions must be strictly increasing");
  }
}

}  // namespace ndcore

TORCH_LIBRARY_FRAGMENT(ndcore, m) {
  m.def("values_above(Tensor maps, Tensor floor) -> (Tensor values, Tensor counts)");
  m.def("kept_cells(Tensor maps, Tensor bound) -> "
        "(Tensor rows, Tensor units, Tensor positions, Tensor values)");
  m.def("fill_cells(Tensor rows, Tensor units, Tensor positions, Tensor values, Tensor fill, "
        "int num_images, int h, int w) -> Tensor");
}
