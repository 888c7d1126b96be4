// SPDX-License-Identifier: Apache-2.0
#include "engine/communicator.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace verdict::engine {
namespace {

// The shared state of one group: every rank publishes its buffers, then all read them. Three
// barriers per collective: publish, compute, release (so nobody overwrites a buffer another rank
// still reads).
class ThreadGroup {
 public:
  explicit ThreadGroup(int size) : size_(size), inputs_(size), lengths_(size) {}
  int size() const { return size_; }

  // Blocks until all ranks reached the barrier of this round.
  void Barrier() {
    absl::MutexLock lock(&mu_);
    const int64_t generation = generation_;
    if (++arrived_ == size_) {
      arrived_ = 0;
      ++generation_;
      return;
    }
    auto next = [this, generation]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return generation_ != generation; };
    mu_.Await(absl::Condition(&next));
  }

  void Publish(int rank, const float* input, size_t length) {
    absl::MutexLock lock(&mu_);
    inputs_[rank] = input;
    lengths_[rank] = length;
  }
  // Read between barriers: no rank writes these then.
  const float* input(int rank) const { return inputs_[rank]; }
  size_t length(int rank) const { return lengths_[rank]; }
  bool LengthsAgree() const {
    return std::all_of(lengths_.begin(), lengths_.end(), [this](size_t n) { return n == lengths_[0]; });
  }

 private:
  const int size_;
  absl::Mutex mu_;
  int arrived_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<const float*> inputs_;
  std::vector<size_t> lengths_;
};

class ThreadCommunicator : public Communicator {
 public:
  ThreadCommunicator(std::shared_ptr<ThreadGroup> group, int rank) : group_(std::move(group)), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return group_->size(); }

  absl::Status AllReduceSum(absl::Span<float> data) override {
    // Each rank sums its own copy in rank order from everybody's published input: identical bits
    // everywhere. The inputs must stay unmodified until all ranks have read them, so the sum goes
    // to a scratch buffer first.
    group_->Publish(rank_, data.data(), data.size());
    group_->Barrier();
    const bool agree = group_->LengthsAgree();
    const absl::Status error = agree ? absl::OkStatus() : LengthError();  // before others move on
    if (agree) {
      scratch_.assign(data.size(), 0.0f);
      for (int r = 0; r < size(); ++r) {
        const float* in = group_->input(r);
        for (size_t i = 0; i < data.size(); ++i) scratch_[i] += in[i];
      }
    }
    group_->Barrier();
    if (!agree) return error;
    std::memcpy(data.data(), scratch_.data(), data.size() * sizeof(float));
    return absl::OkStatus();
  }

  absl::Status AllGather(absl::Span<const float> send, absl::Span<float> recv) override {
    group_->Publish(rank_, send.data(), send.size());
    group_->Barrier();
    const bool agree = group_->LengthsAgree() && recv.size() == send.size() * size();
    // Every rank checks the same published send lengths; a bad recv size is seen (and failed) by
    // its own rank only.
    const absl::Status error = agree ? absl::OkStatus() : LengthError();
    if (agree) {
      for (int r = 0; r < size(); ++r) {
        std::memcpy(recv.data() + r * send.size(), group_->input(r), send.size() * sizeof(float));
      }
    }
    group_->Barrier();
    return error;
  }

 private:
  absl::Status LengthError() const {
    std::string lengths;
    for (int r = 0; r < size(); ++r) absl::StrAppend(&lengths, r ? ", " : "", group_->length(r));
    return absl::InvalidArgumentError(absl::StrCat("collective with mismatched lengths across ranks: ", lengths));
  }

  std::shared_ptr<ThreadGroup> group_;
  int rank_;
  std::vector<float> scratch_;
};

}  // namespace

std::vector<std::unique_ptr<Communicator>> CreateThreadCommunicators(int size) {
  auto group = std::make_shared<ThreadGroup>(size);
  std::vector<std::unique_ptr<Communicator>> out;
  for (int r = 0; r < size; ++r) out.push_back(std::make_unique<ThreadCommunicator>(group, r));
  return out;
}

}  // namespace verdict::engine
