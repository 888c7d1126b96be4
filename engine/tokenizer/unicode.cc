// SPDX-License-Identifier: Apache-2.0
#include "engine/tokenizer/unicode.h"

#include <algorithm>
#include <array>

namespace verdict::engine::unicode {
namespace {

struct ClassRange {
  char32_t lo;
  char32_t hi;
  CharClass cls;
};

constexpr CharClass kLetter = CharClass::kLetter;
constexpr CharClass kNumber = CharClass::kNumber;
constexpr CharClass kWhitespace = CharClass::kWhitespace;

constexpr ClassRange kRanges[] = {
#include "engine/tokenizer/unicode_tables.inc"
};

// Classes of the first 256 code points, for the common case.
constexpr std::array<CharClass, 256> MakeLatin1Table() {
  std::array<CharClass, 256> table{};
  for (const ClassRange& r : kRanges) {
    if (r.lo > 255) break;
    for (char32_t cp = r.lo; cp <= r.hi && cp < 256; ++cp) table[cp] = r.cls;
  }
  return table;
}
constexpr std::array<CharClass, 256> kLatin1 = MakeLatin1Table();

// Inspects the UTF-8 sequence at the start of `s`. Sets *needed to the length the lead byte
// announces (0 if it cannot start a well-formed sequence) and returns how many leading bytes
// (at most *needed) satisfy the well-formedness constraints of Unicode Table 3-7.
size_t ScanSequence(absl::string_view s, size_t* needed) {
  *needed = 0;
  if (s.empty()) return 0;
  const auto b0 = static_cast<uint8_t>(s[0]);
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 < 0x80) {
    *needed = 1;
    return 1;
  } else if (b0 >= 0xC2 && b0 <= 0xDF) {
    *needed = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    *needed = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    *needed = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  size_t count = 1;
  while (count < *needed && count < s.size()) {
    const auto b = static_cast<uint8_t>(s[count]);
    if (count == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) break;
    ++count;
  }
  return count;
}

}  // namespace

CharClass ClassOf(char32_t cp) {
  if (cp < 256) return kLatin1[cp];
  if (cp == kInvalidCodePoint) return CharClass::kOther;
  const ClassRange* end = kRanges + sizeof(kRanges) / sizeof(kRanges[0]);
  const ClassRange* it =
      std::upper_bound(kRanges, end, cp, [](char32_t v, const ClassRange& r) { return v < r.lo; });
  if (it == kRanges) return CharClass::kOther;
  --it;
  return cp <= it->hi ? it->cls : CharClass::kOther;
}

size_t DecodeOne(absl::string_view s, char32_t* cp) {
  size_t needed = 0;
  const size_t count = ScanSequence(s, &needed);
  if (needed == 0 || count < needed) return 0;
  const auto b0 = static_cast<uint8_t>(s[0]);
  char32_t v = 0;
  switch (needed) {
    case 1:
      v = b0;
      break;
    case 2:
      v = b0 & 0x1F;
      break;
    case 3:
      v = b0 & 0x0F;
      break;
    default:
      v = b0 & 0x07;
      break;
  }
  for (size_t i = 1; i < needed; ++i) v = (v << 6) | (static_cast<uint8_t>(s[i]) & 0x3F);
  *cp = v;
  return needed;
}

std::vector<Char> DecodeChars(absl::string_view text) {
  std::vector<Char> chars;
  chars.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    Char c;
    c.begin = static_cast<uint32_t>(pos);
    const auto b = static_cast<uint8_t>(text[pos]);
    if (b < 0x80) {
      c.cp = b;
      pos += 1;
    } else {
      const size_t len = DecodeOne(text.substr(pos), &c.cp);
      if (len == 0) {
        c.cp = kInvalidCodePoint;
        pos += 1;
      } else {
        pos += len;
      }
    }
    c.end = static_cast<uint32_t>(pos);
    c.cls = ClassOf(c.cp);
    chars.push_back(c);
  }
  return chars;
}

bool IsValidUtf8(absl::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    if (static_cast<uint8_t>(s[pos]) < 0x80) {
      ++pos;
      continue;
    }
    char32_t cp;
    const size_t len = DecodeOne(s.substr(pos), &cp);
    if (len == 0) return false;
    pos += len;
  }
  return true;
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

size_t IncompletePrefixLength(absl::string_view s) {
  size_t needed = 0;
  const size_t count = ScanSequence(s, &needed);
  if (needed == 0 || count >= needed || count < s.size()) return 0;
  return count;
}

void AppendUtf8Lossy(absl::string_view bytes, std::string* out) {
  static constexpr char kReplacement[] = "\xEF\xBF\xBD";
  size_t pos = 0;
  while (pos < bytes.size()) {
    const size_t start = pos;
    // Copy the longest run of ASCII / well-formed sequences in one go.
    while (pos < bytes.size()) {
      if (static_cast<uint8_t>(bytes[pos]) < 0x80) {
        ++pos;
        continue;
      }
      size_t needed = 0;
      const size_t count = ScanSequence(bytes.substr(pos), &needed);
      if (needed == 0 || count < needed) break;
      pos += needed;
    }
    out->append(bytes.data() + start, pos - start);
    if (pos >= bytes.size()) break;
    size_t needed = 0;
    const size_t count = ScanSequence(bytes.substr(pos), &needed);
    out->append(kReplacement, 3);
    pos += std::max<size_t>(count, 1);
  }
}

}  // namespace verdict::engine::unicode
