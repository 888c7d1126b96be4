// SPDX-License-Identifier: Apache-2.0
// The CPU backend: host memory, zero-copy weights from the memory map, ops executed synchronously
// with a thread pool. Matrix products go to engine/kernels/matmul.h (SIMD, runtime-dispatched).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "engine/backend.h"
#include "engine/communicator.h"
#include "engine/kernels/kv_ops.h"
#include "engine/kernels/matmul.h"
#include "engine/kernels/op_math.h"
#include "engine/kernels/thread_pool.h"
#include "engine/kernels/vec_ops.h"
#include "engine/sampler.h"

namespace verdict::engine {
namespace {

class CpuBuffer final : public DeviceBuffer {
 public:
  explicit CpuBuffer(size_t bytes) : storage_(bytes / sizeof(float) + 1) {}
  size_t size_bytes() const override { return (storage_.size() - 1) * sizeof(float); }
  void* data() override { return storage_.data(); }

 private:
  std::vector<float> storage_;
};

// A weight as stored in the checkpoint (a view into the mmap), or an owned f32 copy for 1-D
// parameters (norms, biases) so elementwise ops never convert.
class CpuWeight final : public DeviceWeight {
 public:
  CpuWeight(MatMulWeight view, std::vector<float> owned)
      : view_(view), owned_(std::move(owned)) {
    if (!owned_.empty()) view_.data = owned_.data();
  }
  DType dtype() const override { return view_.dtype; }
  int64_t rows() const override { return view_.rows; }
  int64_t cols() const override { return view_.cols; }
  size_t size_bytes() const override {
    return DTypeByteSize(view_.dtype, view_.rows * view_.cols).value_or(0);
  }
  const MatMulWeight& view() const { return view_; }
  const float* f32() const { return static_cast<const float*>(view_.data); }

 private:
  MatMulWeight view_;
  std::vector<float> owned_;
};

// Keys and values of every layer, one row of num_kv_heads * head_dim elements per position, stored
// as `element` (f32, f16 or bf16: engine/kernels/kv_ops.h converts on the way in and out).
class CpuKvStorage final : public KvStorage {
 public:
  CpuKvStorage(const KvShape& shape, int64_t capacity, DType element)
      : shape_(shape),
        capacity_(capacity),
        row_(shape.num_kv_heads * shape.head_dim),
        element_(element),
        row_bytes_(row_ * kvops::KvElementBytes(element)),
        keys_(static_cast<size_t>(shape.num_layers * capacity) * row_bytes_),
        values_(keys_.size()) {}
  int64_t capacity() const override { return capacity_; }
  size_t size_bytes() const override { return 2 * keys_.size(); }
  uint8_t* key(int64_t layer, int64_t pos) { return &keys_[Offset(layer, pos)]; }
  uint8_t* value(int64_t layer, int64_t pos) { return &values_[Offset(layer, pos)]; }
  const uint8_t* key(int64_t layer, int64_t pos) const { return &keys_[Offset(layer, pos)]; }
  const uint8_t* value(int64_t layer, int64_t pos) const { return &values_[Offset(layer, pos)]; }
  const KvShape& shape() const { return shape_; }
  int64_t row() const { return row_; }
  size_t row_bytes() const { return row_bytes_; }
  DType element() const { return element_; }

 private:
  size_t Offset(int64_t layer, int64_t pos) const {
    return static_cast<size_t>(layer * capacity_ + pos) * row_bytes_;
  }

  KvShape shape_;
  int64_t capacity_;
  int64_t row_;
  DType element_;
  size_t row_bytes_;
  std::vector<uint8_t> keys_;
  std::vector<uint8_t> values_;
};

DType CpuKvElement(KvCacheType type) {
  switch (type) {
    case KvCacheType::kF16:
      return DType::kF16;
    case KvCacheType::kBf16:
      return DType::kBF16;
    case KvCacheType::kAuto:
    case KvCacheType::kF32:
      break;
  }
  return DType::kF32;
}

const CpuWeight& AsCpu(const DeviceWeight& w) { return static_cast<const CpuWeight&>(w); }

class CpuBackend final : public Backend {
 public:
  CpuBackend(int num_threads, const CpuBackendOptions& options)
      : pool_(num_threads), options_(options) {}

  bool PrefersFusedProjections() const override { return options_.fuse_projections; }
  bool QuantizesProjectionsToFp8() const override { return options_.fp8_projections; }
  bool DecidesSampledRows() const override { return !options_.sampled_rows_on_host; }

  absl::string_view name() const override { return "cpu"; }

  absl::StatusOr<std::unique_ptr<DeviceBuffer>> Allocate(size_t bytes) override {
    try {
      return std::unique_ptr<DeviceBuffer>(new CpuBuffer(bytes));
    } catch (const std::bad_alloc&) {
      return absl::ResourceExhaustedError(absl::StrCat("cannot allocate ", bytes, " bytes"));
    }
  }

  absl::StatusOr<std::unique_ptr<DeviceWeight>> UploadWeight(const WeightTensor& tensor,
                                                             int64_t as_rows,
                                                             int64_t as_cols) override {
    if (as_rows * as_cols != tensor.num_elements()) {
      return absl::InvalidArgumentError(absl::StrCat("tensor ", tensor.name, " has ",
                                                     tensor.num_elements(), " elements, cannot view as [",
                                                     as_rows, ", ", as_cols, "]"));
    }
    if (tensor.dtype == DType::kF8E4M3 || tensor.dtype == DType::kI32) {
      return absl::InvalidArgumentError(absl::StrCat("tensor ", tensor.name, " has dtype ",
                                                     DTypeName(tensor.dtype),
                                                     ", which the CPU backend cannot compute with"));
    }
    MatMulWeight view{tensor.data, tensor.dtype, as_rows, as_cols};
    std::vector<float> owned;
    if (as_rows == 1) {  // 1-D parameters: keep an f32 copy for elementwise ops
      owned.resize(as_cols);
      engine::GatherRows(view, std::vector<int32_t>{0}, owned.data());
      view.dtype = DType::kF32;
    }
    return std::unique_ptr<DeviceWeight>(new CpuWeight(view, std::move(owned)));
  }

  absl::StatusOr<std::unique_ptr<KvStorage>> AllocateKv(const KvShape& shape,
                                                        int64_t capacity) override {
    try {
      return std::unique_ptr<KvStorage>(new CpuKvStorage(shape, capacity, CpuKvElement(options_.kv_cache)));
    } catch (const std::bad_alloc&) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot allocate a KV cache of ", capacity, " positions"));
    }
  }

  void CopyToDevice(const float* host, TensorView dst) override {
    for (int64_t r = 0; r < dst.rows; ++r) {
      std::memcpy(dst.data + r * dst.stride, host + r * dst.cols, dst.cols * sizeof(float));
    }
  }
  void CopyToHost(TensorView src, float* host) override {
    for (int64_t r = 0; r < src.rows; ++r) {
      std::memcpy(host + r * src.cols, src.data + r * src.stride, src.cols * sizeof(float));
    }
  }
  absl::Status Synchronize() override { return absl::OkStatus(); }

  void Embed(const DeviceWeight& table, absl::Span<const int32_t> ids, TensorView out) override {
    VERDICT_CHECK(out.stride == out.cols);
    pool_.ParallelFor(static_cast<int64_t>(ids.size()), 1, [&](int64_t begin, int64_t end) {
      engine::GatherRows(AsCpu(table).view(), ids.subspan(begin, end - begin),
                         out.data + begin * out.stride);
    });
  }

  void RmsNorm(TensorView x, const DeviceWeight& weight, float eps, TensorView out) override {
    const float* w = AsCpu(weight).f32();
    pool_.ParallelFor(x.rows, 1, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const float* xr = x.data + r * x.stride;
        float* yr = out.data + r * out.stride;
        const float inv = math::RmsInverse(static_cast<float>(vec::SumSquares(xr, x.cols)), x.cols, eps);
        for (int64_t c = 0; c < x.cols; ++c) yr[c] = w[c] * (xr[c] * inv);
      }
    });
  }

  void AddRmsNorm(TensorView residual, TensorView x, const DeviceWeight& weight, float eps,
                  TensorView out) override {
    const float* w = AsCpu(weight).f32();
    pool_.ParallelFor(x.rows, 1, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        float* xr = x.data + r * x.stride;
        const float* rr = residual.data + r * residual.stride;
        float* yr = out.data + r * out.stride;
        for (int64_t c = 0; c < x.cols; ++c) xr[c] += rr[c];
        const float inv = math::RmsInverse(static_cast<float>(vec::SumSquares(xr, x.cols)), x.cols, eps);
        for (int64_t c = 0; c < x.cols; ++c) yr[c] = w[c] * (xr[c] * inv);
      }
    });
  }

  void MatMul(TensorView x, const DeviceWeight& w, TensorView out, bool accumulate) override {
    engine::MatMul(x.data, x.rows, x.stride, AsCpu(w).view(), out.data, out.stride, &pool_,
                   accumulate);
  }

  void AddBias(TensorView x, const DeviceWeight& bias) override {
    const float* b = AsCpu(bias).f32();
    for (int64_t r = 0; r < x.rows; ++r) {
      float* xr = x.data + r * x.stride;
      for (int64_t c = 0; c < x.cols; ++c) xr[c] += b[c];
    }
  }

  void Rope(TensorView x, int64_t num_heads, int64_t head_dim, absl::Span<const int32_t> positions,
            const RopeParams& rope) override {
    const int64_t half = head_dim / 2;
    pool_.ParallelFor(x.rows, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> cos_v(half), sin_v(half);
      for (int64_t r = begin; r < end; ++r) {
        for (int64_t i = 0; i < half; ++i) {
          const float angle = math::RopeAngle(positions[r], rope.inv_freq[i]);
          cos_v[i] = std::cos(angle);
          sin_v[i] = std::sin(angle);
        }
        float* row = x.data + r * x.stride;
        for (int64_t h = 0; h < num_heads; ++h) {
          float* head = row + h * head_dim;
          for (int64_t i = 0; i < half; ++i) {
            int64_t a, b;
            math::RopePairIndices(i, head_dim, rope.interleaved, a, b);
            math::RotatePair(head[a], head[b], cos_v[i], sin_v[i]);
          }
        }
      }
    });
  }

  void Attention(TensorView q, TensorView k, TensorView v, int64_t layer,
                 absl::Span<const AttentionSequence> sequences, int64_t num_heads,
                 int64_t num_kv_heads, int64_t head_dim, TensorView out) override {
    // 1. Store the new keys/values at their positions.
    for (const AttentionSequence& seq : sequences) {
      auto* kv = static_cast<CpuKvStorage*>(seq.kv);
      const kvops::KvRowOps& ops = kvops::KvRowOpsFor(kv->element());
      for (int64_t i = 0; i < seq.num_tokens; ++i) {
        const int64_t row = seq.row_begin + i;
        ops.store(k.data + row * k.stride, kv->row(), kv->key(layer, seq.start_pos + i));
        ops.store(v.data + row * v.stride, kv->row(), kv->value(layer, seq.start_pos + i));
      }
    }
    // 2. One work item per (query row, head); rows of all sequences are concatenated.
    std::vector<int32_t> row_sequence(q.rows);
    for (size_t s = 0; s < sequences.size(); ++s) {
      for (int64_t i = 0; i < sequences[s].num_tokens; ++i) {
        row_sequence[sequences[s].row_begin + i] = static_cast<int32_t>(s);
      }
    }
    const int64_t group = num_heads / num_kv_heads;
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    pool_.ParallelFor(q.rows * num_heads, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> scores;
      for (int64_t item = begin; item < end; ++item) {
        const int64_t row = item / num_heads;
        const int64_t head = item % num_heads;
        const AttentionSequence& seq = sequences[row_sequence[row]];
        auto* kv = static_cast<CpuKvStorage*>(seq.kv);
        const int64_t pos = seq.start_pos + (row - seq.row_begin);
        const kvops::KvRowOps& ops = kvops::KvRowOpsFor(kv->element());
        const size_t kv_offset = (head / group) * head_dim * kvops::KvElementBytes(kv->element());
        const float* qh = q.data + row * q.stride + head * head_dim;
        scores.resize(pos + 1);
        float max_score = -INFINITY;
        for (int64_t j = 0; j <= pos; ++j) {
          scores[j] = ops.dot(qh, kv->key(layer, j) + kv_offset, head_dim) * scale;
          max_score = std::max(max_score, scores[j]);
        }
        double total = 0;
        for (int64_t j = 0; j <= pos; ++j) {
          scores[j] = std::exp(scores[j] - max_score);
          total += scores[j];
        }
        const float inv_total = static_cast<float>(1.0 / total);
        float* oh = out.data + row * out.stride + head * head_dim;
        std::fill(oh, oh + head_dim, 0.0f);
        for (int64_t j = 0; j <= pos; ++j) {
          ops.axpy(scores[j] * inv_total, kv->value(layer, j) + kv_offset, oh, head_dim);
        }
      }
    });
  }

  void SiluMul(TensorView gate, TensorView up, TensorView out) override {
    pool_.ParallelFor(gate.rows, 1, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const float* g = gate.data + r * gate.stride;
        const float* u = up.data + r * up.stride;
        float* o = out.data + r * out.stride;
        for (int64_t c = 0; c < gate.cols; ++c) o[c] = math::SiluMul(g[c], u[c]);
      }
    });
  }

  void Add(TensorView x, TensorView y) override {
    for (int64_t r = 0; r < x.rows; ++r) {
      vec::Axpy(1.0f, x.data + r * x.stride, y.data + r * y.stride, x.cols);
    }
  }

  void GatherRows(TensorView src, absl::Span<const int32_t> rows, TensorView dst) override {
    for (size_t i = 0; i < rows.size(); ++i) {
      std::memcpy(dst.data + i * dst.stride, src.data + rows[i] * src.stride,
                  src.cols * sizeof(float));
    }
  }

  void SummarizeLogits(TensorView logits, absl::Span<const int32_t> tokens,
                       TensorView out) override {
    // Column chunks of every row in parallel (a decode step has one row), merged in chunk order.
    constexpr int64_t kChunk = 16384;
    const int64_t chunks = std::max<int64_t>(1, (logits.cols + kChunk - 1) / kChunk);
    std::vector<math::LogitStats> partial(logits.rows * chunks);
    pool_.ParallelFor(logits.rows * chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t r = task / chunks;
        const int64_t c0 = task % chunks * kChunk;
        const int64_t c1 = std::min(logits.cols, c0 + kChunk);
        const float* row = logits.data + r * logits.stride;
        partial[task] = math::ChunkLogitStats(row + c0, c1 - c0, static_cast<int32_t>(c0));
      }
    });
    for (int64_t r = 0; r < logits.rows; ++r) {
      math::LogitStats stats = partial[r * chunks];
      for (int64_t c = 1; c < chunks; ++c) math::MergeLogitStats(stats, partial[r * chunks + c]);
      const int32_t token = tokens.empty() ? -1 : tokens[r];
      const float token_logit = token >= 0 ? logits.data[r * logits.stride + token]
                                           : std::numeric_limits<float>::quiet_NaN();
      math::WriteLogitSummary(stats, token_logit, out.data + r * out.stride);
    }
  }

  void DecideSampled(TensorView logits, absl::Span<const math::SampledRowRequest> requests,
                     absl::Span<const int32_t> proposal_ids, absl::Span<const float> proposal_probs,
                     TensorView out, TensorView supports) override {
    pool_.ParallelFor(logits.rows, 1, [&](int64_t begin, int64_t end) {
      std::vector<int32_t> ids;
      std::vector<float> probs;
      for (int64_t r = begin; r < end; ++r) {
        const absl::Span<const float> row(logits.data + r * logits.stride, logits.cols);
        const bool want_support = supports.rows > 0;
        ids.clear();
        probs.clear();
        const SampledDecision d = DecideSampledRow(row, requests[r], proposal_ids, proposal_probs,
                                                   want_support ? &ids : nullptr, &probs);
        float* o = out.data + r * out.stride;
        o[0] = d.target_prob;
        o[1] = static_cast<float>(d.replacement);
        o[2] = d.replacement_logit;
        o[3] = 0.0f;
        if (!want_support) continue;
        float* s = supports.data + r * supports.stride;
        for (size_t j = 0; j < ids.size(); ++j) {
          s[j] = static_cast<float>(ids[j]);
          s[logits.cols + static_cast<int64_t>(j)] = probs[j];
        }
        o[3] = static_cast<float>(ids.size());
      }
    });
  }

  absl::Status AllReduceSum(TensorView x, Communicator& comm) override {
    if (x.stride != x.cols) return absl::InvalidArgumentError("all-reduce of a strided view");
    return comm.AllReduceSum(absl::MakeSpan(x.data, x.rows * x.cols));
  }

  void CopyKv(const KvStorage& from_storage, KvStorage& to_storage, int64_t count) override {
    const auto& from = static_cast<const CpuKvStorage&>(from_storage);
    auto& to = static_cast<CpuKvStorage&>(to_storage);
    for (int64_t layer = 0; layer < from.shape().num_layers; ++layer) {
      std::memcpy(to.key(layer, 0), from.key(layer, 0), count * from.row_bytes());
      std::memcpy(to.value(layer, 0), from.value(layer, 0), count * from.row_bytes());
    }
  }

 private:
  ThreadPool pool_;
  CpuBackendOptions options_;
};

}  // namespace

absl::StatusOr<KvCacheType> ParseKvCacheType(absl::string_view name) {
  if (name == "auto") return KvCacheType::kAuto;
  if (name == "f32") return KvCacheType::kF32;
  if (name == "f16") return KvCacheType::kF16;
  if (name == "bf16") return KvCacheType::kBf16;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown KV cache type '", name, "': expected auto, f32, f16 or bf16"));
}

absl::string_view KvCacheTypeName(KvCacheType type) {
  switch (type) {
    case KvCacheType::kAuto:
      return "auto";
    case KvCacheType::kF32:
      return "f32";
    case KvCacheType::kF16:
      return "f16";
    case KvCacheType::kBf16:
      return "bf16";
  }
  return "unknown";
}

std::unique_ptr<Backend> CreateCpuBackend(const CpuBackendOptions& options) {
  int threads = options.num_threads;
  if (threads <= 0) threads = std::max(1u, std::thread::hardware_concurrency());
  return std::make_unique<CpuBackend>(threads, options);
}

}  // namespace verdict::engine
