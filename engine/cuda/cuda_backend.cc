// SPDX-License-Identifier: Apache-2.0
// The CUDA backend (see cuda_backend.h). Ops validate nothing the caller already validated; errors
// of asynchronous work (launch failures, memory exhaustion while growing a KV cache) are kept and
// returned by the next Synchronize(), and the rest of that step is skipped.
#include "engine/cuda/cuda_backend.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <functional>
#include <map>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "engine/cuda/attention_math.h"
#include "engine/cuda/cuda_status.h"
#include "engine/cuda/device_memory.h"
#include "engine/cuda/kernels.h"
#include "engine/cuda/kv_blocks.h"
#include "engine/cuda/lt_matmul.h"
#include "engine/cuda/nccl_communicator.h"
#include "engine/cuda/step_graphs.h"
#include "engine/fp8.h"
#include "engine/kernels/matmul.h"

namespace verdict::engine {
namespace {

using cuda::CudaStatus;
using cuda::ElementBytes;
using cuda::StorageType;

StorageType StorageOf(DType dtype) {
  switch (dtype) {
    case DType::kBF16:
      return StorageType::kBF16;
    case DType::kF16:
      return StorageType::kF16;
    default:
      return StorageType::kF32;
  }
}
DType DTypeOf(StorageType type) {
  switch (type) {
    case StorageType::kBF16:
      return DType::kBF16;
    case StorageType::kF16:
      return DType::kF16;
    case StorageType::kF8E4M3:
      return DType::kF8E4M3Block;
    case StorageType::kF32:
      break;
  }
  return DType::kF32;
}
// The activation type a product with weights of `type` multiplies: FP8 weights take bf16.
StorageType OperandType(StorageType type) {
  return type == StorageType::kF8E4M3 ? StorageType::kBF16 : type;
}

class CudaBuffer final : public DeviceBuffer {
 public:
  explicit CudaBuffer(std::unique_ptr<cuda::PoolAllocation> allocation)
      : allocation_(std::move(allocation)) {}
  size_t size_bytes() const override { return allocation_->bytes(); }
  void* data() override { return allocation_->get(); }

 private:
  std::unique_ptr<cuda::PoolAllocation> allocation_;
};

// Weights are allocated exactly (not through the caching pool: they live as long as the model).
class CudaWeight final : public DeviceWeight {
 public:
  CudaWeight(void* ptr, StorageType type, int64_t rows, int64_t cols)
      : ptr_(ptr), type_(type), rows_(rows), cols_(cols) {}
  ~CudaWeight() override {
    (void)cudaFree(ptr_);
    if (scales_ != nullptr) (void)cudaFree(scales_);
  }
  DType dtype() const override { return DTypeOf(type_); }
  int64_t rows() const override { return rows_; }
  int64_t cols() const override { return cols_; }
  size_t size_bytes() const override {
    return rows_ * cols_ * ElementBytes(type_) + (scales_ ? rows_ * ScalesPerRow() * sizeof(float) : 0);
  }
  const void* data() const { return ptr_; }
  const float* f32() const { return static_cast<const float*>(ptr_); }
  StorageType type() const { return type_; }
  // FP8 weights: [rows, ScalesPerRow()] f32 (engine/fp8.h); nullptr otherwise.
  const float* scales() const { return scales_; }
  int64_t ScalesPerRow() const { return Fp8BlocksPerRow(cols_); }
  void set_scales(float* scales) { scales_ = scales; }

 private:
  void* ptr_;
  float* scales_ = nullptr;
  StorageType type_;
  int64_t rows_;
  int64_t cols_;
};

const CudaWeight& AsCuda(const DeviceWeight& w) { return static_cast<const CudaWeight&>(w); }

class CudaBackend final : public Backend {
 public:
  CudaBackend(const CudaBackendOptions& options, cudaStream_t stream)
      : options_(options),
        stream_(stream),
        launch_{stream, options.programmatic_launch},
        weight_type_(StorageOf(options.weight_dtype == DType::kF8E4M3Block ? DType::kBF16
                                                                           : options.weight_dtype)),
        pinned_(cuda::StepArena::Kind::kPinnedHost, size_t{16} << 20),
        meta_(cuda::StepArena::Kind::kDevice, size_t{1} << 20),
        steps_(stream, options.cuda_graphs) {}

  ~CudaBackend() override {
    (void)cudaSetDevice(options_.device);
    (void)cudaStreamSynchronize(stream_);
    lt_.reset();
    kv_pools_.clear();
    scratch_.reset();
    partials_.reset();
    chunk_counters_.reset();
    dequant_.reset();
    for (void* p : upload_buffers_) (void)cudaFreeHost(p);
    (void)cudaStreamDestroy(stream_);
  }

  absl::Status Init() {
    VERDICT_ASSIGN_OR_RETURN(lt_, cuda::LtMatMul::Create(&pool_, launch_, options_.autotune_matmul,
                                                          options_.own_gemv));
    return absl::OkStatus();
  }

  absl::string_view name() const override { return "cuda"; }

  CudaBackendStats Stats() const {
    CudaBackendStats s;
    s.device_bytes_reserved = pool_.bytes_reserved();
    s.device_bytes_in_use = pool_.bytes_in_use();
    for (const auto& [key, kv] : kv_pools_) {
      s.kv_blocks_in_use += kv->blocks_in_use();
      s.kv_blocks_total += kv->blocks_total();
    }
    s.matmul_shapes_tuned = lt_ ? lt_->shapes_tuned() : 0;
    s.matmul_shapes_on_own_gemv = lt_ ? lt_->shapes_on_own_gemv() : 0;
    s.eager_steps = steps_.eager_steps();
    s.graphs_captured = steps_.graphs_captured();
    s.graph_replays = steps_.graph_replays();
    s.tensor_core_prefills = tensor_core_prefills_;
    return s;
  }
  CudaBackendStats Snapshot() const {
    absl::MutexLock lock(&snapshot_mu_);
    return snapshot_;
  }

  bool CopiesWeights() const override { return true; }  // into device memory, synchronously
  bool PrefersFusedProjections() const override { return options_.fuse_projections; }
  bool QuantizesProjectionsToFp8() const override {
    return options_.weight_dtype == DType::kF8E4M3Block;
  }

  // --- memory -----------------------------------------------------------------------------------

  absl::StatusOr<std::unique_ptr<DeviceBuffer>> Allocate(size_t bytes) override {
    MakeCurrent();
    VERDICT_ASSIGN_OR_RETURN(auto allocation, pool_.Allocate(bytes));
    return std::unique_ptr<DeviceBuffer>(new CudaBuffer(std::move(allocation)));
  }

  absl::StatusOr<std::unique_ptr<DeviceWeight>> UploadWeight(const WeightTensor& tensor,
                                                             int64_t as_rows,
                                                             int64_t as_cols) override {
    MakeCurrent();
    if (as_rows * as_cols != tensor.num_elements()) {
      return absl::InvalidArgumentError(absl::StrCat("tensor ", tensor.name, " has ",
                                                     tensor.num_elements(),
                                                     " elements, cannot view as [", as_rows, ", ",
                                                     as_cols, "]"));
    }
    if (tensor.dtype == DType::kI32 || tensor.dtype == DType::kF8E4M3) {
      return absl::InvalidArgumentError(absl::StrCat("tensor ", tensor.name, " has dtype ",
                                                     DTypeName(tensor.dtype),
                                                     ", which the CUDA backend cannot upload"));
    }
    // 1-D parameters (norms, biases) are f32 for the elementwise kernels; FP8 matrices stay FP8
    // (but for the f32 reference mode); other matrices take the backend's weight dtype.
    if (!steps_.empty()) VERDICT_RETURN_IF_ERROR(Synchronize());  // keep the stream in call order
    if (tensor.dtype == DType::kF8E4M3Block && as_rows > 1 && weight_type_ != StorageType::kF32) {
      return UploadFp8(tensor, as_rows, as_cols);
    }
    const StorageType type = as_rows == 1 ? StorageType::kF32 : weight_type_;
    const size_t row_bytes = as_cols * ElementBytes(type);
    void* device = nullptr;
    VERDICT_RETURN_IF_ERROR(
        CudaStatus(cudaMalloc(&device, row_bytes * as_rows),
                   absl::StrCat("allocating ", row_bytes * as_rows, " bytes for ", tensor.name)));
    auto weight = std::make_unique<CudaWeight>(device, type, as_rows, as_cols);
    VERDICT_RETURN_IF_ERROR(CopyWeightRows(tensor, as_rows, as_cols, type, device));
    return std::unique_ptr<DeviceWeight>(std::move(weight));
  }

  // kF8E4M3Block rows split into the codes and the scales the kernels read, each staged straight
  // from the engine rows through the pinned upload buffers.
  absl::StatusOr<std::unique_ptr<DeviceWeight>> UploadFp8(const WeightTensor& tensor, int64_t rows,
                                                          int64_t cols) {
    const int64_t blocks = Fp8BlocksPerRow(cols);
    const int64_t row_bytes = Fp8BlockRowBytes(cols);
    void* device_codes = nullptr;
    void* device_scales = nullptr;
    VERDICT_RETURN_IF_ERROR(CudaStatus(cudaMalloc(&device_codes, rows * cols),
                                       absl::StrCat("allocating ", rows * cols, " bytes for ", tensor.name)));
    auto weight = std::make_unique<CudaWeight>(device_codes, StorageType::kF8E4M3, rows, cols);
    VERDICT_RETURN_IF_ERROR(CudaStatus(cudaMalloc(&device_scales, rows * blocks * sizeof(float)),
                                       absl::StrCat("allocating the scales of ", tensor.name)));
    weight->set_scales(static_cast<float*>(device_scales));
    // Block b of row r: its f32 scale, then up to kFp8BlockSize codes (engine/fp8.h).
    auto block_of = [&](int64_t r, int64_t b) {
      return tensor.data + r * row_bytes + Fp8BlockScaleOffset(b * kFp8BlockSize);
    };
    auto fill_codes = [&](int64_t first, int64_t count, uint8_t* staged) {
      for (int64_t r = 0; r < count; ++r) {
        for (int64_t b = 0; b < blocks; ++b) {
          const int64_t n = std::min(kFp8BlockSize, cols - b * kFp8BlockSize);
          std::memcpy(staged + r * cols + b * kFp8BlockSize, block_of(first + r, b) + sizeof(float), n);
        }
      }
    };
    auto fill_scales = [&](int64_t first, int64_t count, uint8_t* staged) {
      for (int64_t r = 0; r < count; ++r) {
        for (int64_t b = 0; b < blocks; ++b) {
          std::memcpy(staged + (r * blocks + b) * sizeof(float), block_of(first + r, b), sizeof(float));
        }
      }
    };
    VERDICT_RETURN_IF_ERROR(StagedUpload(device_codes, rows, cols, tensor.name, fill_codes));
    VERDICT_RETURN_IF_ERROR(StagedUpload(device_scales, rows, blocks * sizeof(float),
                                         absl::StrCat("the scales of ", tensor.name), fill_scales));
    return std::unique_ptr<DeviceWeight>(std::move(weight));
  }

  absl::StatusOr<std::unique_ptr<KvStorage>> AllocateKv(const KvShape& shape,
                                                        int64_t capacity) override {
    MakeCurrent();
    if (!cuda::AttentionSupportsHeadDim(shape.head_dim)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "head_dim ", shape.head_dim, " is not supported by the CUDA backend (multiples of 8 up to ",
          cuda::kMaxAttentionHeadDim, ")"));
    }
    const cuda_math::KvBlockLayout layout{shape.num_layers, options_.kv_block_positions,
                                          shape.num_kv_heads * shape.head_dim};
    const auto key = std::make_tuple(layout.num_layers, layout.kv_dim);
    auto& kv_pool = kv_pools_[key];
    if (kv_pool == nullptr) {
      kv_pool = std::make_unique<cuda::KvBlockPool>(&pool_, layout, KvType());
    }
    VERDICT_ASSIGN_OR_RETURN(auto storage,
                             cuda::CudaKvStorage::Create(kv_pool.get(), &pool_, capacity));
    return std::unique_ptr<KvStorage>(std::move(storage));
  }

  void CopyToDevice(const float* host, TensorView dst) override {
    if (!Begin() || dst.rows * dst.cols == 0) return;
    const size_t row_bytes = dst.cols * sizeof(float);
    void* staged = Staging(row_bytes * dst.rows);
    if (staged == nullptr) return;
    std::memcpy(staged, host, row_bytes * dst.rows);
    Record(Op::kCopyToDevice, [=, stream = stream_] {
      return CudaStatus(cudaMemcpy2DAsync(dst.data, dst.stride * sizeof(float), staged, row_bytes,
                                          row_bytes, dst.rows, cudaMemcpyHostToDevice, stream),
                        "copy to device");
    }, dst, staged);
  }

  void CopyToHost(TensorView src, float* host) override {
    if (!Begin() || src.rows * src.cols == 0) return;
    const size_t row_bytes = src.cols * sizeof(float);
    void* staged = Staging(row_bytes * src.rows);
    if (staged == nullptr) return;
    Record(Op::kCopyToHost, [=, stream = stream_] {
      return CudaStatus(cudaMemcpy2DAsync(staged, row_bytes, src.data, src.stride * sizeof(float),
                                          row_bytes, src.rows, cudaMemcpyDeviceToHost, stream),
                        "copy to host");
    }, src, staged);
    pending_host_copies_.push_back({staged, host, row_bytes * src.rows});
  }

  absl::Status Synchronize() override {
    MakeCurrent();
    absl::Status status = status_;
    if (status.ok()) {
      status = steps_.Run();
    } else {
      steps_.Discard();
    }
    const absl::Status sync = CudaStatus(cudaStreamSynchronize(stream_), "CUDA stream");
    if (status.ok()) status = sync;
    if (status.ok()) {
      for (const PendingCopy& c : pending_host_copies_) std::memcpy(c.host, c.staged, c.bytes);
    }
    pending_host_copies_.clear();
    retired_.clear();
    recent_uploads_.clear();
    converted_valid_ = false;
    pinned_.Reset();
    meta_.Reset();
    status_ = absl::OkStatus();
    const CudaBackendStats stats = Stats();
    {
      absl::MutexLock lock(&snapshot_mu_);
      snapshot_ = stats;
    }
    return status;
  }

  // --- ops: each one does its host work now and records its GPU work for the step ---------------

  void Embed(const DeviceWeight& table, absl::Span<const int32_t> ids, TensorView out) override {
    if (!Begin()) return;
    const auto* d_ids = static_cast<const int32_t*>(Upload(ids.data(), ids.size() * sizeof(int32_t)));
    if (d_ids == nullptr) return;
    const CudaWeight& t = AsCuda(table);
    const void* data = t.data();
    const StorageType type = t.type();
    const float* scales = t.scales();
    const int64_t cols = t.cols();
    const int64_t n = static_cast<int64_t>(ids.size());
    Record(Op::kEmbed, [=, stream = launch_] {
      cuda::LaunchEmbed(data, type, scales, cols, d_ids, n, out.data, out.stride, stream);
      return LaunchStatus("Embed");
    }, data, type, scales, cols, d_ids, n, out);
  }

  void RmsNorm(TensorView x, const DeviceWeight& weight, float eps, TensorView out) override {
    AddRmsNorm(TensorView{}, x, weight, eps, out);
  }

  void AddRmsNorm(TensorView residual, TensorView x, const DeviceWeight& weight, float eps,
                  TensorView out) override {
    if (residual.data != nullptr && !options_.fused_add_rms_norm) {  // the measured two launches
      Add(x, residual);
      residual = TensorView{};
    }
    if (!Begin()) return;
    const float* w = AsCuda(weight).f32();
    cuda::Copy16 copy16;
    if (!OperandCopy(out, &copy16)) return;
    Record(Op::kRmsNorm, [=, stream = launch_] {
      cuda::LaunchRmsNorm(x.data, x.stride, x.rows, x.cols, residual.data, residual.stride, w, eps,
                          out.data, out.stride, copy16, stream);
      return LaunchStatus("RmsNorm");
    }, x, residual, w, eps, out, copy16.data);
    KeepOperandCopy(out, copy16);
  }

  void MatMul(TensorView x, const DeviceWeight& w, TensorView out, bool accumulate) override {
    if (!Begin()) return;
    const CudaWeight& cw = AsCuda(w);
    const StorageType type = cw.type();
    const void* wdata = cw.data();
    const float* scales = cw.scales();
    const int64_t n = cw.rows();
    const int64_t k = cw.cols();
    // FP8 weights: bf16 room for cuBLASLt's dequantized copy (grown before the operand conversion
    // below, whose reuse a growing scratch would end).
    void* dequant = nullptr;
    if (type == StorageType::kF8E4M3) {
      dequant = GrowOnly(dequant_, n * k * ElementBytes(StorageType::kBF16));
      if (dequant == nullptr) return;
    }
    const StorageType operand_type = OperandType(type);
    const void* operand = x.data;
    int64_t ld = x.stride;
    if (type != StorageType::kF32) {
      // The activation rounded to the weight's type; reused by consecutive products of the same
      // input (q/k/v, gate/up) as long as nothing was written in between.
      if (!(converted_valid_ && converted_source_.data == x.data && converted_source_.rows == x.rows &&
            converted_source_.cols == x.cols && converted_source_.stride == x.stride &&
            converted_type_ == operand_type)) {
        void* converted = Scratch(x.rows * x.cols * ElementBytes(operand_type));
        if (converted == nullptr) return;
        Record(Op::kConvert, [=, stream = launch_] {
          cuda::LaunchConvertRows(x.data, x.rows, x.cols, x.stride, operand_type, converted, stream);
          return LaunchStatus("MatMul input conversion");
        }, x, operand_type, converted);
        converted_valid_ = true;
        converted_source_ = x;
        converted_type_ = operand_type;
      }
      operand = scratch_->get();
      ld = x.cols;
    }
    cuda::LtMatMul* lt = lt_.get();
    Record(Op::kMatMul, [=] {
      return lt->Run(operand, ld, wdata, type, scales, dequant, out.data, out.stride, x.rows, n, k,
                     accumulate);
    }, operand, ld, wdata, type, scales, dequant, out, x.rows, n, k, accumulate);
    if (Overlaps(out, converted_source_)) converted_valid_ = false;
  }

  void AddBias(TensorView x, const DeviceWeight& bias) override {
    if (!Begin()) return;
    const float* b = AsCuda(bias).f32();
    Record(Op::kAddBias, [=, stream = launch_] {
      cuda::LaunchAddBias(x.data, x.stride, x.rows, x.cols, b, stream);
      return LaunchStatus("AddBias");
    }, x, b);
  }

  void Rope(TensorView x, int64_t num_heads, int64_t head_dim, absl::Span<const int32_t> positions,
            const RopeParams& rope) override {
    RopeQueriesAndKeys(x, num_heads, TensorView{}, 0, head_dim, positions, rope);
  }

  // One launch for both tensors (a launch saved per layer).
  void RopeQueriesAndKeys(TensorView q, int64_t q_heads, TensorView k, int64_t k_heads,
                          int64_t head_dim, absl::Span<const int32_t> positions,
                          const RopeParams& rope) override {
    if (!Begin()) return;
    const auto* d_positions =
        static_cast<const int32_t*>(Upload(positions.data(), positions.size() * sizeof(int32_t)));
    const auto* d_freq =
        static_cast<const float*>(Upload(rope.inv_freq.data(), rope.inv_freq.size() * sizeof(float)));
    if (d_positions == nullptr || d_freq == nullptr) return;
    const bool interleaved = rope.interleaved;
    Record(Op::kRope, [=, stream = launch_] {
      cuda::LaunchRope({q.data, q.stride, q_heads}, {k.data, k.stride, k_heads}, q.rows, head_dim,
                       d_positions, d_freq, interleaved, stream);
      return LaunchStatus("Rope");
    }, q, q_heads, k, k_heads, head_dim, d_positions, d_freq, interleaved);
  }

  void Attention(TensorView q, TensorView k, TensorView v, int64_t layer,
                 absl::Span<const AttentionSequence> sequences, int64_t num_heads,
                 int64_t num_kv_heads, int64_t head_dim, TensorView out) override {
    Attend(q, k, v, layer, sequences, num_heads, num_kv_heads, head_dim, {}, nullptr, out);
  }

  // The attention kernel rotates the queries and the new keys as it loads them (a launch fewer
  // per layer); q and k stay unrotated in memory.
  void RotaryAttention(TensorView q, TensorView k, TensorView v, int64_t layer,
                       absl::Span<const AttentionSequence> sequences, int64_t num_heads,
                       int64_t num_kv_heads, int64_t head_dim, absl::Span<const int32_t> positions,
                       const RopeParams& rope, TensorView out) override {
    if (!options_.one_launch_attention) {  // the measured path: a RoPE launch first
      Backend::RotaryAttention(q, k, v, layer, sequences, num_heads, num_kv_heads, head_dim,
                               positions, rope, out);
      return;
    }
    Attend(q, k, v, layer, sequences, num_heads, num_kv_heads, head_dim, positions, &rope, out);
  }

  void Attend(TensorView q, TensorView k, TensorView v, int64_t layer,
              absl::Span<const AttentionSequence> sequences, int64_t num_heads,
              int64_t num_kv_heads, int64_t head_dim, absl::Span<const int32_t> positions,
              const RopeParams* rope, TensorView out) {
    if (!Begin()) return;
    if (!cuda::AttentionSupportsHeadDim(head_dim)) {
      Fail(absl::InvalidArgumentError(absl::StrCat("head_dim ", head_dim, " is not supported")));
      return;
    }
    cuda::KvBlockPool* kv_pool = nullptr;
    for (const AttentionSequence& a : sequences) {
      auto* storage = static_cast<cuda::CudaKvStorage*>(a.kv);
      kv_pool = storage->blocks();
      cuda::CudaKvStorage::TableCopy copy;
      if (!Fail(storage->EnsurePositions(a.start_pos + a.num_tokens, &pinned_, &copy))) return;
      if (copy.bytes > 0) RecordCopy(copy.device, copy.staged, copy.bytes, "uploading a KV block table");
    }
    if (kv_pool == nullptr) return;
    AttendOp op{q, k, v, out, layer, num_heads, num_kv_heads, head_dim, positions, rope, kv_pool};
    if (out.stride == out.cols && !OperandCopy(out, &op.copy16)) return;  // written densely by head
    // Sequences bringing a tile's worth of rows go to the tensor-core prefill kernel when it is on;
    // the others (decode, verification blocks) to the chunk kernel. A batch mixing both (a target
    // shard batches new prompts with other sessions' blocks) runs each run of consecutive
    // sequences of one kind as its own op on its rows.
    const bool flash =
        options_.tensor_core_prefill && cuda::FlashPrefillApplies(kv_pool->type(), head_dim);
    auto is_long = [&](const AttentionSequence& a) {
      return flash && a.num_tokens >= cuda_math::kFlashMinRows;
    };
    const bool uniform = std::all_of(sequences.begin(), sequences.end(), [&](const auto& a) {
      return is_long(a) == is_long(sequences[0]);
    });
    if (uniform) {
      RecordAttention(op, 0, q.rows, sequences, is_long(sequences[0]));
    } else {
      std::vector<AttentionSequence> order(sequences.begin(), sequences.end());
      std::stable_sort(order.begin(), order.end(), [](const auto& x, const auto& y) {
        return x.row_begin < y.row_begin;
      });
      for (size_t first = 0; first < order.size();) {
        size_t last = first + 1;  // the run: same kind, rows back to back
        while (last < order.size() && is_long(order[last]) == is_long(order[first]) &&
               order[last].row_begin == order[last - 1].row_begin + order[last - 1].num_tokens) {
          ++last;
        }
        const int64_t row_begin = order[first].row_begin;
        const int64_t rows = order[last - 1].row_begin + order[last - 1].num_tokens - row_begin;
        std::vector<AttentionSequence> run(order.begin() + first, order.begin() + last);
        for (AttentionSequence& a : run) a.row_begin -= row_begin;
        RecordAttention(op, row_begin, rows, run, is_long(order[first]));
        if (!status_.ok()) return;
        first = last;
      }
    }
    if (status_.ok()) KeepOperandCopy(out, op.copy16);
  }

  // What one attention op shares among its runs of sequences.
  struct AttendOp {
    TensorView q, k, v, out;
    int64_t layer, num_heads, num_kv_heads, head_dim;
    absl::Span<const int32_t> positions;  // of q's rows (rotary attention), else empty
    const RopeParams* rope;
    cuda::KvBlockPool* kv_pool;
    cuda::Copy16 copy16 = {};  // out's 16-bit copy, the whole of out
  };

  // Records the attention of batch rows [row_begin, row_begin + rows) of `op`, whose sequences are
  // `sequences` (row_begin relative to that range), on the tensor-core prefill kernel (`flash`) or
  // the chunk kernel.
  void RecordAttention(const AttendOp& op, int64_t row_begin, int64_t rows,
                       absl::Span<const AttentionSequence> sequences, bool flash) {
    std::vector<cuda::DeviceSequence> seqs(sequences.size());
    std::vector<int32_t> row_sequence(rows);
    int64_t max_context = 1;
    for (size_t s = 0; s < sequences.size(); ++s) {
      const AttentionSequence& a = sequences[s];
      seqs[s] = {static_cast<cuda::CudaKvStorage*>(a.kv)->device_table(),
                 static_cast<int32_t>(a.row_begin), static_cast<int32_t>(a.num_tokens),
                 static_cast<int32_t>(a.start_pos), 0};
      for (int64_t i = 0; i < a.num_tokens; ++i) row_sequence[a.row_begin + i] = static_cast<int32_t>(s);
      max_context = std::max(max_context, a.start_pos + a.num_tokens);
    }
    cuda::AttentionLaunch launch;
    std::memset(static_cast<void*>(&launch), 0, sizeof(launch));  // padding bytes are part of the step signature
    launch.sequences = static_cast<const cuda::DeviceSequence*>(
        Upload(seqs.data(), seqs.size() * sizeof(cuda::DeviceSequence)));
    launch.row_sequence =
        static_cast<const int32_t*>(Upload(row_sequence.data(), row_sequence.size() * sizeof(int32_t)));
    if (launch.sequences == nullptr || launch.row_sequence == nullptr) return;
    const TensorView q = op.q.Rows(row_begin, rows), k = op.k.Rows(row_begin, rows),
                     v = op.v.Rows(row_begin, rows), out = op.out.Rows(row_begin, rows);
    launch.q = q.data;
    launch.q_stride = q.stride;
    launch.k = k.data;
    launch.k_stride = k.stride;
    launch.v = v.data;
    launch.v_stride = v.stride;
    launch.out = out.data;
    launch.out_stride = out.stride;
    launch.rows = rows;
    launch.layout = op.kv_pool->layout();
    launch.kv_type = op.kv_pool->type();
    launch.layer = op.layer;
    launch.num_heads = op.num_heads;
    launch.num_kv_heads = op.num_kv_heads;
    launch.head_dim = op.head_dim;
    launch.one_launch = options_.one_launch_attention;
    if (op.rope != nullptr) {
      const absl::Span<const int32_t> positions = op.positions.subspan(row_begin, rows);
      launch.rope_positions =
          static_cast<const int32_t*>(Upload(positions.data(), positions.size() * sizeof(int32_t)));
      launch.rope_inv_freq = static_cast<const float*>(
          Upload(op.rope->inv_freq.data(), op.rope->inv_freq.size() * sizeof(float)));
      if (launch.rope_positions == nullptr || launch.rope_inv_freq == nullptr) return;
      launch.rope_interleaved = op.rope->interleaved;
    }
    if (flash) {
      // Tiles of the longest contexts first: they take the most time, so the grid's tail is short.
      std::vector<std::array<int32_t, 2>> tiles;
      for (size_t s = 0; s < sequences.size(); ++s) {
        for (int64_t t = 0; t < cuda_math::FlashTilesOf(sequences[s].num_tokens); ++t) {
          const int64_t first_row = sequences[s].row_begin + t * cuda_math::kFlashTileRows;
          tiles.push_back({static_cast<int32_t>(s), static_cast<int32_t>(first_row)});
        }
      }
      auto key_end = [&](const std::array<int32_t, 2>& tile) {
        const AttentionSequence& a = sequences[tile[0]];
        return cuda_math::FlashKeyEnd(tile[1], a.row_begin, a.num_tokens, a.start_pos);
      };
      std::stable_sort(tiles.begin(), tiles.end(),
                       [&](const auto& x, const auto& y) { return key_end(x) > key_end(y); });
      launch.flash_tiles =
          static_cast<const int32_t*>(Upload(tiles.data(), tiles.size() * sizeof(tiles[0])));
      if (launch.flash_tiles == nullptr) return;
      launch.num_flash_tiles = static_cast<int64_t>(tiles.size());
      ++tensor_core_prefills_;
    } else if (!ChunkScratch(max_context, op.num_heads, op.num_kv_heads, op.head_dim, rows,
                             &launch)) {
      return;
    }
    if (op.copy16.data != nullptr) {  // the run's rows of out's copy (dense by head)
      const int64_t element_bytes = static_cast<int64_t>(ElementBytes(op.copy16.type));
      launch.out_copy16.data =
          static_cast<char*>(op.copy16.data) + row_begin * op.out.cols * element_bytes;
      launch.out_copy16.type = op.copy16.type;  // field by field: the padding stays zero
    }
    Record(Op::kAttention, [=, stream = launch_] {
      cuda::LaunchAttention(launch, stream);
      return LaunchStatus("Attention");
    }, launch);
  }

  // The chunk kernel's split of the keys and its scratch (partials, counters), into `launch`.
  bool ChunkScratch(int64_t max_context, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                    int64_t rows, cuda::AttentionLaunch* launch_out) {
    cuda::AttentionLaunch& launch = *launch_out;
    // The chunking follows the longest context rounded up to 256 positions, so that consecutive
    // decode steps launch the same grid (and replay as one CUDA graph); chunks past a row's
    // context are empty and cost one early exit.
    constexpr int64_t kContextBucket = 256;
    constexpr int64_t kMinSplit = 32;  // keys per chunk (one tile): enough blocks for a batch of one
    constexpr int64_t kMaxSplits = cuda::kMaxAttentionSplits;
    launch.max_context = (max_context + kContextBucket - 1) / kContextBucket * kContextBucket;
    cuda_math::ChooseSplits(launch.max_context, kMinSplit, kMaxSplits, launch.split_positions,
                            launch.num_splits);
    // Partials of at most 64 MiB per launch of the split kernel; more rows run in several launches.
    const int64_t per_row = num_heads * launch.num_splits * (head_dim + 2) * sizeof(float);
    launch.partial_rows = std::clamp<int64_t>((int64_t{64} << 20) / per_row, 1, 65535);
    launch.partial_rows = std::min(launch.partial_rows, rows);
    launch.partials = static_cast<float*>(Partials(launch.partial_rows * per_row));
    if (!launch.one_launch) return launch.partials != nullptr;
    launch.chunk_counters =
        ChunkCounters(cuda::AttentionCounters(launch.partial_rows, num_heads, num_kv_heads));
    return launch.partials != nullptr && launch.chunk_counters != nullptr;
  }

  void SiluMul(TensorView gate, TensorView up, TensorView out) override {
    if (!Begin()) return;
    cuda::Copy16 copy16;
    if (!OperandCopy(out, &copy16)) return;
    Record(Op::kSiluMul, [=, stream = launch_] {
      cuda::LaunchSiluMul(gate.data, gate.stride, up.data, up.stride, out.data, out.stride,
                          gate.rows, gate.cols, copy16, stream);
      return LaunchStatus("SiluMul");
    }, gate, up, out, copy16.data);
    KeepOperandCopy(out, copy16);
  }

  void Add(TensorView x, TensorView y) override {
    if (!Begin()) return;
    Record(Op::kAdd, [=, stream = launch_] {
      cuda::LaunchAdd(x.data, x.stride, y.data, y.stride, x.rows, x.cols, stream);
      return LaunchStatus("Add");
    }, x, y);
  }

  void GatherRows(TensorView src, absl::Span<const int32_t> rows, TensorView dst) override {
    if (!Begin()) return;
    const auto* d_rows = static_cast<const int32_t*>(Upload(rows.data(), rows.size() * sizeof(int32_t)));
    if (d_rows == nullptr) return;
    const int64_t n = static_cast<int64_t>(rows.size());
    Record(Op::kGatherRows, [=, stream = launch_] {
      cuda::LaunchGatherRows(src.data, src.stride, src.cols, d_rows, n, dst.data, dst.stride, stream);
      return LaunchStatus("GatherRows");
    }, src, d_rows, n, dst);
  }

  void SummarizeLogits(TensorView logits, absl::Span<const int32_t> tokens,
                       TensorView out) override {
    if (!Begin()) return;
    const int32_t* d_tokens = nullptr;
    if (!tokens.empty()) {
      d_tokens = static_cast<const int32_t*>(Upload(tokens.data(), tokens.size() * sizeof(int32_t)));
      if (d_tokens == nullptr) return;
    }
    void* scratch = GrowOnly(summary_scratch_, cuda::SummaryScratchBytes(logits.rows, logits.cols));
    if (scratch == nullptr) return;
    Record(Op::kSummarizeLogits, [=, stream = launch_] {
      cuda::LaunchSummarizeLogits(logits.data, logits.stride, logits.rows, logits.cols, d_tokens,
                                  out.data, out.stride, scratch, stream);
      return LaunchStatus("SummarizeLogits");
    }, logits, d_tokens, out, scratch);
  }

  bool DecidesSampledRows() const override { return options_.device_sampling; }

  void DecideSampled(TensorView logits, absl::Span<const math::SampledRowRequest> requests,
                     absl::Span<const int32_t> proposal_ids, absl::Span<const float> proposal_probs,
                     TensorView out, TensorView supports) override {
    if (!Begin()) return;
    const auto* d_requests = static_cast<const math::SampledRowRequest*>(
        Upload(requests.data(), requests.size() * sizeof(math::SampledRowRequest)));
    // Proposal arrays padded (to a power of two, above 64k entries to a multiple of 64k), so that
    // steps whose proposals differ in length a little keep one graph signature (the uploads'
    // addresses and sizes are part of it) without doubling the bytes of large proposals.
    constexpr size_t kPadStep = size_t{1} << 16;
    size_t padded = 1024;
    while (padded < proposal_ids.size() && padded < kPadStep) padded *= 2;
    if (padded < proposal_ids.size()) padded = (proposal_ids.size() + kPadStep - 1) / kPadStep * kPadStep;
    proposal_ids_host_.assign(padded, 0);
    proposal_probs_host_.assign(padded, 0.0f);
    std::copy(proposal_ids.begin(), proposal_ids.end(), proposal_ids_host_.begin());
    std::copy(proposal_probs.begin(), proposal_probs.end(), proposal_probs_host_.begin());
    const auto* d_ids =
        static_cast<const int32_t*>(Upload(proposal_ids_host_.data(), padded * sizeof(int32_t)));
    const auto* d_probs =
        static_cast<const float*>(Upload(proposal_probs_host_.data(), padded * sizeof(float)));
    if (d_requests == nullptr || d_ids == nullptr || d_probs == nullptr) return;
    Record(Op::kDecideSampled, [=, stream = launch_] {
      cuda::LaunchDecideSampled(logits.data, logits.stride, logits.rows, logits.cols, d_requests,
                                d_ids, d_probs, out.data, out.stride,
                                supports.rows > 0 ? supports.data : nullptr, supports.stride, stream);
      return LaunchStatus("DecideSampled");
    }, logits, d_requests, d_ids, d_probs, out, supports);
  }

  absl::Status AllReduceSum(TensorView x, Communicator& comm) override {
    if (x.stride != x.cols) return absl::InvalidArgumentError("all-reduce of a strided view");
    if (!Begin()) return absl::OkStatus();  // the step already failed; Synchronize() says why
    const size_t count = static_cast<size_t>(x.rows * x.cols);
    if (auto* nccl = dynamic_cast<cuda::NcclCommunicator*>(&comm)) {
      Record(Op::kAllReduce, [=, stream = stream_] {
        return nccl->AllReduceSumOnStream(x.data, count, stream);
      }, x, nccl);
      return absl::OkStatus();
    }
    // A host communicator (threads of one process, e.g. several ranks sharing a GPU in tests):
    // through pinned memory, waiting for the stream. Such a step cannot become a CUDA graph.
    void* staged = Staging(count * sizeof(float));
    if (staged == nullptr) return absl::OkStatus();
    Communicator* host_comm = &comm;
    Record(Op::kAllReduce, [=, stream = stream_] {
      absl::Status s = CudaStatus(cudaMemcpyAsync(staged, x.data, count * sizeof(float),
                                                  cudaMemcpyDeviceToHost, stream), "all-reduce");
      if (s.ok()) s = CudaStatus(cudaStreamSynchronize(stream), "all-reduce");
      if (!s.ok()) return s;  // (also how a graph capture of this step fails, before the collective)
      s = host_comm->AllReduceSum(absl::MakeSpan(static_cast<float*>(staged), count));
      if (!s.ok()) return s;
      return CudaStatus(cudaMemcpyAsync(x.data, staged, count * sizeof(float),
                                        cudaMemcpyHostToDevice, stream), "all-reduce");
    }, x, host_comm);
    return absl::OkStatus();
  }

  void CopyKv(const KvStorage& from_storage, KvStorage& to_storage, int64_t count) override {
    if (!Begin()) return;
    const auto& from = static_cast<const cuda::CudaKvStorage&>(from_storage);
    auto& to = static_cast<cuda::CudaKvStorage&>(to_storage);
    cuda::CudaKvStorage::TableCopy copy;
    if (!Fail(to.EnsurePositions(count, &pinned_, &copy))) return;
    if (copy.bytes > 0) RecordCopy(copy.device, copy.staged, copy.bytes, "uploading a KV block table");
    const int64_t blocks = (count + from.blocks()->layout().block_positions - 1) /
                           from.blocks()->layout().block_positions;
    const size_t block_bytes = from.blocks()->block_bytes();
    for (int64_t b = 0; b < blocks; ++b) {
      void* dst = reinterpret_cast<void*>(to.block(b));
      const void* src = reinterpret_cast<const void*>(from.block(b));
      Record(Op::kCopyKv, [=, stream = stream_] {
        return CudaStatus(cudaMemcpyAsync(dst, src, block_bytes, cudaMemcpyDeviceToDevice, stream),
                          "copying KV blocks");
      }, dst, src, block_bytes);
    }
  }

 private:
  enum class Op : uint8_t {
    kCopyToDevice, kCopyToHost, kUpload, kEmbed, kRmsNorm, kConvert, kMatMul, kAddBias, kRope,
    kAttention, kSiluMul, kAdd, kGatherRows, kCopyKv, kAllReduce, kSummarizeLogits, kDecideSampled,
  };
  struct PendingCopy {
    void* staged;
    float* host;
    size_t bytes;
  };
  struct RecentUpload {
    const void* pinned;
    const void* device;
    size_t bytes;
  };

  // Adds GPU work to the step with the arguments that identify it (see step_graphs.h). Any op may
  // write anywhere, so a cached 16-bit operand is only trusted across consecutive products.
  template <typename Work, typename... Args>
  void Record(Op op, Work work, const Args&... signature) {
    steps_.Sign(op, signature...);
    steps_.Record(std::move(work));
    if (op != Op::kMatMul && op != Op::kConvert && op != Op::kUpload) converted_valid_ = false;
  }
  void RecordCopy(void* device, const void* staged, size_t bytes, const char* what) {
    Record(Op::kUpload, [=, stream = stream_] {
      return CudaStatus(cudaMemcpyAsync(device, staged, bytes, cudaMemcpyHostToDevice, stream), what);
    }, device, staged, bytes);
  }
  // Room for `out` rounded to the weights' 16-bit type, written by the op that produces `out` so
  // that the next product of `out` skips its conversion pass (no copy with f32 weights). False when
  // the scratch could not grow (the step has failed).
  bool OperandCopy(const TensorView& out, cuda::Copy16* copy) {
    *copy = {};
    if (weight_type_ == StorageType::kF32) return true;
    copy->type = weight_type_;
    copy->data = Scratch(out.rows * out.cols * ElementBytes(weight_type_));
    return copy->data != nullptr;
  }
  // After recording such an op: the scratch holds `out`'s operand copy (see MatMul).
  void KeepOperandCopy(const TensorView& out, const cuda::Copy16& copy) {
    if (copy.data == nullptr) return;
    converted_valid_ = true;
    converted_source_ = out;
    converted_type_ = copy.type;
  }
  static bool Overlaps(const TensorView& a, const TensorView& b) {
    if (a.data == nullptr || b.data == nullptr) return false;
    const float* a_end = a.data + (a.rows - 1) * a.stride + a.cols;
    const float* b_end = b.data + (b.rows - 1) * b.stride + b.cols;
    return a.data < b_end && b.data < a_end;
  }
  static absl::Status LaunchStatus(const char* what) { return CudaStatus(cudaGetLastError(), what); }

  StorageType KvType() const {
    return weight_type_ == StorageType::kF32 ? StorageType::kF32 : StorageType::kBF16;
  }

  void MakeCurrent() { (void)cudaSetDevice(options_.device); }
  // Starts an op: makes the device current; false when this step already failed (skip the op).
  bool Begin() {
    MakeCurrent();
    return status_.ok();
  }
  bool Fail(absl::Status status) {
    if (status.ok()) return true;
    if (status_.ok()) status_ = std::move(status);
    return false;
  }

  void* Staging(size_t bytes) {
    absl::StatusOr<void*> p = pinned_.Allocate(bytes);
    if (!Fail(p.status())) return nullptr;
    return *p;
  }

  // Copies small host data (ids, positions, descriptors) to device memory valid for this step. The
  // same bytes uploaded earlier in the step (every layer repeats positions and descriptors) are
  // reused instead of copied again.
  const void* Upload(const void* data, size_t bytes) {
    if (bytes == 0) {  // an empty span: any valid device address will do
      absl::StatusOr<void*> device = meta_.Allocate(1);
      return Fail(device.status()) ? *device : nullptr;
    }
    for (const RecentUpload& u : recent_uploads_) {
      if (u.bytes == bytes && std::memcmp(u.pinned, data, bytes) == 0) return u.device;
    }
    void* staged = Staging(bytes);
    if (staged == nullptr) return nullptr;
    std::memcpy(staged, data, bytes);
    absl::StatusOr<void*> device = meta_.Allocate(bytes);
    if (!Fail(device.status())) return nullptr;
    RecordCopy(*device, staged, bytes, "uploading op arguments");
    if (recent_uploads_.size() == 8) recent_uploads_.erase(recent_uploads_.begin());
    recent_uploads_.push_back({staged, *device, bytes});
    return *device;
  }

  // Grow-only device scratch (16-bit matmul operands; attention partials; summary chunks). A
  // replaced buffer is kept until the step has run: work recorded before the replacement still
  // uses it, and a cuBLASLt tuning run inside the step allocates from the same pool.
  void* GrowOnly(std::unique_ptr<cuda::PoolAllocation>& buffer, size_t bytes) {
    if (buffer == nullptr || buffer->bytes() < bytes) {
      if (buffer != nullptr) retired_.push_back(std::move(buffer));
      auto allocation = pool_.Allocate(std::max(bytes, size_t{1} << 20));
      if (!Fail(allocation.status())) return nullptr;
      buffer = std::move(*allocation);
      converted_valid_ = false;
    }
    return buffer->get();
  }
  void* Scratch(size_t bytes) { return GrowOnly(scratch_, bytes); }
  void* Partials(size_t bytes) { return GrowOnly(partials_, bytes); }
  // The attention kernel's chunk counters: zeroed when allocated, left zero by every launch.
  int* ChunkCounters(int64_t count) {
    const size_t bytes = count * sizeof(int);
    if (chunk_counters_ != nullptr && chunk_counters_->bytes() >= bytes) {
      return static_cast<int*>(chunk_counters_->get());
    }
    void* counters = GrowOnly(chunk_counters_, bytes);
    // Enqueued now, ahead of the step's recorded work (which runs at its end).
    if (counters == nullptr ||
        !Fail(CudaStatus(cudaMemsetAsync(counters, 0, chunk_counters_->bytes(), stream_),
                         "zeroing attention counters"))) {
      return nullptr;
    }
    return static_cast<int*>(counters);
  }

  // Converts rows of a checkpoint tensor to `type` on the host and copies them to `device` through
  // two pinned buffers (conversion of one chunk overlaps the copy of the previous one).
  absl::Status CopyWeightRows(const WeightTensor& tensor, int64_t rows, int64_t cols,
                              StorageType type, void* device) {
    const size_t out_row_bytes = cols * ElementBytes(type);
    const bool same_type = DTypeOf(type) == tensor.dtype;
    const MatMulWeight view{tensor.data, tensor.dtype, rows, cols};
    const size_t in_row_bytes = DTypeByteSize(tensor.dtype, cols).value_or(0);
    std::vector<float> row_f32(cols);
    std::vector<int32_t> one(1);
    auto fill = [&](int64_t first, int64_t count, uint8_t* staged) {
      if (same_type) {
        std::memcpy(staged, tensor.data + first * in_row_bytes, count * out_row_bytes);
        return;
      }
      for (int64_t r = 0; r < count; ++r) {
        one[0] = static_cast<int32_t>(first + r);
        engine::GatherRows(view, one, row_f32.data());  // any stored dtype -> f32
        uint8_t* dst = staged + r * out_row_bytes;
        for (int64_t c = 0; c < cols; ++c) {
          switch (type) {
            case StorageType::kF32:
              std::memcpy(dst + c * 4, &row_f32[c], 4);
              break;
            case StorageType::kBF16: {
              const uint16_t h = F32ToBf16(row_f32[c]);
              std::memcpy(dst + c * 2, &h, 2);
              break;
            }
            case StorageType::kF16: {
              const uint16_t h = F32ToF16(row_f32[c]);
              std::memcpy(dst + c * 2, &h, 2);
              break;
            }
            case StorageType::kF8E4M3:  // FP8 goes through UploadFp8
              break;
          }
        }
      }
    };
    return StagedUpload(device, rows, out_row_bytes, tensor.name, fill);
  }

  // Copies `rows` rows of `row_bytes` to `device` through two pinned buffers used in turn: `fill`
  // writes rows [first, first + count) into one while the copy from the other runs. Returns when
  // all of it has arrived.
  absl::Status StagedUpload(void* device, int64_t rows, size_t row_bytes, absl::string_view what,
                            const std::function<void(int64_t first, int64_t count, uint8_t* staged)>& fill) {
    constexpr size_t kBufferBytes = size_t{64} << 20;
    if (upload_buffers_.empty()) {
      for (int i = 0; i < 2; ++i) {
        void* p = nullptr;
        VERDICT_RETURN_IF_ERROR(CudaStatus(cudaMallocHost(&p, kBufferBytes), "pinned upload buffer"));
        upload_buffers_.push_back(p);
        cudaEvent_t e;
        VERDICT_RETURN_IF_ERROR(CudaStatus(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "event"));
        upload_events_[i] = e;
      }
    }
    const int64_t rows_per_chunk =
        std::max<int64_t>(1, static_cast<int64_t>(kBufferBytes / std::max<size_t>(row_bytes, 1)));
    int buffer = 0;
    for (int64_t first = 0; first < rows; first += rows_per_chunk, buffer ^= 1) {
      const int64_t count = std::min(rows_per_chunk, rows - first);
      VERDICT_RETURN_IF_ERROR(CudaStatus(cudaEventSynchronize(upload_events_[buffer]), "upload"));
      auto* staged = static_cast<uint8_t*>(upload_buffers_[buffer]);
      fill(first, count, staged);
      VERDICT_RETURN_IF_ERROR(CudaStatus(
          cudaMemcpyAsync(static_cast<uint8_t*>(device) + first * row_bytes, staged, count * row_bytes,
                          cudaMemcpyHostToDevice, stream_),
          absl::StrCat("uploading ", what)));
      VERDICT_RETURN_IF_ERROR(CudaStatus(cudaEventRecord(upload_events_[buffer], stream_), "upload"));
    }
    return CudaStatus(cudaStreamSynchronize(stream_), absl::StrCat("uploading ", what));
  }


  CudaBackendOptions options_;
  int64_t tensor_core_prefills_ = 0;
  cudaStream_t stream_;
  cuda::LaunchStream launch_;  // stream_ for our kernels (with programmatic launch if enabled)
  StorageType weight_type_;
  cuda::DevicePool pool_;
  cuda::StepArena pinned_;  // staging of host<->device copies for the current step
  cuda::StepArena meta_;    // device copies of op arguments for the current step
  std::vector<int32_t> proposal_ids_host_;  // DecideSampled's padded proposal arrays
  std::vector<float> proposal_probs_host_;
  std::unique_ptr<cuda::LtMatMul> lt_;
  std::map<std::tuple<int64_t, int64_t>, std::unique_ptr<cuda::KvBlockPool>> kv_pools_;
  std::unique_ptr<cuda::PoolAllocation> scratch_;
  std::unique_ptr<cuda::PoolAllocation> partials_;
  std::unique_ptr<cuda::PoolAllocation> chunk_counters_;
  std::unique_ptr<cuda::PoolAllocation> dequant_;  // FP8 weights as bf16 for cuBLASLt (see MatMul)
  std::unique_ptr<cuda::PoolAllocation> summary_scratch_;
  std::vector<std::unique_ptr<cuda::PoolAllocation>> retired_;  // replaced scratch, until Synchronize
  std::vector<PendingCopy> pending_host_copies_;
  std::vector<RecentUpload> recent_uploads_;
  std::vector<void*> upload_buffers_;
  std::array<cudaEvent_t, 2> upload_events_{};
  cuda::StepGraphs steps_;
  // The 16-bit copy of an activation in scratch_ (see MatMul).
  bool converted_valid_ = false;
  TensorView converted_source_;
  StorageType converted_type_ = StorageType::kF32;
  absl::Status status_;  // first error while recording this step
  mutable absl::Mutex snapshot_mu_;
  CudaBackendStats snapshot_ ABSL_GUARDED_BY(snapshot_mu_);  // as of the last Synchronize()
};

}  // namespace

bool CudaBackendCompiled() { return true; }

int CudaDeviceCount(std::string* why) {
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    if (why != nullptr) *why = absl::StrCat(cudaGetErrorName(error), ": ", cudaGetErrorString(error));
    (void)cudaGetLastError();
    return 0;
  }
  if (count == 0 && why != nullptr) *why = "no CUDA device";
  return count;
}

absl::StatusOr<std::string> CudaDeviceDescription(int device) {
  cudaDeviceProp prop;
  VERDICT_RETURN_IF_ERROR(CudaStatus(cudaGetDeviceProperties(&prop, device),
                                     absl::StrCat("properties of CUDA device ", device)));
  int driver = 0, runtime = 0;
  (void)cudaDriverGetVersion(&driver);
  (void)cudaRuntimeGetVersion(&runtime);
  return absl::StrFormat("cuda:%d %s, %.1f GiB, %d SMs, sm_%d%d, driver %d.%d, runtime %d.%d", device,
                         prop.name, prop.totalGlobalMem / double(1 << 30), prop.multiProcessorCount,
                         prop.major, prop.minor, driver / 1000, (driver % 1000) / 10,
                         runtime / 1000, (runtime % 1000) / 10);
}

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const CudaBackendOptions& options) {
  if (options.weight_dtype != DType::kBF16 && options.weight_dtype != DType::kF16 &&
      options.weight_dtype != DType::kF32 && options.weight_dtype != DType::kF8E4M3Block) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the CUDA backend stores weights as bf16, f16, f32 or fp8, not ", DTypeName(options.weight_dtype)));
  }
  if (options.kv_block_positions <= 0) {
    return absl::InvalidArgumentError("kv_block_positions must be positive");
  }
  std::string why;
  const int count = CudaDeviceCount(&why);
  if (options.device < 0 || options.device >= count) {
    return absl::FailedPreconditionError(absl::StrCat(
        "CUDA device ", options.device, " is not available (", count, " device(s)",
        why.empty() ? "" : absl::StrCat("; ", why), ")"));
  }
  VERDICT_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(options.device), "selecting the CUDA device"));
  cudaStream_t stream;
  VERDICT_RETURN_IF_ERROR(
      CudaStatus(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "creating a stream"));
  auto backend = std::make_unique<CudaBackend>(options, stream);
  VERDICT_RETURN_IF_ERROR(backend->Init());
  return std::unique_ptr<Backend>(std::move(backend));
}

absl::StatusOr<double> MeasureCudaCopyBandwidth(int device) {
  VERDICT_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(device), "selecting the CUDA device"));
  const size_t bytes = size_t{1} << 30;
  void* src = nullptr;
  void* dst = nullptr;
  VERDICT_RETURN_IF_ERROR(CudaStatus(cudaMalloc(&src, bytes), "bandwidth buffer"));
  if (absl::Status s = CudaStatus(cudaMalloc(&dst, bytes), "bandwidth buffer"); !s.ok()) {
    cudaFree(src);
    return s;
  }
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  float best_ms = 1e30f;
  absl::Status status = CudaStatus(cudaMemset(src, 1, bytes), "bandwidth buffer");
  for (int run = 0; run < 6 && status.ok(); ++run) {
    cudaEventRecord(start);
    status = CudaStatus(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice), "copy");
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    if (run > 0) best_ms = std::min(best_ms, ms);  // the first run warms up
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaFree(src);
  cudaFree(dst);
  if (!status.ok()) return status;
  return 2.0 * bytes / (best_ms * 1e-3);
}

CudaBackendStats GetCudaBackendStats(const Backend& backend) {
  if (const auto* cuda_backend = dynamic_cast<const CudaBackend*>(&backend)) {
    return cuda_backend->Stats();
  }
  return {};
}

CudaBackendStats GetCudaBackendStatsSnapshot(const Backend& backend) {
  if (const auto* cuda_backend = dynamic_cast<const CudaBackend*>(&backend)) {
    return cuda_backend->Snapshot();
  }
  return {};
}

}  // namespace verdict::engine
