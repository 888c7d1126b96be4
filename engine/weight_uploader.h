// SPDX-License-Identifier: Apache-2.0
// Moves a model slice's tensors from a checkpoint (WeightSource) onto a backend, in the form the
// backend computes with (internal to engine/model.cc; its own file so that the tensor handling can
// be read and tested apart from the forward pass):
//   - shape checks and tensor-parallel parts (a rank's rows or columns of a tensor);
//   - stacking several tensors' rows into one matrix (q|k|v, gate|up);
//   - FP8: a checkpoint's E4M3 weights and their scale tensors become DType::kF8E4M3Block rows
//     (engine/fp8.h), and when the backend asks for it (Backend::QuantizesProjectionsToFp8) the
//     layers' linear projections of a 16/32-bit checkpoint are quantized to it.
// Converted or copied host bytes live in `owned` while the backend views them (CPU backend) and are
// dropped after upload by a backend that copies weights (CUDA).
#ifndef VERDICT_ENGINE_WEIGHT_UPLOADER_H_
#define VERDICT_ENGINE_WEIGHT_UPLOADER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/io/weight_source.h"
#include "engine/model_config.h"

namespace verdict::engine {

// The part of a [rows, cols] tensor (1-D: [1, cols]) one tensor-parallel rank loads.
struct WeightPart {
  enum class Kind { kWhole, kRows, kCols };
  Kind kind = Kind::kWhole;
  int64_t begin = 0;
  int64_t count = 0;

  static WeightPart Whole() { return WeightPart{}; }
  static WeightPart Rows(int64_t begin, int64_t count) { return WeightPart{Kind::kRows, begin, count}; }
  static WeightPart Cols(int64_t begin, int64_t count) { return WeightPart{Kind::kCols, begin, count}; }
};

// What a tensor is for: only a layer's linear projections (q, k, v, o, gate, up, down) may be
// quantized at load; embeddings, the LM head, norms and biases keep the checkpoint's precision.
enum class WeightUse : uint8_t { kOther, kProjection };

// A DType::kF8E4M3 checkpoint tensor's scales (its `<name>_scale` or `<name>_scale_inv` tensor,
// both multiplied in) as one f32 per block of block_rows x block_cols values.
struct Fp8ScaleGrid {
  std::vector<float> values;  // [ceil(rows / block_rows), grid_cols] row-major
  int64_t block_rows = 1;
  int64_t block_cols = 1;
  int64_t grid_cols = 1;
  float At(int64_t row, int64_t col) const {
    return values[(row / block_rows) * grid_cols + col / block_cols];
  }
};
// Reads the scale tensor of `weight_name` ([rows, cols]) from `source`: a scalar (per tensor),
// [rows] or [rows, 1] (per output channel), or [ceil(rows / br), ceil(cols / bc)] blocks with
// (br, bc) = (config.fp8_block_rows, config.fp8_block_cols). No scale tensor: all scales 1.
// Errors (kInvalidArgument, naming the tensor): another shape, a non-float or non-finite scale,
// column blocks that are not multiples of kFp8BlockSize (the engine's blocks must not straddle two).
absl::StatusOr<Fp8ScaleGrid> ReadFp8ScaleGrid(const WeightSource& source,
                                              const std::string& weight_name, int64_t rows,
                                              int64_t cols, const LlamaConfig& config);

class WeightUploader {
 public:
  // `owned` must outlive the uploaded weights.
  WeightUploader(const WeightSource& source, Backend* backend, const LlamaConfig& config,
                 std::vector<std::unique_ptr<std::vector<uint8_t>>>* owned);

  // Uploads `part` of `name` after checking the tensor's shape is [rows, cols] (1-D tensors:
  // rows == 1). A row slice of an unconverted tensor is a view into the source's memory; a column
  // slice (rows are not contiguous) is an owned copy, for q8_0 on 32-value and for FP8 on
  // 128-value block boundaries.
  absl::StatusOr<std::unique_ptr<DeviceWeight>> Get(const std::string& name, int64_t rows,
                                                    int64_t cols,
                                                    WeightPart part = WeightPart::Whole(),
                                                    WeightUse use = WeightUse::kOther);
  // Like Get, but a missing tensor is fine (returns nullptr).
  absl::StatusOr<std::unique_ptr<DeviceWeight>> GetOptional(const std::string& name, int64_t rows,
                                                            int64_t cols,
                                                            WeightPart part = WeightPart::Whole());

  // One projection matrix whose rows are, in order, the row parts of several [rows, cols] tensors
  // (q|k|v, gate|up), each checked as by Get. nullptr, not an error, when their dtypes (after any
  // FP8 conversion) differ: the caller then uploads them one by one.
  struct RowPart {
    std::string name;
    int64_t rows;
    WeightPart part;  // Whole or Rows
  };
  absl::StatusOr<std::unique_ptr<DeviceWeight>> GetStacked(const std::vector<RowPart>& parts,
                                                           int64_t cols);

  size_t bytes() const { return bytes_; }
  int64_t params() const { return params_; }

 private:
  // A tensor in the dtype the backend gets; `bytes` holds it when it was converted.
  struct Prepared {
    WeightTensor tensor;
    std::unique_ptr<std::vector<uint8_t>> bytes;
  };
  absl::StatusOr<const WeightTensor*> Checked(const std::string& name, int64_t rows, int64_t cols);
  // Converts `t` to kF8E4M3Block when it is raw FP8 or a projection the backend wants quantized;
  // a row part is converted alone and *part becomes Whole. Otherwise a view of `t`.
  absl::StatusOr<Prepared> Prepare(const WeightTensor& t, int64_t rows, int64_t cols,
                                   WeightPart* part, WeightUse use);
  absl::StatusOr<std::unique_ptr<DeviceWeight>> Upload(const WeightTensor& tensor, int64_t rows,
                                                       int64_t cols,
                                                       std::unique_ptr<std::vector<uint8_t>> bytes);

  const WeightSource& source_;
  Backend* backend_;
  const LlamaConfig& config_;
  const bool quantize_projections_;
  std::vector<std::unique_ptr<std::vector<uint8_t>>>* owned_;
  size_t bytes_ = 0;
  int64_t params_ = 0;
};

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_WEIGHT_UPLOADER_H_
