// SPDX-License-Identifier: Apache-2.0
#include "engine/testing/backend_checks.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <random>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/fp8.h"
#include "engine/kv_cache.h"
#include "engine/model.h"
#include "engine/rope.h"
#include "engine/sampler.h"

namespace verdict::engine {
namespace {

constexpr float kPoison = std::numeric_limits<float>::quiet_NaN();

// Relative error of `candidate` against `reference` (see the header), infinity for a non-finite
// candidate value or a size mismatch.
CheckResult Compare(std::string name, const std::vector<float>& reference,
                    const std::vector<float>& candidate, double tolerance) {
  CheckResult r;
  r.name = std::move(name);
  r.tolerance = tolerance;
  if (reference.size() != candidate.size()) {
    r.relative_error = std::numeric_limits<double>::infinity();
    r.detail = absl::StrCat("size ", candidate.size(), " vs ", reference.size());
    return r;
  }
  double max_ref = 0, max_diff = 0;
  size_t worst = 0;
  for (size_t i = 0; i < reference.size(); ++i) {
    if (!std::isfinite(candidate[i])) {
      r.relative_error = std::numeric_limits<double>::infinity();
      r.detail = absl::StrCat("element ", i, " is ", candidate[i], " (unwritten or overflow)");
      return r;
    }
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(reference[i])));
    const double diff = std::fabs(static_cast<double>(candidate[i]) - reference[i]);
    if (diff > max_diff) {
      max_diff = diff;
      worst = i;
    }
  }
  r.relative_error = max_diff / std::max(max_ref, 1e-20);
  r.passed = r.relative_error <= tolerance;
  if (!r.passed && !reference.empty()) {
    r.detail = absl::StrFormat("worst element %d: %.6g vs %.6g", worst, candidate[worst], reference[worst]);
  }
  return r;
}

CheckResult Failure(std::string name, const absl::Status& status) {
  CheckResult r;
  r.name = std::move(name);
  r.relative_error = std::numeric_limits<double>::infinity();
  r.detail = std::string(status.message());
  return r;
}

// The summaries a backend wrote (kLogitSummaryWidth floats per row) as LogitSummary values.
std::vector<LogitSummary> ReadSummaries(absl::Span<const float> raw, absl::Span<const int32_t> tokens) {
  std::vector<LogitSummary> out;
  for (size_t r = 0; (r + 1) * kLogitSummaryWidth <= raw.size(); ++r) {
    out.push_back(LogitSummary::FromRow(raw.data() + r * kLogitSummaryWidth,
                                        tokens.empty() ? -1 : tokens[r]));
  }
  return out;
}

// Logits summaries computed on a backend against a double-precision computation from the same
// logits on the host. The argmax must match exactly (the same tie rule); the rest within
// `tolerance` relative to max(1, |value|).
CheckResult CompareSummaries(std::string name, absl::Span<const float> logits, int64_t vocab,
                             absl::Span<const LogitSummary> summaries,
                             absl::Span<const int32_t> tokens, double tolerance,
                             float tie_margin = 0.0f) {
  CheckResult r;
  r.name = std::move(name);
  r.tolerance = tolerance;
  const int64_t rows = vocab > 0 ? static_cast<int64_t>(logits.size()) / vocab : 0;
  if (static_cast<int64_t>(summaries.size()) != rows) {
    r.relative_error = std::numeric_limits<double>::infinity();
    r.detail = absl::StrCat(summaries.size(), " summaries for ", rows, " rows");
    return r;
  }
  auto err = [](double got, double want) {
    if (!std::isfinite(got)) return std::numeric_limits<double>::infinity();
    return std::fabs(got - want) / std::max(1.0, std::fabs(want));
  };
  for (int64_t row = 0; row < rows; ++row) {
    absl::Span<const float> x = logits.subspan(row * vocab, vocab);
    const int32_t token = tokens.empty() ? -1 : tokens[row];
    const LogitSummary& got = summaries[row];
    const int32_t argmax = Argmax(x);
    const double max = x[argmax];
    double sum = 0, weighted = 0;
    for (float v : x) {
      const double z = static_cast<double>(v) - max;
      sum += std::exp(z);
      weighted += std::exp(z) * z;
    }
    const double lse = max + std::log(sum);
    const double entropy = std::log(sum) - weighted / sum;
    // Another argmax is accepted only at a near-tie of the reference's logits (a candidate whose
    // logits are not the reference's, e.g. bf16, may flip it).
    const bool tie = got.argmax >= 0 && got.argmax < vocab && x[argmax] - x[got.argmax] <= tie_margin;
    if (got.argmax != argmax && !tie) {
      r.relative_error = std::numeric_limits<double>::infinity();
      r.detail = absl::StrCat("row ", row, ": argmax ", got.argmax, ", expected ", argmax);
      return r;
    }
    double e = std::max({err(got.max_logit, max), err(got.log_sum_exp, lse), err(got.entropy, entropy)});
    if (token >= 0) {
      e = std::max(e, err(got.token_logit, x[token]));
    } else if (!std::isnan(got.token_logit)) {
      e = std::numeric_limits<double>::infinity();
    }
    if (e > r.relative_error) {
      r.relative_error = e;
      r.detail = absl::StrFormat("worst row %d: lse %.7g vs %.7g, entropy %.7g vs %.7g", row,
                                 got.log_sum_exp, lse, got.entropy, entropy);
    }
  }
  r.passed = r.relative_error <= tolerance;
  return r;
}

// A buffer of `rows` x `stride` floats on one backend and a [rows, cols] view of it.
struct Tensor {
  std::unique_ptr<DeviceBuffer> buffer;
  TensorView view;
};

absl::StatusOr<Tensor> MakeTensor(Backend& b, int64_t rows, int64_t cols, int64_t stride = -1) {
  if (stride < 0) stride = cols;
  auto buffer = b.Allocate(std::max<int64_t>(1, rows * stride) * sizeof(float));
  if (!buffer.ok()) return buffer.status();
  Tensor t;
  t.buffer = std::move(*buffer);
  t.view = TensorView{static_cast<float*>(t.buffer->data()), rows, cols, stride};
  return t;
}

absl::Status Write(Backend& b, const TensorView& view, const std::vector<float>& host) {
  b.CopyToDevice(host.data(), view);
  return b.Synchronize();
}

absl::StatusOr<std::vector<float>> Read(Backend& b, const TensorView& view) {
  std::vector<float> host(view.rows * view.cols);
  b.CopyToHost(view, host.data());
  absl::Status s = b.Synchronize();
  if (!s.ok()) return s;
  return host;
}

// Fills a [rows, stride] buffer, poisoning the padding and (optionally) the view itself.
absl::Status Poison(Backend& b, const TensorView& view) {
  std::vector<float> nan(view.rows * view.cols, kPoison);
  return Write(b, view, nan);
}

std::vector<float> Random(std::mt19937& rng, size_t n, float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

// A host tensor in a checkpoint dtype, viewable as a WeightTensor (kept alive by the caller: the CPU
// backend keeps a zero-copy view).
struct HostWeight {
  std::vector<uint8_t> bytes;
  WeightTensor tensor;
};

std::unique_ptr<HostWeight> MakeWeight(const std::string& name, const std::vector<float>& values,
                                       std::vector<int64_t> shape, DType dtype) {
  auto w = std::make_unique<HostWeight>();
  w->tensor.name = name;
  w->tensor.dtype = dtype;
  w->tensor.shape = std::move(shape);
  const size_t n = values.size();
  switch (dtype) {
    case DType::kF32:
      w->bytes.resize(n * 4);
      std::memcpy(w->bytes.data(), values.data(), n * 4);
      break;
    case DType::kBF16:
    case DType::kF16:
      w->bytes.resize(n * 2);
      for (size_t i = 0; i < n; ++i) {
        const uint16_t h = dtype == DType::kBF16 ? F32ToBf16(values[i]) : F32ToF16(values[i]);
        std::memcpy(w->bytes.data() + 2 * i, &h, 2);
      }
      break;
    case DType::kQ8_0: {
      w->bytes.resize(n / kQ8_0BlockSize * sizeof(BlockQ8_0));
      auto* blocks = reinterpret_cast<BlockQ8_0*>(w->bytes.data());
      for (size_t b = 0; b < n / kQ8_0BlockSize; ++b) {
        float amax = 0;
        for (int i = 0; i < kQ8_0BlockSize; ++i) amax = std::max(amax, std::fabs(values[b * 32 + i]));
        const float d = amax / 127.0f;
        blocks[b].scale_f16 = F32ToF16(d);
        for (int i = 0; i < kQ8_0BlockSize; ++i) {
          blocks[b].qs[i] = static_cast<int8_t>(d > 0 ? std::lround(values[b * 32 + i] / d) : 0);
        }
      }
      break;
    }
    case DType::kF8E4M3Block: {  // quantized row by row, as the model loader does
      const int64_t cols = w->tensor.shape.back();
      const int64_t rows = static_cast<int64_t>(n) / cols;
      const int64_t row_bytes = Fp8BlockRowBytes(cols);
      w->bytes.resize(rows * row_bytes);
      for (int64_t r = 0; r < rows; ++r) {
        QuantizeFp8BlockRow(values.data() + r * cols, cols, w->bytes.data() + r * row_bytes);
      }
      break;
    }
    default:  // the GGML block quantizations are checked by ggml_quants_test against gguf's reference
      break;
  }
  w->tensor.data = w->bytes.data();
  w->tensor.nbytes = w->bytes.size();
  return w;
}

// Both backends' copies of one weight.
struct WeightPair {
  std::unique_ptr<HostWeight> host;
  std::unique_ptr<DeviceWeight> reference, candidate;
};

absl::StatusOr<WeightPair> Upload(Backend& ref, Backend& cand, std::unique_ptr<HostWeight> host,
                                  int64_t rows, int64_t cols) {
  WeightPair p;
  p.host = std::move(host);
  auto r = ref.UploadWeight(p.host->tensor, rows, cols);
  if (!r.ok()) return r.status();
  auto c = cand.UploadWeight(p.host->tensor, rows, cols);
  if (!c.ok()) return c.status();
  p.reference = std::move(*r);
  p.candidate = std::move(*c);
  return p;
}

// Runs `op` on both backends: inputs are written to both, the candidate's output poisoned, then
// outputs are read back and compared.
class OpRunner {
 public:
  OpRunner(Backend& ref, Backend& cand, double tolerance, std::vector<CheckResult>* results)
      : ref_(ref), cand_(cand), tolerance_(tolerance), results_(results) {}

  struct Pair {
    Tensor ref, cand;
  };
  // A tensor on both backends holding `values` (or poisoned when values is empty).
  absl::StatusOr<Pair> Input(int64_t rows, int64_t cols, const std::vector<float>& values,
                             int64_t stride = -1) {
    Pair p;
    auto r = MakeTensor(ref_, rows, cols, stride);
    if (!r.ok()) return r.status();
    auto c = MakeTensor(cand_, rows, cols, stride);
    if (!c.ok()) return c.status();
    p.ref = std::move(*r);
    p.cand = std::move(*c);
    if (values.empty()) {
      if (auto s = Poison(ref_, p.ref.view); !s.ok()) return s;
      if (auto s = Poison(cand_, p.cand.view); !s.ok()) return s;
    } else {
      if (auto s = Write(ref_, p.ref.view, values); !s.ok()) return s;
      if (auto s = Write(cand_, p.cand.view, values); !s.ok()) return s;
    }
    return p;
  }

  // Compares the two sides of `out` after the op ran on both; records the result.
  void Finish(const std::string& name, const Pair& out) {
    absl::Status rs = ref_.Synchronize();
    absl::Status cs = cand_.Synchronize();
    if (!rs.ok()) return results_->push_back(Failure(name, rs));
    if (!cs.ok()) return results_->push_back(Failure(name, cs));
    auto r = Read(ref_, out.ref.view);
    auto c = Read(cand_, out.cand.view);
    if (!r.ok()) return results_->push_back(Failure(name, r.status()));
    if (!c.ok()) return results_->push_back(Failure(name, c.status()));
    results_->push_back(Compare(name, *r, *c, tolerance_));
  }

  void Fail(const std::string& name, const absl::Status& s) { results_->push_back(Failure(name, s)); }

  Backend& ref() { return ref_; }
  Backend& cand() { return cand_; }

 private:
  Backend& ref_;
  Backend& cand_;
  double tolerance_;
  std::vector<CheckResult>* results_;
};

#define CHECK_OK_OR_RECORD(runner, name, expr) \
  do {                                         \
    absl::Status _s = (expr);                  \
    if (!_s.ok()) {                            \
      (runner).Fail((name), _s);               \
      return;                                  \
    }                                          \
  } while (0)

#define ASSIGN_OR_RECORD(runner, name, lhs, expr) \
  auto lhs##_or = (expr);                         \
  if (!lhs##_or.ok()) {                           \
    (runner).Fail((name), lhs##_or.status());     \
    return;                                       \
  }                                               \
  auto lhs = std::move(*lhs##_or)

void CheckMatMul(OpRunner& run, std::mt19937& rng, DType dtype, int64_t m, int64_t n, int64_t k,
                 bool accumulate) {
  const std::string name = absl::StrCat("matmul ", DTypeName(dtype), " m=", m, " n=", n, " k=", k,
                                        accumulate ? " accumulate" : "");
  ASSIGN_OR_RECORD(run, name, w, Upload(run.ref(), run.cand(),
                                        MakeWeight("w", Random(rng, n * k, 0.05f), {n, k}, dtype), n, k));
  // Activations with a row stride wider than k, output a column window of a wider buffer.
  ASSIGN_OR_RECORD(run, name, x, run.Input(m, k, {}, k + 8));
  std::vector<float> xs = Random(rng, m * k);
  CHECK_OK_OR_RECORD(run, name, Write(run.ref(), x.ref.view, xs));
  CHECK_OK_OR_RECORD(run, name, Write(run.cand(), x.cand.view, xs));
  ASSIGN_OR_RECORD(run, name, out, run.Input(m, n + 5, accumulate ? Random(rng, m * (n + 5)) : std::vector<float>{}));
  OpRunner::Pair window{{nullptr, out.ref.view.Cols(3, n)}, {nullptr, out.cand.view.Cols(3, n)}};
  run.ref().MatMul(x.ref.view, *w.reference, window.ref.view, accumulate);
  run.cand().MatMul(x.cand.view, *w.candidate, window.cand.view, accumulate);
  run.Finish(name, window);
}

void CheckEmbed(OpRunner& run, std::mt19937& rng, DType dtype) {
  const std::string name = absl::StrCat("embed ", DTypeName(dtype));
  ASSIGN_OR_RECORD(run, name, table, Upload(run.ref(), run.cand(),
                                            MakeWeight("t", Random(rng, 500 * 200), {500, 200}, dtype), 500, 200));
  std::vector<int32_t> ids = {0, 499, 7, 7, 250, 31, 1};
  ASSIGN_OR_RECORD(run, name, out, run.Input(static_cast<int64_t>(ids.size()), 200, {}));
  run.ref().Embed(*table.reference, ids, out.ref.view);
  run.cand().Embed(*table.candidate, ids, out.cand.view);
  run.Finish(name, out);
}

void CheckElementwise(OpRunner& run, std::mt19937& rng) {
  const int64_t rows = 7, cols = 1000;
  {
    const std::string name = "rms_norm";
    ASSIGN_OR_RECORD(run, name, w, Upload(run.ref(), run.cand(),
                                          MakeWeight("n", Random(rng, cols), {cols}, DType::kF32), 1, cols));
    ASSIGN_OR_RECORD(run, name, x, run.Input(rows, cols, Random(rng, rows * (cols + 3)), cols + 3));
    ASSIGN_OR_RECORD(run, name, out, run.Input(rows, cols, {}));
    run.ref().RmsNorm(x.ref.view, *w.reference, 1e-5f, out.ref.view);
    run.cand().RmsNorm(x.cand.view, *w.candidate, 1e-5f, out.cand.view);
    run.Finish(name, out);
  }
  {
    const std::string name = "add_rms_norm";  // x += residual, then the norm (strided views)
    ASSIGN_OR_RECORD(run, name, w, Upload(run.ref(), run.cand(),
                                          MakeWeight("n", Random(rng, cols), {cols}, DType::kF32), 1, cols));
    ASSIGN_OR_RECORD(run, name, x, run.Input(rows, cols, Random(rng, rows * (cols + 3)), cols + 3));
    ASSIGN_OR_RECORD(run, name, residual, run.Input(rows, cols, Random(rng, rows * (cols + 5)), cols + 5));
    ASSIGN_OR_RECORD(run, name, out, run.Input(rows, cols, {}));
    run.ref().AddRmsNorm(residual.ref.view, x.ref.view, *w.reference, 1e-5f, out.ref.view);
    run.cand().AddRmsNorm(residual.cand.view, x.cand.view, *w.candidate, 1e-5f, out.cand.view);
    run.Finish(name, out);
    run.Finish(name + " (updated x)", x);
  }
  {
    const std::string name = "silu_mul";
    ASSIGN_OR_RECORD(run, name, g, run.Input(rows, cols, Random(rng, rows * cols, 3.0f)));
    ASSIGN_OR_RECORD(run, name, u, run.Input(rows, cols, Random(rng, rows * cols)));
    ASSIGN_OR_RECORD(run, name, out, run.Input(rows, cols, {}));
    run.ref().SiluMul(g.ref.view, u.ref.view, out.ref.view);
    run.cand().SiluMul(g.cand.view, u.cand.view, out.cand.view);
    run.Finish(name, out);
  }
  {
    const std::string name = "add + add_bias";
    ASSIGN_OR_RECORD(run, name, b, Upload(run.ref(), run.cand(),
                                          MakeWeight("b", Random(rng, cols), {cols}, DType::kBF16), 1, cols));
    ASSIGN_OR_RECORD(run, name, x, run.Input(rows, cols, Random(rng, rows * cols)));
    ASSIGN_OR_RECORD(run, name, y, run.Input(rows, cols, Random(rng, rows * cols)));
    run.ref().Add(x.ref.view, y.ref.view);
    run.cand().Add(x.cand.view, y.cand.view);
    run.ref().AddBias(y.ref.view, *b.reference);
    run.cand().AddBias(y.cand.view, *b.candidate);
    run.Finish(name, y);
  }
  {
    const std::string name = "gather_rows";
    ASSIGN_OR_RECORD(run, name, x, run.Input(rows, cols, Random(rng, rows * cols)));
    std::vector<int32_t> pick = {6, 0, 3, 3};
    ASSIGN_OR_RECORD(run, name, out, run.Input(static_cast<int64_t>(pick.size()), cols, {}));
    run.ref().GatherRows(x.ref.view, pick, out.ref.view);
    run.cand().GatherRows(x.cand.view, pick, out.cand.view);
    run.Finish(name, out);
  }
  for (bool interleaved : {false, true}) {
    const std::string name = absl::StrCat("rope llama3-scaled ", interleaved ? "interleaved" : "half-split");
    LlamaConfig c;
    c.head_dim = 64;
    c.rope_theta = 500000.0f;
    c.has_llama3_rope_scaling = true;
    c.rope_style = interleaved ? RopeStyle::kInterleaved : RopeStyle::kHalfSplit;
    auto rope = ComputeRopeParams(c, {});
    if (!rope.ok()) return run.Fail(name, rope.status());
    const int64_t heads = 4;
    std::vector<int32_t> positions = {0, 1, 17, 4095, 8191, 65000, 131071};
    const int64_t n = static_cast<int64_t>(positions.size());
    ASSIGN_OR_RECORD(run, name, x, run.Input(n, heads * c.head_dim, Random(rng, n * heads * c.head_dim)));
    run.ref().Rope(x.ref.view, heads, c.head_dim, positions, *rope);
    run.cand().Rope(x.cand.view, heads, c.head_dim, positions, *rope);
    run.Finish(name, x);
  }
}

// SummarizeLogits on a Llama-3-sized vocabulary: random rows, a row with its maximum repeated
// (the first index must win), a row with -inf entries (masked tokens), a strided input, tokens
// present and absent. Pure f32 on both sides: compared with the host in double precision.
void CheckLogitSummaries(OpRunner& run, std::mt19937& rng, std::vector<CheckResult>* results) {
  const std::string name = "summarize_logits vocab=128256";
  const int64_t rows = 6, vocab = 128256, stride = vocab + 16;
  std::vector<float> values = Random(rng, rows * vocab, 3.0f);  // dense [rows, vocab]
  float* tie_row = values.data() + 1 * vocab;
  tie_row[90000] = tie_row[70001] = tie_row[123] = 40.0f;  // argmax 123
  float* masked = values.data() + 2 * vocab;
  for (int64_t c = 0; c < vocab; c += 3) masked[c] = -std::numeric_limits<float>::infinity();
  float* peaked = values.data() + 3 * vocab;
  peaked[vocab - 1] = 80.0f;  // near-zero entropy, argmax at the last index
  ASSIGN_OR_RECORD(run, name, x, run.Input(rows, vocab, values, stride));
  ASSIGN_OR_RECORD(run, name, out, run.Input(rows, kLogitSummaryWidth, {}));
  const std::vector<int32_t> tokens = {0, 123, 4, static_cast<int32_t>(vocab - 1), -1, 77777};
  run.cand().SummarizeLogits(x.cand.view, tokens, out.cand.view);
  CHECK_OK_OR_RECORD(run, name, run.cand().Synchronize());
  ASSIGN_OR_RECORD(run, name, got, Read(run.cand(), out.cand.view));
  results->push_back(CompareSummaries(name, values, vocab, ReadSummaries(got, tokens), tokens, 1e-4));
}

// DecideSampled on a Llama-3-sized vocabulary against the host executor (engine::DecideSampledRow,
// itself checked against a full sort in sampler_test): plain temperature, top-k, top-p and both,
// greedy and sampled drafts' proposals, a bonus row, a greedy row, a token outside the nucleus, a
// proposal equal to the target's distribution (empty residual), ties and masked tokens. The
// probabilities must agree to 1e-5 (absolute) and the drawn tokens exactly.
void CheckSampledDecisions(OpRunner& run, std::mt19937& rng, std::vector<CheckResult>* results) {
  const std::string name = "decide_sampled vocab=128256";
  const int64_t vocab = 128256, stride = vocab + 16;
  struct Case {
    SamplingParams params;
    int32_t token;
    enum { kNone, kSparse, kTarget } proposal;
  };
  const std::vector<Case> cases = {
      {{.temperature = 1.0f}, 5, Case::kSparse},
      {{.temperature = 0.7f, .top_k = 50}, -2, Case::kNone},  // -2: the row's argmax
      {{.temperature = 0.8f, .top_p = 0.9f}, -2, Case::kSparse},
      {{.temperature = 1.1f, .top_k = 40, .top_p = 0.95f}, 77, Case::kSparse},
      {{.temperature = 0.9f, .top_p = 0.8f}, -1, Case::kNone},  // bonus row
      {{.temperature = 0.0f}, -2, Case::kNone},                  // greedy
      {{.temperature = 0.6f, .top_k = 5}, 1234, Case::kNone},   // outside the top 5: p = 0
      {{.temperature = 1.0f, .top_p = 0.7f}, -2, Case::kTarget},  // p == q: draw from p
      {{.temperature = 1.3f, .top_k = 1000, .top_p = 0.99f}, -2, Case::kSparse},
      {{.temperature = 1.0f, .top_k = 30000}, 3, Case::kSparse},  // the top-k cut among +-0
  };
  const int64_t rows = static_cast<int64_t>(cases.size());
  std::vector<float> values = Random(rng, rows * vocab, 3.0f);
  float* tied = values.data() + 1 * vocab;  // a tie across the top-50 boundary, and at the top
  for (int64_t c = 0; c < 100; ++c) tied[c * 1000 + 7] = 9.0f;
  float* masked = values.data() + 2 * vocab;
  for (int64_t c = 0; c < vocab; c += 3) masked[c] = -std::numeric_limits<float>::infinity();
  float* zeros = values.data() + (rows - 1) * vocab;  // most logits +0 or -0 (equal: ordered by id)
  for (int64_t c = 0; c < vocab; ++c) {
    if (c % 5 != 0) zeros[c] = c % 2 == 0 ? 0.0f : -0.0f;
  }
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::vector<math::SampledRowRequest> requests;
  std::vector<int32_t> ids;
  std::vector<float> probs;
  std::vector<float> dense;
  for (int64_t r = 0; r < rows; ++r) {
    const Case& c = cases[r];
    absl::Span<const float> row(values.data() + r * vocab, vocab);
    math::SampledRowRequest q;
    q.temperature = c.params.temperature;
    q.top_k = static_cast<int32_t>(c.params.top_k);
    q.top_p = c.params.top_p;
    q.token = c.token == -2 ? Argmax(row) : c.token;
    q.proposal_begin = static_cast<int32_t>(ids.size());
    if (c.proposal == Case::kSparse) {  // ~1 in 16 ids and the token, normalised
      double total = 0;
      for (int32_t id = 0; id < vocab; ++id) {
        if (id == q.token || rng() % 16 == 0) {
          ids.push_back(id);
          probs.push_back(static_cast<float>(uniform(rng)) + (id == q.token ? 500.0f : 0.0f));
          total += probs.back();
        }
      }
      for (size_t j = q.proposal_begin; j < probs.size(); ++j) probs[j] = static_cast<float>(probs[j] / total);
    } else if (c.proposal == Case::kTarget) {
      SamplingDistribution(row, c.params, &dense);
      for (int32_t id = 0; id < vocab; ++id) {
        if (dense[id] > 0) {
          ids.push_back(id);
          probs.push_back(dense[id]);
        }
      }
    }
    q.proposal_count = static_cast<int32_t>(ids.size()) - q.proposal_begin;
    q.sample_uniform = uniform(rng);
    requests.push_back(q);
  }
  ASSIGN_OR_RECORD(run, name, x, run.Input(rows, vocab, values, stride));
  ASSIGN_OR_RECORD(run, name, out, run.Input(rows, math::kSampledDecisionWidth, {}));
  ASSIGN_OR_RECORD(run, name, supports, run.Input(rows, math::SupportRowWidth(vocab), {}));
  run.cand().DecideSampled(x.cand.view, requests, ids, probs, out.cand.view, supports.cand.view);
  CHECK_OK_OR_RECORD(run, name, run.cand().Synchronize());
  ASSIGN_OR_RECORD(run, name, got, Read(run.cand(), out.cand.view));
  ASSIGN_OR_RECORD(run, name, got_supports, Read(run.cand(), supports.cand.view));
  // Probabilities to 1e-5 absolute; tokens, logits and supports' ids exactly.
  CheckResult result{name, 0, 1e-5, true, ""};
  int64_t support_entries = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const absl::Span<const float> row(values.data() + r * vocab, vocab);
    std::vector<int32_t> want_ids;
    std::vector<float> want_probs;
    const SampledDecision want = DecideSampledRow(row, requests[r], ids, probs, &want_ids, &want_probs);
    const SampledDecision have = SampledDecision::FromRow(got.data() + r * math::kSampledDecisionWidth);
    double error = std::abs(static_cast<double>(have.target_prob) - want.target_prob);
    bool same_support = have.support_size == static_cast<int64_t>(want_ids.size());
    const float* support_row = got_supports.data() + r * math::SupportRowWidth(vocab);
    for (int64_t j = 0; same_support && j < have.support_size; ++j) {
      same_support = support_row[j] == static_cast<float>(want_ids[j]);
      error = std::max(error, std::abs(static_cast<double>(support_row[vocab + j]) - want_probs[j]));
    }
    support_entries += have.support_size;
    result.relative_error = std::max(result.relative_error, std::isnan(error) ? INFINITY : error);
    if (have.replacement != want.replacement || have.replacement_logit != want.replacement_logit ||
        !same_support || !(error <= result.tolerance)) {
      result.passed = false;
      absl::StrAppend(&result.detail, "row ", r, ": p ", have.target_prob, " vs ", want.target_prob,
                      ", token ", have.replacement, " vs ", want.replacement, ", support ",
                      have.support_size, " vs ", want_ids.size(), same_support ? "" : " (differs)", "; ");
    }
  }
  if (result.passed) {
    result.detail = absl::StrCat(rows, " rows: equal tokens; ", support_entries, " support entries equal");
  }
  results->push_back(result);
}

// Attention over ragged batches: two calls (prefill, then decode + verification + a continued
// prefill), grouped-query heads, contexts long enough for several flash-decoding chunks, then a
// forked cache continuing on its own.
// With `rope`, through RotaryAttention (rows at positions start + i), which may rotate inside the
// attention kernel: the second step then also reads keys the first stored rotated.
void CheckAttention(OpRunner& run, std::mt19937& rng, int64_t num_heads, int64_t num_kv_heads,
                    int64_t head_dim, const RopeParams* rope = nullptr) {
  const std::string base =
      absl::StrFormat("attention heads=%d kv=%d d=%d%s", num_heads, num_kv_heads, head_dim,
                      rope == nullptr ? "" : rope->interleaved ? " rope interleaved" : " rope");
  // Both backends' q and k are overwritten (or not) by rotation: inputs are written fresh per call.
  auto attend = [&](Backend& backend, const OpRunner::Pair& q, const OpRunner::Pair& k,
                    const OpRunner::Pair& v, const OpRunner::Pair& out, bool reference,
                    absl::Span<const AttentionSequence> seqs, int64_t layer) {
    auto view = [reference](const OpRunner::Pair& p) { return reference ? p.ref.view : p.cand.view; };
    if (rope == nullptr) {
      backend.Attention(view(q), view(k), view(v), layer, seqs, num_heads, num_kv_heads, head_dim,
                        view(out));
      return;
    }
    std::vector<int32_t> positions;
    for (const AttentionSequence& s : seqs) {
      for (int64_t i = 0; i < s.num_tokens; ++i) positions.push_back(static_cast<int32_t>(s.start_pos + i));
    }
    backend.RotaryAttention(view(q), view(k), view(v), layer, seqs, num_heads, num_kv_heads,
                            head_dim, positions, *rope, view(out));
  };
  const KvShape shape{2, num_kv_heads, head_dim};
  const int64_t layer = 1;
  std::unique_ptr<KvStorage> ref_kv[3], cand_kv[3];
  for (int s = 0; s < 3; ++s) {
    auto r = run.ref().AllocateKv(shape, 2400);
    auto c = run.cand().AllocateKv(shape, 2400);
    if (!r.ok()) return run.Fail(base, r.status());
    if (!c.ok()) return run.Fail(base, c.status());
    ref_kv[s] = std::move(*r);
    cand_kv[s] = std::move(*c);
  }
  struct Step {
    std::vector<int64_t> tokens, starts;
  };
  // Step 1: prefill 64, 700 and 2100 tokens. Step 2: decode 1, verify 17, continue 33. Step 3:
  // chunked prefill of 100, 65 and 129 more (tiles of prefill rows that start mid key tile). Step
  // 4: prompts beside a decode row. Steps 1 and 3 have 64+ rows in every sequence (what
  // tensor-core prefill takes), step 4 mixes both kinds.
  const std::vector<Step> steps = {{{64, 700, 2100}, {0, 0, 0}},
                                   {{1, 17, 33}, {64, 700, 2100}},
                                   {{100, 65, 129}, {65, 717, 2133}},
                                   {{70, 1, 100}, {165, 782, 2262}}};
  const char* step_names[] = {" prefill", " decode+verify+continue", " chunked prefill",
                              " prompts beside decode"};
  for (size_t step = 0; step < steps.size(); ++step) {
    const std::string name = absl::StrCat(base, step_names[step]);
    int64_t rows = 0;
    for (int64_t t : steps[step].tokens) rows += t;
    ASSIGN_OR_RECORD(run, name, q, run.Input(rows, num_heads * head_dim, Random(rng, rows * num_heads * head_dim)));
    ASSIGN_OR_RECORD(run, name, k, run.Input(rows, num_kv_heads * head_dim, Random(rng, rows * num_kv_heads * head_dim)));
    ASSIGN_OR_RECORD(run, name, v, run.Input(rows, num_kv_heads * head_dim, Random(rng, rows * num_kv_heads * head_dim)));
    ASSIGN_OR_RECORD(run, name, out, run.Input(rows, num_heads * head_dim, {}));
    std::vector<AttentionSequence> ref_seqs, cand_seqs;
    int64_t row = 0;
    for (int s = 0; s < 3; ++s) {
      ref_seqs.push_back({ref_kv[s].get(), row, steps[step].tokens[s], steps[step].starts[s]});
      cand_seqs.push_back({cand_kv[s].get(), row, steps[step].tokens[s], steps[step].starts[s]});
      row += steps[step].tokens[s];
    }
    attend(run.ref(), q, k, v, out, true, ref_seqs, layer);
    attend(run.cand(), q, k, v, out, false, cand_seqs, layer);
    run.Finish(name, out);
  }
  // Fork sequence 1 (783 positions) after 500 positions and continue the fork with 5 new tokens.
  const std::string name = base + " forked cache";
  auto rf = run.ref().AllocateKv(shape, 600);
  auto cf = run.cand().AllocateKv(shape, 600);
  if (!rf.ok()) return run.Fail(name, rf.status());
  if (!cf.ok()) return run.Fail(name, cf.status());
  run.ref().CopyKv(*ref_kv[1], **rf, 500);
  run.cand().CopyKv(*cand_kv[1], **cf, 500);
  const int64_t rows = 5;
  ASSIGN_OR_RECORD(run, name, q, run.Input(rows, num_heads * head_dim, Random(rng, rows * num_heads * head_dim)));
  ASSIGN_OR_RECORD(run, name, k, run.Input(rows, num_kv_heads * head_dim, Random(rng, rows * num_kv_heads * head_dim)));
  ASSIGN_OR_RECORD(run, name, v, run.Input(rows, num_kv_heads * head_dim, Random(rng, rows * num_kv_heads * head_dim)));
  ASSIGN_OR_RECORD(run, name, out, run.Input(rows, num_heads * head_dim, {}));
  const AttentionSequence ref_seq{rf->get(), 0, rows, 500};
  const AttentionSequence cand_seq{cf->get(), 0, rows, 500};
  attend(run.ref(), q, k, v, out, true, {&ref_seq, 1}, layer);
  attend(run.cand(), q, k, v, out, false, {&cand_seq, 1}, layer);
  run.Finish(name, out);
}

// Attention over ragged prefill / decode / verification / chunked-prefill batches: GQA with head
// dims 64 and 128, no GQA, and rotation inside the kernel (llama3-like frequencies, both layouts).
void CheckAttentionCases(OpRunner& run, std::mt19937& rng) {
  CheckAttention(run, rng, 8, 2, 64);
  CheckAttention(run, rng, 4, 4, 128);
  for (bool interleaved : {false, true}) {
    RopeParams rope;
    rope.interleaved = interleaved;
    for (int64_t i = 0; i < 64; ++i) rope.inv_freq.push_back(std::pow(500000.0f, -2.0f * i / 128.0f));
    CheckAttention(run, rng, 8, 2, 128, &rope);
  }
}

int32_t ArgMax(const float* v, int64_t n) {
  return static_cast<int32_t>(std::max_element(v, v + n) - v);
}

// Gap between the largest logit and the logit of `other`.
float Margin(const float* v, int64_t n, int32_t other) { return v[ArgMax(v, n)] - v[other]; }

// hidden[r, :] . probe for each of `rows` rows, in double precision (the judge head's dot product,
// as a reference for the backend's probe output).
std::vector<float> ProbeDots(const std::vector<float>& hidden, const std::vector<float>& probe,
                             int64_t rows, int64_t hidden_size) {
  std::vector<float> dots;
  for (int64_t r = 0; r < rows; ++r) {
    double dot = 0;
    for (int64_t c = 0; c < hidden_size; ++c) {
      dot += static_cast<double>(hidden[r * hidden_size + c]) * probe[c];
    }
    dots.push_back(static_cast<float>(dot));
  }
  return dots;
}

// Tokens whose logits the verification checks ask summaries for: the step's ids, with every fourth
// row asking for none (-1), as rows without a draft token do.
std::vector<int32_t> SummaryTokens(const std::vector<int32_t>& ids) {
  std::vector<int32_t> tokens;
  for (size_t i = 0; i < ids.size(); ++i) tokens.push_back(i % 4 == 3 ? -1 : ids[i]);
  return tokens;
}

// Token ids of a step: deterministic, in range.
std::vector<int32_t> StepIds(int64_t n, int64_t offset, int64_t vocab) {
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>((offset + i) * 7 % vocab);
  return ids;
}

}  // namespace

LlamaConfig TensorParallelCheckConfig() {
  LlamaConfig c;
  c.vocab_size = 300;
  c.hidden_size = 256;
  c.intermediate_size = 512;
  c.num_layers = 3;
  c.num_heads = 8;
  c.num_kv_heads = 8;
  c.head_dim = 32;
  c.max_position_embeddings = 256;
  return c;
}

// Sampled decisions against the host executor on the reference's logits rows: p(token) within
// `tolerance` (absolute) and the same drawn tokens; with a tolerance above 1e-4 (16-bit weights,
// whose logits differ) one differing draw in the block is reported but allowed.
CheckResult CompareSampled(std::string name, absl::Span<const float> logits, int64_t vocab,
                           absl::Span<const math::SampledRowRequest> requests,
                           absl::Span<const SampledDecision> got, double tolerance) {
  CheckResult result{std::move(name), 0, tolerance, true, ""};
  if (got.size() != requests.size()) {
    result.passed = false;
    result.detail = absl::StrCat(got.size(), " decisions for ", requests.size(), " requests");
    return result;
  }
  int64_t differing = 0;
  for (size_t r = 0; r < requests.size(); ++r) {
    const SampledDecision want = DecideSampledRow(logits.subspan(r * vocab, vocab), requests[r], {}, {});
    const double error = std::abs(static_cast<double>(got[r].target_prob) - want.target_prob);
    result.relative_error = std::max(result.relative_error, std::isnan(error) ? INFINITY : error);
    differing += got[r].replacement != want.replacement;
  }
  const int64_t allowed = tolerance > 1e-4 ? 1 : 0;
  result.passed = result.relative_error <= tolerance && differing <= allowed;
  result.detail = absl::StrCat(requests.size() - differing, "/", requests.size(), " equal draws");
  return result;
}

std::vector<CheckResult> CheckTensorParallel(Backend& reference,
                                             TensorParallelGroup::BackendFactory backends,
                                             TensorParallelGroup::CommunicatorFactory communicators,
                                             int world_size, const LlamaConfig& config,
                                             const WeightSource& weights,
                                             const CheckOptions& options) {
  const std::string base = absl::StrCat("tensor parallel, ", world_size, " rank(s)");
  auto unsplit = ModelSlice::Create(config, weights, {}, &reference);
  if (!unsplit.ok()) return {Failure(base, unsplit.status())};
  auto group = TensorParallelGroup::Create(config, weights, {}, world_size, std::move(backends),
                                           std::move(communicators));
  if (!group.ok()) return {Failure(base, group.status())};
  auto cache = (*unsplit)->NewKvCache(128);
  auto group_cache = (*group)->NewKvCache(128);
  if (!cache.ok()) return {Failure(base, cache.status())};
  if (!group_cache.ok()) return {Failure(base, group_cache.status())};
  std::vector<CheckResult> results;
  const std::vector<std::pair<const char*, int64_t>> steps = {
      {"prefill", 12}, {"decode", 1}, {"decode", 1}, {"decode", 1}, {"verify block", 9}};
  std::mt19937 rng(static_cast<uint32_t>(options.seed));
  const std::vector<float> probe = Random(rng, config.hidden_size, 0.1f);
  if (auto s = (*group)->SetHiddenProbe(probe); !s.ok()) return {Failure(base, s)};
  for (const auto& [name, tokens] : steps) {
    const std::string label = absl::StrCat(base, " ", name);
    const std::vector<int32_t> ids = StepIds(tokens, (*cache)->length(), config.vocab_size);
    ForwardBatch batch;
    batch.sequences = {{cache->get(), tokens}};
    batch.token_ids = ids;
    TensorParallelBatch group_batch;
    group_batch.sequences = {{group_cache->get(), tokens}};
    group_batch.token_ids = ids;
    // The verification block asks the group only for what the last shard uses: summaries merged
    // across the ranks' vocabulary shares, and the probe.
    const bool lean = std::string(name) == "verify block";
    std::vector<int32_t> summary_tokens;
    std::vector<math::SampledRowRequest> sampled;
    if (lean) {
      summary_tokens = SummaryTokens(ids);
      group_batch.contents.logits = false;
      group_batch.contents.hidden = false;
      group_batch.contents.summaries = true;
      group_batch.contents.summary_tokens = summary_tokens;
      group_batch.contents.probe = true;
      // The sampled rule too (the ranks assemble whole rows for it): top-p, and top-k on odd rows.
      std::uniform_real_distribution<double> uniform(0.0, 1.0);
      for (size_t i = 0; i < summary_tokens.size(); ++i) {
        math::SampledRowRequest r;
        r.temperature = 0.9f;
        r.top_p = 0.9f;
        r.top_k = i % 2 == 1 ? 40 : 0;
        r.token = summary_tokens[i];
        r.sample_uniform = uniform(rng);
        sampled.push_back(r);
      }
      group_batch.contents.sampled_requests = sampled;
    }
    ForwardResult expected, got;
    if (auto s = (*unsplit)->Forward(batch, &expected); !s.ok()) return {Failure(label, s)};
    if (auto s = (*group)->Forward(group_batch, &got); !s.ok()) {
      results.push_back(Failure(label, s));
      return results;
    }
    if (!lean) {
      results.push_back(Compare(label + " logits", expected.logits, got.logits, options.tolerance));
      continue;
    }
    results.push_back(CompareSummaries(label + " merged logits summaries", expected.logits,
                                       config.vocab_size, got.summaries, summary_tokens,
                                       std::max(1e-4, options.tolerance), options.greedy_tie_margin));
    results.push_back(Compare(label + " hidden probe",
                              ProbeDots(expected.hidden, probe, tokens, config.hidden_size),
                              got.probe, std::max(1e-4, options.tolerance)));
    results.push_back(CompareSampled(label + " sampled decisions", expected.logits, config.vocab_size,
                                     sampled, got.sampled, std::max(1e-4, options.tolerance)));
  }
  return results;
}

std::vector<CheckResult> CheckBackendOps(Backend& reference, Backend& candidate,
                                         const CheckOptions& options) {
  std::vector<CheckResult> results;
  std::mt19937 rng(static_cast<uint32_t>(options.seed));
  OpRunner run(reference, candidate, options.tolerance, &results);
  for (DType dtype : {DType::kBF16, DType::kF16, DType::kF32, DType::kQ8_0, DType::kF8E4M3Block}) {
    CheckMatMul(run, rng, dtype, 1, 2048, 1024, false);   // decode
    CheckMatMul(run, rng, dtype, 17, 1000, 512, true);    // verification block, accumulate
    CheckMatMul(run, rng, dtype, 64, 384, 256, false);
    CheckMatMul(run, rng, dtype, 130, 333, 128, true);    // prefill, odd n
  }
  // FP8 rows whose last 128-value block is partial, on the skinny and the general path.
  CheckMatMul(run, rng, DType::kF8E4M3Block, 3, 200, 320, false);
  CheckMatMul(run, rng, DType::kF8E4M3Block, 40, 96, 200, true);
  // FP8 verification shapes for the tensor-core kernel: token tiles part-filled (9, 33 = 32 + 1
  // in two passes), weight rows not a multiple of 16, k split over all of a block's warps.
  CheckMatMul(run, rng, DType::kF8E4M3Block, 9, 40, 1024, true);
  CheckMatMul(run, rng, DType::kF8E4M3Block, 33, 300, 384, false);
  CheckMatMul(run, rng, DType::kF8E4M3Block, 17, 256, 4096, true);
  CheckEmbed(run, rng, DType::kBF16);
  CheckEmbed(run, rng, DType::kF8E4M3Block);
  CheckElementwise(run, rng);
  CheckLogitSummaries(run, rng, &results);
  // Only where the candidate uses its DecideSampled (a CUDA backend without device_sampling
  // copies the rows and decides on the host: the op is not part of that configuration).
  if (run.cand().DecidesSampledRows()) CheckSampledDecisions(run, rng, &results);
  CheckAttentionCases(run, rng);
  return results;
}

std::vector<CheckResult> CheckAttentionOps(Backend& reference, Backend& candidate,
                                           const CheckOptions& options) {
  std::vector<CheckResult> results;
  std::mt19937 rng(static_cast<uint32_t>(options.seed));
  OpRunner run(reference, candidate, options.tolerance, &results);
  CheckAttentionCases(run, rng);
  return results;
}

std::vector<CheckResult> CheckModel(Backend& reference, Backend& candidate,
                                    const LlamaConfig& config, const WeightSource& weights,
                                    const CheckOptions& options) {
  std::vector<CheckResult> results;
  const std::string base = absl::StrCat("model ", config.hidden_size, "x", config.num_layers);
  auto ref_model = ModelSlice::Create(config, weights, {}, &reference);
  auto cand_model = ModelSlice::Create(config, weights, {}, &candidate);
  if (!ref_model.ok()) return {Failure(base, ref_model.status())};
  if (!cand_model.ok()) return {Failure(base, cand_model.status())};
  std::mt19937 rng(static_cast<uint32_t>(options.seed));
  const std::vector<float> probe = Random(rng, config.hidden_size, 0.1f);
  if (auto s = (*cand_model)->SetHiddenProbe(probe); !s.ok()) return {Failure(base, s)};
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(config.vocab_size - 1));
  // Sized to fit small fixtures' context (64 positions and up).
  const int64_t capacity = std::min<int64_t>(256, config.max_position_embeddings);
  std::vector<int64_t> prompt_lengths = {5, std::min<int64_t>(33, capacity / 4),
                                         std::min<int64_t>(70, capacity / 2)};
  if (options.prefill_min_tokens > 0) {
    const int64_t p = std::min(options.prefill_min_tokens, capacity / 2);
    prompt_lengths = {p, std::min(p + 6, capacity / 2), std::min(p + 37, capacity / 2)};
  }
  std::vector<std::unique_ptr<KvCache>> ref_caches, cand_caches;
  for (size_t s = 0; s < prompt_lengths.size(); ++s) {
    auto r = (*ref_model)->NewKvCache(capacity);
    auto c = (*cand_model)->NewKvCache(capacity);
    if (!r.ok()) return {Failure(base, r.status())};
    if (!c.ok()) return {Failure(base, c.status())};
    ref_caches.push_back(std::move(*r));
    cand_caches.push_back(std::move(*c));
  }
  // Steps: prefill all; decode 1 each; verify 9 / decode 1 / decode 1; roll the first back by 5 and
  // continue it with 3.
  struct Step {
    std::string name;
    std::vector<int64_t> tokens;
    ForwardBatch::Outputs outputs;
    int64_t truncate_first = 0;
  };
  const std::vector<Step> steps = {
      {"prefill", prompt_lengths, ForwardBatch::Outputs::kAll},
      {"decode", {1, 1, 1}, ForwardBatch::Outputs::kLastOfEachSequence},
      {"verify block", {9, 1, 1}, ForwardBatch::Outputs::kAll},
      {"after rollback", {3, 1, 1}, ForwardBatch::Outputs::kAll, 5},
  };
  for (const Step& step : steps) {
    const std::string name = absl::StrCat(base, " ", step.name);
    if (step.truncate_first > 0) {
      const int64_t n = ref_caches[0]->length() - step.truncate_first;
      if (auto s = ref_caches[0]->Truncate(n); !s.ok()) return {Failure(name, s)};
      if (auto s = cand_caches[0]->Truncate(n); !s.ok()) return {Failure(name, s)};
    }
    ForwardBatch ref_batch, cand_batch;
    std::vector<int32_t> ids;
    for (size_t s = 0; s < step.tokens.size(); ++s) {
      ref_batch.sequences.push_back({ref_caches[s].get(), step.tokens[s]});
      cand_batch.sequences.push_back({cand_caches[s].get(), step.tokens[s]});
      for (int64_t i = 0; i < step.tokens[s]; ++i) ids.push_back(token(rng));
    }
    ref_batch.token_ids = cand_batch.token_ids = ids;
    ref_batch.outputs = cand_batch.outputs = step.outputs;
    // The verification block also asks the candidate for logits summaries and a hidden-state probe
    // (what the last shard uses instead of the rows), checked against its own rows below.
    const bool verify_outputs = step.name == "verify block";
    std::vector<int32_t> summary_tokens;
    if (verify_outputs) {
      summary_tokens = SummaryTokens(ids);
      cand_batch.contents.summaries = true;
      cand_batch.contents.summary_tokens = summary_tokens;
      cand_batch.contents.probe = true;
    }
    ForwardResult ref_out, cand_out;
    if (auto s = (*ref_model)->Forward(ref_batch, &ref_out); !s.ok()) return {Failure(name, s)};
    if (auto s = (*cand_model)->Forward(cand_batch, &cand_out); !s.ok()) {
      results.push_back(Failure(name, s));
      return results;
    }
    CheckResult logits = Compare(name + " logits", ref_out.logits, cand_out.logits, options.tolerance);
    int64_t agree = 0;
    const int64_t rows = static_cast<int64_t>(ref_out.output_rows.size());
    for (int64_t r = 0; r < rows && logits.relative_error < 1e30; ++r) {
      agree += ArgMax(&ref_out.logits[r * config.vocab_size], config.vocab_size) ==
               ArgMax(&cand_out.logits[r * config.vocab_size], config.vocab_size);
    }
    if (logits.detail.empty()) logits.detail = absl::StrCat("argmax agrees on ", agree, "/", rows, " rows");
    results.push_back(logits);
    results.push_back(Compare(name + " hidden", ref_out.hidden, cand_out.hidden, options.tolerance));
    if (verify_outputs) {
      results.push_back(CompareSummaries(name + " logits summaries (vs its own logits)",
                                         cand_out.logits, config.vocab_size, cand_out.summaries,
                                         summary_tokens, 1e-4));
      results.push_back(Compare(name + " hidden probe (vs its own hidden states)",
                                ProbeDots(cand_out.hidden, probe, rows, config.hidden_size),
                                cand_out.probe, 1e-4));
    }
  }

  // Greedy generation from a fresh prompt, one token per step.
  const std::string name = base + " greedy generation";
  auto rc = (*ref_model)->NewKvCache(capacity);
  auto cc = (*cand_model)->NewKvCache(capacity);
  if (!rc.ok() || !cc.ok()) return results;
  std::vector<int32_t> next = {1, 42 % static_cast<int32_t>(config.vocab_size), 7, 3};
  CheckResult greedy;
  greedy.name = name;
  greedy.passed = true;
  int64_t equal = 0;
  const int64_t greedy_tokens = std::min<int64_t>(options.greedy_tokens, capacity - 4);
  for (int64_t step = 0; step < greedy_tokens; ++step) {
    ForwardBatch rb, cb;
    rb.sequences = {{rc->get(), static_cast<int64_t>(next.size())}};
    cb.sequences = {{cc->get(), static_cast<int64_t>(next.size())}};
    rb.token_ids = cb.token_ids = next;
    rb.outputs = cb.outputs = ForwardBatch::Outputs::kLastOfEachSequence;
    ForwardResult ro, co;
    if (auto s = (*ref_model)->Forward(rb, &ro); !s.ok()) return results;
    if (auto s = (*cand_model)->Forward(cb, &co); !s.ok()) {
      results.push_back(Failure(name, s));
      return results;
    }
    const int32_t ref_token = ArgMax(ro.logits.data(), config.vocab_size);
    const int32_t cand_token = ArgMax(co.logits.data(), config.vocab_size);
    if (ref_token != cand_token) {
      const float margin = Margin(ro.logits.data(), config.vocab_size, cand_token);
      greedy.passed = margin < options.greedy_tie_margin;
      greedy.detail = absl::StrFormat("token %d differs (%d vs %d) at a reference margin of %.4f%s",
                                      step, cand_token, ref_token, margin,
                                      greedy.passed ? " (a near-tie)" : "");
      break;
    }
    ++equal;
    next = {ref_token};
  }
  if (greedy.detail.empty()) greedy.detail = absl::StrCat(equal, " tokens identical");
  greedy.tolerance = options.greedy_tie_margin;
  results.push_back(greedy);
  return results;
}

}  // namespace verdict::engine
