// SPDX-License-Identifier: Apache-2.0
// Ids that cannot be mixed up: StrongId<Tag> wraps an integer, converts to and from it only
// explicitly, compares and hashes (Abseil containers) and prints (tests, logs). Plain value type.
#ifndef VERDICT_COMMON_STRONG_ID_H_
#define VERDICT_COMMON_STRONG_ID_H_

#include <compare>
#include <cstdint>
#include <ostream>
#include <utility>

namespace verdict {

template <typename Tag>
class StrongId {
 public:
  constexpr StrongId() = default;
  constexpr explicit StrongId(uint64_t value) : value_(value) {}
  constexpr uint64_t value() const { return value_; }

  friend constexpr auto operator<=>(StrongId, StrongId) = default;
  friend constexpr bool operator==(StrongId, StrongId) = default;
  template <typename H>
  friend H AbslHashValue(H h, StrongId id) {
    return H::combine(std::move(h), id.value_);
  }
  friend std::ostream& operator<<(std::ostream& out, StrongId id) { return out << id.value_; }

 private:
  uint64_t value_ = 0;
};

}  // namespace verdict

#endif  // VERDICT_COMMON_STRONG_ID_H_
