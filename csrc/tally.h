// Declarations shared by the schema file and the kernels of ndcore::tally.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace ndcore {

using TallyResult = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

// Structural checks (devices, shapes, dtypes, contiguity) of ndcore::tally; the kernel of
// `kernel_device` calls them first. Raises ValueError in Python. Defined in tally.cpp.
void check_tally_inputs(const at::Tensor& acts, const at::Tensor& thresholds,
                        const at::Tensor& labels, const at::Tensor& label_category,
                        int64_t num_labels, int64_t num_categories,
                        c10::DeviceType kernel_device);

// Value checks (label values in [0, num_labels), label_category values in {-1} u [0, C)), read
// with one device-to-host copy; returns the labels narrowed to contiguous int32, exact since
// they are in range. Both kernels call it after check_tally_inputs.
at::Tensor check_tally_values(const at::Tensor& labels, const at::Tensor& label_category,
                              int64_t num_labels, int64_t num_categories);

}  // namespace ndcore
