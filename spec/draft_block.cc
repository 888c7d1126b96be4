// SPDX-License-Identifier: Apache-2.0
#include "spec/draft_block.h"

#include <algorithm>

namespace verdict::spec {

absl::string_view AcceptReasonName(AcceptReason reason) {
  switch (reason) {
    case AcceptReason::kExact:
      return "exact";
    case AcceptReason::kJudge:
      return "judge";
    case AcceptReason::kLossy:
      return "lossy";
    case AcceptReason::kRejected:
      return "rejected";
    case AcceptReason::kNotReached:
      return "not_reached";
  }
  return "unknown";
}

float DraftDistribution::ProbOf(int32_t id) const {
  const auto it = std::lower_bound(ids.begin(), ids.end(), id);
  return it != ids.end() && *it == id ? probs[it - ids.begin()] : 0.0f;
}

DraftBlock DraftBlock::Slice(size_t from, size_t count) const {
  DraftBlock out;
  out.tokens.assign(tokens.begin() + from, tokens.begin() + from + count);
  if (!logprobs.empty()) out.logprobs.assign(logprobs.begin() + from, logprobs.begin() + from + count);
  if (!proposals.empty()) out.proposals.assign(proposals.begin() + from, proposals.begin() + from + count);
  if (!distributions.empty() && !tokens.empty()) {
    const size_t vocab = distributions.size() / tokens.size();
    out.distributions.assign(distributions.begin() + from * vocab, distributions.begin() + (from + count) * vocab);
  }
  return out;
}

}  // namespace verdict::spec
