// SPDX-License-Identifier: Apache-2.0
// The text a client sees of a generation's committed tokens, shared by the gRPC and the HTTP
// front ends: incremental detokenization (incomplete UTF-8 held back), end-of-text tokens not
// shown, and stop strings (text that could still begin one is held until the next tokens decide).
#ifndef VERDICT_SERVICES_COORDINATOR_TEXT_STREAM_H_
#define VERDICT_SERVICES_COORDINATOR_TEXT_STREAM_H_

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/status_macros.h"
#include "engine/tokenizer/detokenizer.h"
#include "engine/tokenizer/tokenizer.h"

namespace verdict::services {

// Text of committed tokens, with stop strings: text that could still be the start of a stop
// string is held back until the next tokens decide.
class TextStream {
 public:
  TextStream(const engine::Tokenizer* tokenizer, std::vector<std::string> stops,
             std::vector<int32_t> stop_ids)
      : detokenizer_(tokenizer), stops_(std::move(stops)), stop_ids_(std::move(stop_ids)) {
    for (const std::string& s : stops_) hold_ = std::max(hold_, s.size() > 0 ? s.size() - 1 : 0);
  }
  absl::Status AddContext(absl::Span<const int32_t> prompt) { return detokenizer_.AddContext(prompt); }

  // Adds tokens; `out` gets the text that is final. Returns true when a stop string matched.
  absl::StatusOr<bool> Add(absl::Span<const int32_t> tokens, std::string* out) {
    for (int32_t t : tokens) {
      if (std::find(stop_ids_.begin(), stop_ids_.end(), t) != stop_ids_.end()) continue;  // not shown
      VERDICT_ASSIGN_OR_RETURN(std::string piece, detokenizer_.Add(t));
      pending_ += piece;
    }
    for (const std::string& s : stops_) {
      const size_t at = s.empty() ? std::string::npos : pending_.find(s);
      if (at != std::string::npos) {
        *out = pending_.substr(0, at);
        pending_.clear();
        return true;
      }
    }
    const size_t keep = std::min(hold_, pending_.size());
    *out = pending_.substr(0, pending_.size() - keep);
    pending_.erase(0, pending_.size() - keep);
    return false;
  }
  std::string Flush() {
    std::string rest = pending_ + detokenizer_.Flush();
    pending_.clear();
    return rest;
  }

 private:
  engine::IncrementalDetokenizer detokenizer_;
  std::vector<std::string> stops_;
  std::vector<int32_t> stop_ids_;
  size_t hold_ = 0;
  std::string pending_;
};

}  // namespace verdict::services

#endif  // VERDICT_SERVICES_COORDINATOR_TEXT_STREAM_H_
