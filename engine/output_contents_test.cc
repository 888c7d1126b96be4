// SPDX-License-Identifier: Apache-2.0
// What the last slice hands back: selected output rows, logits summaries computed by the backend
// (checked against a double-precision computation from the full logits) and the hidden-state probe
// (checked against the dot product of the returned hidden states), plus the shared summary math
// of engine/kernels/op_math.h that the CUDA kernel runs too.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "common/testing/status_matchers.h"
#include "engine/backend.h"
#include "engine/kernels/op_math.h"
#include "engine/kernels/sampling_math.h"
#include "engine/model.h"
#include "engine/model_loader.h"
#include "engine/sampler.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict::engine {
namespace {

using ::testing::HasSubstr;
using ::verdict::testing::StatusIs;

const std::string kFixtures = std::string(VERDICT_SOURCE_DIR) + "/tests/fixtures/models/";
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// The summary of a row computed in double precision, independently of op_math.h.
struct Expected {
  int32_t argmax;
  double max, lse, entropy;
};
Expected Reference(absl::Span<const float> row) {
  Expected e{0, -kInf, 0, 0};
  bool found = false;
  for (size_t i = 0; i < row.size(); ++i) {
    if (!std::isnan(row[i]) && (!found || row[i] > e.max)) {
      e.max = row[i];
      e.argmax = static_cast<int32_t>(i);
      found = true;
    }
  }
  double sum = 0, weighted = 0;
  for (float v : row) {
    if (v == -kInf) continue;
    const double z = v - e.max;
    sum += std::exp(z);
    weighted += std::exp(z) * z;
  }
  e.lse = e.max + std::log(sum);
  e.entropy = std::log(sum) - weighted / sum;
  return e;
}

std::vector<float> Summarize(Backend& backend, const std::vector<float>& logits, int64_t cols,
                             const std::vector<int32_t>& tokens) {
  const int64_t rows = static_cast<int64_t>(logits.size()) / cols;
  auto in = backend.Allocate(logits.size() * sizeof(float)).value();
  auto out = backend.Allocate(rows * kLogitSummaryWidth * sizeof(float)).value();
  TensorView x{static_cast<float*>(in->data()), rows, cols, cols};
  TensorView y{static_cast<float*>(out->data()), rows, kLogitSummaryWidth, kLogitSummaryWidth};
  backend.CopyToDevice(logits.data(), x);
  backend.SummarizeLogits(x, tokens, y);
  std::vector<float> host(rows * kLogitSummaryWidth);
  backend.CopyToHost(y, host.data());
  EXPECT_OK(backend.Synchronize());
  return host;
}

TEST(LogitSummaryTest, CpuBackendMatchesDoublePrecision) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  // Wider than the CPU executor's 16384-column chunks, so chunk merges are exercised.
  const int64_t cols = 40000;
  const int64_t rows = 5;
  std::vector<float> logits(rows * cols);
  for (float& v : logits) v = normal(rng);
  logits[1 * cols + 30000] = logits[1 * cols + 20000] = logits[1 * cols + 17000] = 50.0f;  // tie
  for (int64_t c = 0; c < cols; c += 2) logits[2 * cols + c] = -kInf;  // masked tokens
  logits[3 * cols + cols - 1] = 200.0f;                                  // one certain token
  const std::vector<int32_t> tokens = {0, 17000, 3, static_cast<int32_t>(cols - 1), -1};
  auto backend = CreateCpuBackend({2});
  const std::vector<float> out = Summarize(*backend, logits, cols, tokens);
  for (int64_t r = 0; r < rows; ++r) {
    SCOPED_TRACE(r);
    absl::Span<const float> row = absl::MakeConstSpan(logits).subspan(r * cols, cols);
    const Expected e = Reference(row);
    const LogitSummary s = LogitSummary::FromRow(out.data() + r * kLogitSummaryWidth, tokens[r]);
    EXPECT_EQ(s.argmax, e.argmax);
    EXPECT_EQ(s.argmax, Argmax(row));
    EXPECT_EQ(s.max_logit, static_cast<float>(e.max));
    EXPECT_NEAR(s.log_sum_exp, e.lse, 1e-5 * std::max(1.0, std::fabs(e.lse)));
    EXPECT_NEAR(s.entropy, e.entropy, 1e-4);
    if (tokens[r] >= 0) {
      EXPECT_EQ(s.token_logit, row[tokens[r]]);
      EXPECT_NEAR(s.TokenLogprob(), row[tokens[r]] - e.lse, 1e-4);
    } else {
      EXPECT_TRUE(std::isnan(s.token_logit));
    }
  }
  EXPECT_EQ(LogitSummary::FromRow(out.data() + kLogitSummaryWidth, 0).argmax, 17000);
  EXPECT_NEAR(LogitSummary::FromRow(out.data() + 3 * kLogitSummaryWidth, 0).entropy, 0.0, 1e-6);
}

TEST(LogitSummaryTest, NanAndMaskedRows) {
  const int64_t cols = 6;
  const std::vector<float> logits = {
      kNaN, 1.0f, 3.0f, 3.0f, kNaN, 0.0f,  // NaN never wins; the sums become NaN
      -kInf, -kInf, 2.0f, -kInf, -kInf, -kInf,  // a single possible token
      kNaN, kNaN, kNaN, kNaN, kNaN, kNaN,  // nothing valid: argmax 0, like Argmax
  };
  auto backend = CreateCpuBackend({1});
  const std::vector<float> out = Summarize(*backend, logits, cols, {});
  const LogitSummary a = LogitSummary::FromRow(out.data(), -1);
  EXPECT_EQ(a.argmax, 2);
  EXPECT_TRUE(std::isnan(a.log_sum_exp));
  const LogitSummary b = LogitSummary::FromRow(out.data() + kLogitSummaryWidth, -1);
  EXPECT_EQ(b.argmax, 2);
  EXPECT_FLOAT_EQ(b.log_sum_exp, 2.0f);
  EXPECT_FLOAT_EQ(b.entropy, 0.0f);
  const LogitSummary c = LogitSummary::FromRow(out.data() + 2 * kLogitSummaryWidth, -1);
  EXPECT_EQ(c.argmax, 0);
  for (int64_t r = 0; r < 3; ++r) {
    EXPECT_EQ(LogitSummary::FromRow(out.data() + r * kLogitSummaryWidth, -1).argmax,
              Argmax(absl::MakeConstSpan(logits).subspan(r * cols, cols)));
  }
}

TEST(LogitSummaryTest, ExpNonPositiveMatchesExp) {
  double worst = 0;
  for (float z = 0.0f; z > -87.0f; z -= 0.0137f) {
    const double want = std::exp(static_cast<double>(z));
    worst = std::max(worst, std::fabs(math::ExpNonPositive(z) - want) / want);
  }
  EXPECT_LT(worst, 4e-7);
  EXPECT_EQ(math::ExpNonPositive(0.0f), 1.0f);
  EXPECT_EQ(math::ExpNonPositive(-88.0f), 0.0f);
  EXPECT_EQ(math::ExpNonPositive(-kInf), 0.0f);
  EXPECT_TRUE(std::isnan(math::ExpNonPositive(kNaN)));
}

// The CUDA kernel accumulates strided shares per thread and merges them in a tree; any split and
// merge order must give the same argmax and the same sums up to rounding.
TEST(LogitSummaryTest, MergingPartialsInAnyOrderAgrees) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 5.0f);
  std::vector<float> row(5000);
  for (float& v : row) v = normal(rng);
  row[4321] = row[77] = 30.0f;
  math::LogitStats sequential = math::EmptyLogitStats();
  for (size_t i = 0; i < row.size(); ++i) math::AddLogit(sequential, row[i], static_cast<int32_t>(i));
  for (int trial = 0; trial < 20; ++trial) {
    const int lanes = 1 + trial * 13;
    std::vector<math::LogitStats> partial(lanes, math::EmptyLogitStats());
    for (size_t i = 0; i < row.size(); ++i) {
      math::AddLogit(partial[i % lanes], row[i], static_cast<int32_t>(i));
    }
    std::shuffle(partial.begin(), partial.end(), rng);
    // Pairwise tree merge, as the shuffles do.
    while (partial.size() > 1) {
      std::vector<math::LogitStats> next;
      for (size_t i = 0; i + 1 < partial.size(); i += 2) {
        math::LogitStats merged = partial[i];
        math::MergeLogitStats(merged, partial[i + 1]);
        next.push_back(merged);
      }
      if (partial.size() % 2 == 1) next.push_back(partial.back());
      partial = std::move(next);
    }
    SCOPED_TRACE(lanes);
    EXPECT_EQ(partial[0].best_index, 77);
    EXPECT_EQ(partial[0].best_index, sequential.best_index);
    EXPECT_NEAR(math::LogSumExp(partial[0]), math::LogSumExp(sequential), 1e-5);
    EXPECT_NEAR(math::Entropy(partial[0]), math::Entropy(sequential), 1e-4);
  }
}

class OutputContentsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(model_, LoadModel(kFixtures + "llama3_gqa"));
    backend_ = CreateCpuBackend({2});
    ASSERT_OK_AND_ASSIGN(slice_, ModelSlice::Create(model_.config, *model_.weights, {}, backend_.get()));
    vocab_ = model_.config.vocab_size;
    hidden_ = model_.config.hidden_size;
  }

  // Two sequences (7 and 5 tokens) through fresh caches with `batch`'s output settings.
  absl::Status Run(ForwardBatch batch, ForwardResult* result,
                   std::vector<std::unique_ptr<KvCache>>* caches = nullptr) {
    std::vector<std::unique_ptr<KvCache>> local;
    if (caches == nullptr) caches = &local;
    caches->clear();
    for (int i = 0; i < 2; ++i) caches->push_back(slice_->NewKvCache(32).value());
    batch.sequences = {{(*caches)[0].get(), 7}, {(*caches)[1].get(), 5}};
    batch.token_ids = ids_;
    return slice_->Forward(batch, result);
  }

  LoadedModel model_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<ModelSlice> slice_;
  int64_t vocab_ = 0, hidden_ = 0;
  const std::vector<int32_t> ids_ = {1, 5, 9, 2, 44, 17, 3, 8, 8, 61, 0, 12};
};

TEST_F(OutputContentsTest, SelectedRowsAreThoseRowsOfTheFullOutput) {
  ForwardResult all, some;
  ASSERT_OK(Run(ForwardBatch{}, &all));
  const std::vector<int32_t> rows = {0, 6, 7, 11};
  ForwardBatch batch;
  batch.outputs = ForwardBatch::Outputs::kSelectedRows;
  batch.selected_rows = rows;
  ASSERT_OK(Run(batch, &some));
  ASSERT_EQ(some.output_rows, rows);
  ASSERT_EQ(some.logits.size(), rows.size() * vocab_);
  for (size_t i = 0; i < rows.size(); ++i) {
    // The LM head runs over 4 rows instead of 12: the CPU product may block them differently.
    for (int64_t v = 0; v < vocab_; ++v) {
      ASSERT_NEAR(some.logits[i * vocab_ + v], all.logits[rows[i] * vocab_ + v], 1e-5) << i << " " << v;
    }
    for (int64_t h = 0; h < hidden_; ++h) {
      ASSERT_EQ(some.hidden[i * hidden_ + h], all.hidden[rows[i] * hidden_ + h]);
    }
  }
}

TEST_F(OutputContentsTest, NoSelectedRowsOnlyFillsTheCaches) {
  ForwardBatch batch;
  batch.outputs = ForwardBatch::Outputs::kSelectedRows;
  ForwardResult result;
  std::vector<std::unique_ptr<KvCache>> caches;
  ASSERT_OK(Run(batch, &result, &caches));
  EXPECT_TRUE(result.output_rows.empty());
  EXPECT_TRUE(result.logits.empty());
  EXPECT_EQ(caches[0]->length(), 7);
  EXPECT_EQ(caches[1]->length(), 5);
}

TEST_F(OutputContentsTest, RejectsBadSelectionsAndLeavesCachesAlone) {
  for (const std::vector<int32_t>& rows : std::vector<std::vector<int32_t>>{
           {3, 2}, {1, 1}, {-1}, {12}}) {
    ForwardBatch batch;
    batch.outputs = ForwardBatch::Outputs::kSelectedRows;
    batch.selected_rows = rows;
    ForwardResult result;
    std::vector<std::unique_ptr<KvCache>> caches;
    EXPECT_THAT(Run(batch, &result, &caches),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("strictly ascending")));
    EXPECT_EQ(caches[0]->length(), 0);
  }
}

TEST_F(OutputContentsTest, SummariesAndProbeMatchTheFullRows) {
  ForwardResult full;
  ASSERT_OK(Run(ForwardBatch{}, &full));
  std::vector<float> probe(hidden_);
  for (int64_t h = 0; h < hidden_; ++h) probe[h] = std::sin(0.37f * h) * 0.2f;
  ASSERT_OK(slice_->SetHiddenProbe(probe));
  EXPECT_TRUE(slice_->HiddenProbeIs(probe));

  std::vector<int32_t> tokens(ids_.size(), -1);
  for (size_t i = 0; i + 1 < ids_.size(); ++i) tokens[i] = ids_[i + 1];  // "the next token"
  ForwardBatch batch;
  batch.contents.logits = false;
  batch.contents.hidden = false;
  batch.contents.summaries = true;
  batch.contents.summary_tokens = tokens;
  batch.contents.probe = true;
  ForwardResult lean;
  ASSERT_OK(Run(batch, &lean));
  EXPECT_TRUE(lean.logits.empty());
  EXPECT_TRUE(lean.hidden.empty());
  ASSERT_EQ(lean.summaries.size(), ids_.size());
  ASSERT_EQ(lean.probe.size(), ids_.size());
  for (size_t r = 0; r < ids_.size(); ++r) {
    SCOPED_TRACE(r);
    absl::Span<const float> row = absl::MakeConstSpan(full.logits).subspan(r * vocab_, vocab_);
    const Expected e = Reference(row);
    const LogitSummary& s = lean.summaries[r];
    EXPECT_EQ(s.argmax, e.argmax);
    EXPECT_EQ(s.token, tokens[r]);
    EXPECT_NEAR(s.log_sum_exp, e.lse, 1e-5);
    EXPECT_NEAR(s.entropy, e.entropy, 1e-5);
    if (tokens[r] >= 0) {
      EXPECT_NEAR(s.TokenLogprob(), row[tokens[r]] - e.lse, 1e-5);
    }
    double dot = 0;
    for (int64_t h = 0; h < hidden_; ++h) dot += static_cast<double>(full.hidden[r * hidden_ + h]) * probe[h];
    EXPECT_NEAR(lean.probe[r], dot, 1e-5 * std::max(1.0, std::fabs(dot)));
  }
}

// The sampled rule decided by the backend (the CPU host executor here, a device kernel on a GPU)
// and decided by the model from copied logits rows (CpuBackendOptions::sampled_rows_on_host, the
// path a CUDA backend takes until its kernel is verified) agree exactly, supports included.
TEST_F(OutputContentsTest, SampledRuleFromCopiedRowsEqualsTheBackendsRule) {
  auto host_backend = CreateCpuBackend({.num_threads = 2, .sampled_rows_on_host = true});
  ASSERT_FALSE(host_backend->DecidesSampledRows());
  ASSERT_TRUE(backend_->DecidesSampledRows());
  ASSERT_OK_AND_ASSIGN(auto host_slice,
                       ModelSlice::Create(model_.config, *model_.weights, {}, host_backend.get()));
  // One request per row: plain temperature, top-k, top-p, greedy, bonus rows, with and without a
  // proposal distribution for the token.
  const std::vector<int32_t> proposal_ids = {3, 9, 40, 41, 100};
  const std::vector<float> proposal_probs = {0.1f, 0.5f, 0.2f, 0.15f, 0.05f};
  std::vector<math::SampledRowRequest> requests(ids_.size());
  for (size_t r = 0; r < requests.size(); ++r) {
    math::SampledRowRequest& q = requests[r];
    q.temperature = r % 4 == 3 ? 0.0f : 0.6f + 0.1f * static_cast<float>(r % 3);
    q.top_k = r % 3 == 1 ? 20 : 0;
    q.top_p = r % 3 == 2 ? 0.9f : 1.0f;
    q.token = r % 5 == 4 ? -1 : (r % 2 == 0 ? 9 : ids_[r]);
    if (r % 2 == 0 && q.token >= 0) {
      q.proposal_begin = 0;
      q.proposal_count = static_cast<int32_t>(proposal_ids.size());
    }
    q.sample_uniform = (static_cast<double>(r) + 0.37) / static_cast<double>(requests.size());
  }
  for (bool supports : {false, true}) {
    SCOPED_TRACE(supports);
    ForwardBatch batch;
    batch.contents.logits = false;
    batch.contents.hidden = false;
    batch.contents.sampled_requests = requests;
    batch.contents.proposal_ids = proposal_ids;
    batch.contents.proposal_probs = proposal_probs;
    batch.contents.sampled_supports = supports;
    ForwardResult on_backend, on_host;
    ASSERT_OK(Run(batch, &on_backend));
    std::vector<std::unique_ptr<KvCache>> caches;
    for (int i = 0; i < 2; ++i) caches.push_back(host_slice->NewKvCache(32).value());
    batch.sequences = {{caches[0].get(), 7}, {caches[1].get(), 5}};
    batch.token_ids = ids_;
    ASSERT_OK(host_slice->Forward(batch, &on_host));
    EXPECT_TRUE(on_host.logits.empty());  // the copied rows stay the model's
    ASSERT_EQ(on_host.sampled.size(), requests.size());
    ASSERT_EQ(on_backend.sampled.size(), requests.size());
    for (size_t r = 0; r < requests.size(); ++r) {
      SCOPED_TRACE(r);
      EXPECT_EQ(on_host.sampled[r].target_prob, on_backend.sampled[r].target_prob);
      EXPECT_EQ(on_host.sampled[r].replacement, on_backend.sampled[r].replacement);
      EXPECT_EQ(on_host.sampled[r].replacement_logit, on_backend.sampled[r].replacement_logit);
      EXPECT_EQ(on_host.sampled[r].support_size, on_backend.sampled[r].support_size);
    }
    EXPECT_EQ(on_host.support_offsets, on_backend.support_offsets);
    EXPECT_EQ(on_host.support_ids, on_backend.support_ids);
    EXPECT_EQ(on_host.support_probs, on_backend.support_probs);
    if (supports) {
      EXPECT_GT(on_host.support_ids.size(), requests.size());
    }
  }
}

TEST_F(OutputContentsTest, RejectsInconsistentContents) {
  ForwardResult result;
  ForwardBatch probe_unset;
  probe_unset.contents.probe = true;
  EXPECT_THAT(Run(probe_unset, &result),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no")));

  const std::vector<int32_t> too_few = {1, 2};
  ForwardBatch wrong_count;
  wrong_count.contents.summaries = true;
  wrong_count.contents.summary_tokens = too_few;
  EXPECT_THAT(Run(wrong_count, &result),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("summary tokens")));

  std::vector<int32_t> out_of_range(ids_.size(), 0);
  out_of_range[3] = static_cast<int32_t>(vocab_);
  ForwardBatch bad_token;
  bad_token.contents.summaries = true;
  bad_token.contents.summary_tokens = out_of_range;
  EXPECT_THAT(Run(bad_token, &result),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("out of range")));
}

TEST_F(OutputContentsTest, ProbeValidation) {
  EXPECT_THAT(slice_->SetHiddenProbe(std::vector<float>(hidden_ + 1, 0.0f)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  std::vector<float> nan(hidden_, 0.0f);
  nan[2] = kNaN;
  EXPECT_THAT(slice_->SetHiddenProbe(nan), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_FALSE(slice_->has_hidden_probe());
  ASSERT_OK_AND_ASSIGN(auto first_layers,
                       ModelSlice::Create(model_.config, *model_.weights, {0, 1}, backend_.get()));
  EXPECT_THAT(first_layers->SetHiddenProbe(std::vector<float>(hidden_, 0.0f)),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

}  // namespace
}  // namespace verdict::engine
