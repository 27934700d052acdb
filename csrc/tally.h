// Declarations shared by the schema file and the kernels of ndcore::tally.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace ndcore {

using TallyResult = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

// Checks shapes, dtypes, contiguity and that every tensor lives on `device_type`; raises a
// readable c10::Error (ValueError/RuntimeError in Python) otherwise. Defined in tally.cpp.
void check_tally_inputs(const at::Tensor& acts, const at::Tensor& thresholds,
                        const at::Tensor& labels, const at::Tensor& label_category,
                        int64_t num_labels, int64_t num_categories, c10::DeviceType device_type);

}  // namespace ndcore
