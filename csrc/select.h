// Declarations shared by the schema file and the kernels of the selection ops ndcore::values_above,
// ndcore::kept_cells and ndcore::fill_cells (semantics: ndcore/ops/select.py).
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace ndcore {

constexpr const char* kValuesAbove = "ndcore::values_above";
constexpr const char* kKeptCells = "ndcore::kept_cells";
constexpr const char* kFillCells = "ndcore::fill_cells";

// Structural checks of both ops: maps [B, U, h, w] and a per-unit `floor_name` [U], float32,
// contiguous, on one device of the kernel's type; with `int32_positions` (kept_cells) also at most
// 2^31 - 1 map values. Raises ValueError in Python. Defined in select.cpp.
void check_select_inputs(const char* op, const at::Tensor& maps, const at::Tensor& floor,
                         const char* floor_name, bool int32_positions,
                         c10::DeviceType kernel_device);

// Structural and value checks of fill_cells (rows, units: [K] int64; positions [P] int32 and values
// [P] float32; fill [U] float32; each kept map once, in (row, unit) order; positions strictly
// increasing in [0, K * h * w)). Reads the indices (one sync on a GPU). Defined in select.cpp.
void check_fill_cells_inputs(const at::Tensor& rows, const at::Tensor& units,
                             const at::Tensor& positions, const at::Tensor& values,
                             const at::Tensor& fill, int64_t num_images, int64_t h, int64_t w,
                             c10::DeviceType kernel_device);

}  // namespace ndcore
