// SPDX-License-Identifier: Apache-2.0
// A read-only view of the tensors of one checkpoint (safetensors file(s) or GGUF), memory-mapped.
// Immutable after creation: safe to read from any thread.
#ifndef VERDICT_ENGINE_IO_WEIGHT_SOURCE_H_
#define VERDICT_ENGINE_IO_WEIGHT_SOURCE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "engine/dtype.h"

namespace verdict::engine {

// One stored tensor. `shape` is outermost-first (numpy / safetensors / PyTorch order), so a
// linear layer's weight is [out_features, in_features] in every format (GGUF's ne[] is reversed
// by the loader). `data` points into a memory map owned by the WeightSource.
struct WeightTensor {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;

  int64_t num_elements() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  // The tensor called `name` (the checkpoint's own naming), or nullptr if absent.
  virtual const WeightTensor* Find(absl::string_view name) const = 0;
  // All tensor names, sorted.
  virtual std::vector<std::string> Names() const = 0;
  // "safetensors" or "gguf".
  virtual absl::string_view Format() const = 0;
};

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_IO_WEIGHT_SOURCE_H_
