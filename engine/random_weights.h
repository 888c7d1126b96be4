// SPDX-License-Identifier: Apache-2.0
// An in-memory checkpoint of random weights with Hugging Face tensor names, for benchmarks of real
// model shapes (e.g. Llama-3.2-1B in bf16) without a multi-gigabyte file. Immutable after creation.
#ifndef VERDICT_ENGINE_RANDOM_WEIGHTS_H_
#define VERDICT_ENGINE_RANDOM_WEIGHTS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/io/weight_source.h"
#include "engine/model_config.h"

namespace verdict::engine {

// Named architectures: "llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b", "llama-3.1-70b" (for
// benchmarks of a layer slice: set num_layers lower), "tiny" (a few MB).
// Errors: kInvalidArgument for an unknown name (the message lists the known ones).
absl::StatusOr<LlamaConfig> PresetConfig(const std::string& name);

// Random weights (normal, std 0.02; norms 1) for `config`, stored as `dtype` (f32, f16, bf16 or
// q8_0; norms always f32). Errors: kInvalidArgument for q8_0 with rows not a multiple of 32,
// kResourceExhausted when memory runs out.
absl::StatusOr<std::unique_ptr<WeightSource>> CreateRandomWeights(const LlamaConfig& config,
                                                                  DType dtype, uint64_t seed);

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_RANDOM_WEIGHTS_H_
