// SPDX-License-Identifier: Apache-2.0
#include "engine/weight_uploader.h"

#include "engine/ggml_quants.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "engine/fp8.h"
#include "engine/kernels/matmul.h"

namespace verdict::engine {
namespace {

std::string ShapeText(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Runs body(begin, end) over [0, n) in contiguous chunks on up to 16 threads: converting a
// 405B checkpoint's projections row by row on one core would take minutes.
void ParallelRows(int64_t n, const std::function<void(int64_t, int64_t)>& body) {
  const int64_t threads = std::clamp<int64_t>(std::thread::hardware_concurrency(), 1, 16);
  const int64_t chunks = std::min<int64_t>(threads, std::max<int64_t>(1, n / 64));
  if (chunks <= 1) {
    body(0, n);
    return;
  }
  std::vector<std::thread> workers;
  for (int64_t c = 0; c < chunks; ++c) {
    workers.emplace_back(body, c * n / chunks, (c + 1) * n / chunks);
  }
  for (std::thread& w : workers) w.join();
}

}  // namespace

absl::StatusOr<Fp8ScaleGrid> ReadFp8ScaleGrid(const WeightSource& source,
                                              const std::string& weight_name, int64_t rows,
                                              int64_t cols, const LlamaConfig& config) {
  Fp8ScaleGrid grid;
  const WeightTensor* scale = source.Find(weight_name + "_scale");
  if (scale == nullptr) scale = source.Find(weight_name + "_scale_inv");
  if (scale == nullptr) {  // unscaled E4M3 values
    grid.values = {1.0f};
    grid.block_rows = std::max<int64_t>(rows, 1);
    grid.block_cols = std::max<int64_t>(cols, 1);
    return grid;
  }
  const std::string what = absl::StrCat("FP8 scale tensor '", scale->name, "' ",
                                        ShapeText(scale->shape), " of weight '", weight_name,
                                        "' [", rows, ", ", cols, "]");
  if (scale->dtype != DType::kF32 && scale->dtype != DType::kBF16 && scale->dtype != DType::kF16) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " has dtype ", DTypeName(scale->dtype), " (expected F32, BF16 or F16)"));
  }
  const int64_t n = scale->num_elements();
  grid.values.resize(n);
  GatherRows(MatMulWeight{scale->data, scale->dtype, 1, n}, std::vector<int32_t>{0},
             grid.values.data());
  for (float v : grid.values) {
    if (!std::isfinite(v)) return absl::InvalidArgumentError(absl::StrCat(what, " has a non-finite scale"));
  }
  const std::vector<int64_t>& s = scale->shape;
  if (n == 1) {  // per tensor: [], [1] or [1, 1]
    grid.block_rows = std::max<int64_t>(rows, 1);
    grid.block_cols = std::max<int64_t>(cols, 1);
  } else if (n == rows && (s.size() == 1 || (s.size() == 2 && s[1] == 1))) {  // per channel
    grid.block_rows = 1;
    grid.block_cols = std::max<int64_t>(cols, 1);
  } else if (s.size() == 2) {  // blocks
    const int64_t br = config.fp8_block_rows;
    const int64_t bc = config.fp8_block_cols;
    if (s[0] != (rows + br - 1) / br || s[1] != (cols + bc - 1) / bc) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " matches neither a per-tensor, per-channel nor a ", br, " x ", bc,
          " block scale (quantization_config.weight_block_size)"));
    }
    grid.block_rows = br;
    grid.block_cols = bc;
    grid.grid_cols = s[1];
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " is neither a per-tensor, per-channel nor a block scale"));
  }
  if (grid.grid_cols > 1 && grid.block_cols % kFp8BlockSize != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": scale blocks of ", grid.block_cols, " columns are not supported (multiples of ",
        kFp8BlockSize, " are)"));
  }
  return grid;
}

WeightUploader::WeightUploader(const WeightSource& source, Backend* backend,
                               const LlamaConfig& config,
                               std::vector<std::unique_ptr<std::vector<uint8_t>>>* owned)
    : source_(source),
      backend_(backend),
      config_(config),
      quantize_projections_(backend->QuantizesProjectionsToFp8()),
      owned_(owned) {}

absl::StatusOr<const WeightTensor*> WeightUploader::Checked(const std::string& name, int64_t rows,
                                                            int64_t cols) {
  const WeightTensor* t = source_.Find(name);
  if (t == nullptr) {
    return absl::NotFoundError(absl::StrCat("checkpoint has no tensor '", name, "'"));
  }
  const bool one_d = rows == 1;
  const bool shape_ok = one_d ? (t->shape.size() == 1 && t->shape[0] == cols)
                              : (t->shape.size() == 2 && t->shape[0] == rows && t->shape[1] == cols);
  if (!shape_ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", name, "' has shape ", ShapeText(t->shape), ", expected ",
        one_d ? absl::StrCat("[", cols, "]") : absl::StrCat("[", rows, ", ", cols, "]")));
  }
  if (t->dtype == DType::kI32) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' has integer dtype"));
  }
  if (t->dtype == DType::kQ8_0 && (one_d || cols % kQ8_0BlockSize != 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", name, "' is q8_0 but its rows are not multiples of 32"));
  }
  if (IsGgmlBlockQuant(t->dtype) && (one_d || cols % GgmlBlockValues(t->dtype) != 0)) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' is ", DTypeName(t->dtype),
                                                   " but its rows are not multiples of ",
                                                   GgmlBlockValues(t->dtype)));
  }
  return t;
}

absl::StatusOr<WeightUploader::Prepared> WeightUploader::Prepare(const WeightTensor& t,
                                                                 int64_t rows, int64_t cols,
                                                                 WeightPart* part,
                                                                 WeightUse use) {
  Prepared p;
  p.tensor = t;
  const bool one_d = t.shape.size() == 1;
  const bool from_fp8 = t.dtype == DType::kF8E4M3;
  const bool quantize = !one_d && use == WeightUse::kProjection && quantize_projections_ &&
                        t.dtype != DType::kF8E4M3Block && !from_fp8;
  if (!from_fp8 && !quantize) return p;
  int64_t first = 0, count = rows;
  if (part->kind == WeightPart::Kind::kRows) {
    first = part->begin;
    count = part->count;
    *part = WeightPart::Whole();
  }
  const int64_t row_bytes = Fp8BlockRowBytes(cols);
  p.bytes = std::make_unique<std::vector<uint8_t>>(static_cast<size_t>(count * row_bytes));
  uint8_t* out = p.bytes->data();
  if (from_fp8) {
    VERDICT_ASSIGN_OR_RETURN(const Fp8ScaleGrid grid,
                             ReadFp8ScaleGrid(source_, t.name, rows, cols, config_));
    ParallelRows(count, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const uint8_t* src = t.data + (first + r) * cols;
        uint8_t* dst = out + r * row_bytes;
        for (int64_t c = 0; c < cols; c += kFp8BlockSize) {
          const float scale = grid.At(first + r, c);
          const int64_t n = std::min(kFp8BlockSize, cols - c);
          std::memcpy(dst, &scale, sizeof(scale));
          std::memcpy(dst + sizeof(scale), src + c, n);
          dst += sizeof(scale) + n;
        }
      }
    });
  } else {
    const MatMulWeight source{t.data, t.dtype, rows, cols};
    ParallelRows(count, [&](int64_t begin, int64_t end) {
      std::vector<float> values(cols);
      std::vector<int32_t> id(1);
      for (int64_t r = begin; r < end; ++r) {
        id[0] = static_cast<int32_t>(first + r);
        GatherRows(source, id, values.data());
        QuantizeFp8BlockRow(values.data(), cols, out + r * row_bytes);
      }
    });
  }
  p.tensor.dtype = DType::kF8E4M3Block;
  p.tensor.shape = one_d ? std::vector<int64_t>{cols} : std::vector<int64_t>{count, cols};
  p.tensor.data = p.bytes->data();
  p.tensor.nbytes = p.bytes->size();
  return p;
}

absl::StatusOr<std::unique_ptr<DeviceWeight>> WeightUploader::Upload(
    const WeightTensor& tensor, int64_t rows, int64_t cols,
    std::unique_ptr<std::vector<uint8_t>> bytes) {
  VERDICT_ASSIGN_OR_RETURN(auto w, backend_->UploadWeight(tensor, rows, cols));
  if (bytes != nullptr && !backend_->CopiesWeights()) owned_->push_back(std::move(bytes));
  bytes_ += tensor.nbytes;
  params_ += rows * cols;
  return w;
}

absl::StatusOr<std::unique_ptr<DeviceWeight>> WeightUploader::Get(const std::string& name,
                                                                  int64_t rows, int64_t cols,
                                                                  WeightPart part, WeightUse use) {
  VERDICT_ASSIGN_OR_RETURN(const WeightTensor* source_tensor, Checked(name, rows, cols));
  const bool one_d = rows == 1;
  const int64_t full = part.kind == WeightPart::Kind::kRows ? rows : cols;
  if (part.kind != WeightPart::Kind::kWhole && part.begin == 0 && part.count == full) {
    part = WeightPart::Whole();
  }
  if (part.kind != WeightPart::Kind::kWhole &&
      (part.begin < 0 || part.count <= 0 || part.begin + part.count > full)) {
    return absl::InternalError(absl::StrCat("slice [", part.begin, ", +", part.count,
                                            ") out of range for tensor '", name, "'"));
  }
  const WeightPart requested = part;
  // A converted row part comes back as exactly those rows (`part` is then Whole).
  VERDICT_ASSIGN_OR_RETURN(Prepared prepared, Prepare(*source_tensor, rows, cols, &part, use));
  const WeightTensor& t = prepared.tensor;
  if (part.kind == WeightPart::Kind::kWhole) {
    const int64_t out_rows = requested.kind == WeightPart::Kind::kRows ? requested.count : rows;
    return Upload(t, out_rows, cols, std::move(prepared.bytes));
  }
  WeightTensor sliced;
  sliced.name = name;
  sliced.dtype = t.dtype;
  VERDICT_ASSIGN_OR_RETURN(const size_t row_bytes, DTypeByteSize(t.dtype, cols));
  int64_t out_rows = rows, out_cols = cols;
  std::unique_ptr<std::vector<uint8_t>> copy;
  if (part.kind == WeightPart::Kind::kRows) {
    out_rows = part.count;
    sliced.shape = {out_rows, cols};
    sliced.data = t.data + part.begin * row_bytes;
    sliced.nbytes = part.count * row_bytes;
  } else {
    const int64_t block = t.dtype == DType::kQ8_0 ? kQ8_0BlockSize
                          : t.dtype == DType::kF8E4M3Block ? kFp8BlockSize
                          : IsGgmlBlockQuant(t.dtype)      ? GgmlBlockValues(t.dtype)
                                                           : 1;
    const int64_t end = part.begin + part.count;
    if (part.begin % block != 0 || (end % block != 0 && end != cols)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", name, "' is ", DTypeName(t.dtype), " and its tensor-parallel column slice [",
          part.begin, ", ", end, ") does not fall on ", block, "-value block boundaries"));
    }
    out_cols = part.count;
    sliced.shape = one_d ? std::vector<int64_t>{out_cols} : std::vector<int64_t>{rows, out_cols};
    VERDICT_ASSIGN_OR_RETURN(const size_t offset, DTypeByteSize(t.dtype, part.begin));
    VERDICT_ASSIGN_OR_RETURN(const size_t slice_bytes, DTypeByteSize(t.dtype, part.count));
    copy = std::make_unique<std::vector<uint8_t>>(rows * slice_bytes);
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(copy->data() + r * slice_bytes, t.data + r * row_bytes + offset, slice_bytes);
    }
    sliced.data = copy->data();
    sliced.nbytes = copy->size();
  }
  // A row slice views the prepared bytes: they must live as long as the weight.
  if (copy == nullptr) copy = std::move(prepared.bytes);
  return Upload(sliced, out_rows, out_cols, std::move(copy));
}

absl::StatusOr<std::unique_ptr<DeviceWeight>> WeightUploader::GetOptional(const std::string& name,
                                                                          int64_t rows,
                                                                          int64_t cols,
                                                                          WeightPart part) {
  if (source_.Find(name) == nullptr) return std::unique_ptr<DeviceWeight>();
  return Get(name, rows, cols, part);
}

absl::StatusOr<std::unique_ptr<DeviceWeight>> WeightUploader::GetStacked(
    const std::vector<RowPart>& parts, int64_t cols) {
  struct Piece {
    Prepared prepared;
    int64_t begin;  // first row to copy from prepared.tensor
    int64_t count;
  };
  std::vector<Piece> pieces;
  for (const RowPart& rp : parts) {
    VERDICT_ASSIGN_OR_RETURN(const WeightTensor* t, Checked(rp.name, rp.rows, cols));
    WeightPart part = rp.part;
    if (part.kind == WeightPart::Kind::kCols ||
        (part.kind == WeightPart::Kind::kRows &&
         (part.begin < 0 || part.count <= 0 || part.begin + part.count > rp.rows))) {
      return absl::InternalError(absl::StrCat("bad row part of tensor '", rp.name, "'"));
    }
    const int64_t count = part.kind == WeightPart::Kind::kRows ? part.count : rp.rows;
    VERDICT_ASSIGN_OR_RETURN(Prepared prepared,
                             Prepare(*t, rp.rows, cols, &part, WeightUse::kProjection));
    const int64_t begin = part.kind == WeightPart::Kind::kRows ? part.begin : 0;
    if (!pieces.empty() && prepared.tensor.dtype != pieces.front().prepared.tensor.dtype) {
      return std::unique_ptr<DeviceWeight>();
    }
    pieces.push_back(Piece{std::move(prepared), begin, count});
  }
  const DType dtype = pieces.front().prepared.tensor.dtype;
  VERDICT_ASSIGN_OR_RETURN(const size_t row_bytes, DTypeByteSize(dtype, cols));
  int64_t total_rows = 0;
  for (const Piece& p : pieces) total_rows += p.count;
  auto copy = std::make_unique<std::vector<uint8_t>>(total_rows * row_bytes);
  uint8_t* dst = copy->data();
  std::string name;
  for (size_t i = 0; i < pieces.size(); ++i) {
    const Piece& p = pieces[i];
    std::memcpy(dst, p.prepared.tensor.data + p.begin * row_bytes, p.count * row_bytes);
    dst += p.count * row_bytes;
    absl::StrAppend(&name, i == 0 ? "" : "|", parts[i].name);
  }
  pieces.clear();  // converted copies are no longer needed
  WeightTensor stacked;
  stacked.name = name;
  stacked.dtype = dtype;
  stacked.shape = {total_rows, cols};
  stacked.data = copy->data();
  stacked.nbytes = copy->size();
  return Upload(stacked, total_rows, cols, std::move(copy));
}

}  // namespace verdict::engine
