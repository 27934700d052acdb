// Declarations shared by the schema file and the kernels of ndcore::iou_histogram.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace ndcore {

// Largest output, in bytes (U * num_labels * B int64 counts). It also keeps num_labels * B below
// 2^28, so the kernels index a unit's bins with int32.
constexpr int64_t kMaxHistogramBytes = int64_t(1) << 31;

// Structural checks (devices, shapes, dtypes, output size, contiguity); raises ValueError in
// Python. Defined in iou_histogram.cpp.
void check_iou_histogram_inputs(const at::Tensor& acts, const at::Tensor& edges,
                                const at::Tensor& labels, int64_t num_labels,
                                c10::DeviceType kernel_device);

// Value checks (labels in [0, num_labels), edges finite and strictly increasing per unit) read
// with one device-to-host copy; returns the labels narrowed to contiguous int32.
at::Tensor check_iou_histogram_values(const at::Tensor& edges, const at::Tensor& labels,
                                      int64_t num_labels);

}  // namespace ndcore
