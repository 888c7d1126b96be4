// SPDX-License-Identifier: Apache-2.0
#include "engine/tokenizer/unicode.h"

#include <string>

#include "gtest/gtest.h"

namespace verdict::engine::unicode {
namespace {

TEST(UnicodeTest, ClassesMatchTheRegexEngine) {
  EXPECT_EQ(ClassOf('a'), CharClass::kLetter);
  EXPECT_EQ(ClassOf('Z'), CharClass::kLetter);
  EXPECT_EQ(ClassOf('7'), CharClass::kNumber);
  EXPECT_EQ(ClassOf(' '), CharClass::kWhitespace);
  EXPECT_EQ(ClassOf('\n'), CharClass::kWhitespace);
  EXPECT_EQ(ClassOf('\v'), CharClass::kWhitespace);
  EXPECT_EQ(ClassOf('!'), CharClass::kOther);
  EXPECT_EQ(ClassOf('_'), CharClass::kOther);
  EXPECT_EQ(ClassOf(0x1C), CharClass::kOther);       // not White_Space
  EXPECT_EQ(ClassOf(0x85), CharClass::kWhitespace);  // NEL
  EXPECT_EQ(ClassOf(0xA0), CharClass::kWhitespace);  // NBSP
  EXPECT_EQ(ClassOf(0xAA), CharClass::kLetter);      // ª (Lo)
  EXPECT_EQ(ClassOf(0xB2), CharClass::kNumber);      // ² (No)
  EXPECT_EQ(ClassOf(0xBD), CharClass::kNumber);      // ½
  EXPECT_EQ(ClassOf(0xE9), CharClass::kLetter);      // é
  EXPECT_EQ(ClassOf(0x0301), CharClass::kOther);     // combining acute (Mn)
  EXPECT_EQ(ClassOf(0x0663), CharClass::kNumber);    // Arabic-Indic three
  EXPECT_EQ(ClassOf(0x2167), CharClass::kNumber);    // Roman numeral eight (Nl)
  EXPECT_EQ(ClassOf(0x180E), CharClass::kOther);     // Mongolian vowel separator: no longer space
  EXPECT_EQ(ClassOf(0x200B), CharClass::kOther);     // zero width space: not White_Space
  EXPECT_EQ(ClassOf(0x2028), CharClass::kWhitespace);
  EXPECT_EQ(ClassOf(0x3000), CharClass::kWhitespace);
  EXPECT_EQ(ClassOf(0x4E2D), CharClass::kLetter);   // 中
  EXPECT_EQ(ClassOf(0xAC00), CharClass::kLetter);   // 가
  EXPECT_EQ(ClassOf(0x1F600), CharClass::kOther);   // emoji
  EXPECT_EQ(ClassOf(0x31350), CharClass::kLetter);  // CJK Ext H (Unicode 15)
  EXPECT_EQ(ClassOf(0x105C0), CharClass::kLetter);  // Todhri (Unicode 16)
  EXPECT_EQ(ClassOf(0x2FFFF), CharClass::kOther);   // unassigned
  EXPECT_EQ(ClassOf(0x10FFFF), CharClass::kOther);
  EXPECT_EQ(ClassOf(kInvalidCodePoint), CharClass::kOther);
}

TEST(UnicodeTest, DecodesCharsAndKeepsInvalidBytes) {
  const std::string text = "a\xC3\xA9\xFF\xF0\x9F\x98\x80\xE2\x82";
  std::vector<Char> chars = DecodeChars(text);
  ASSERT_EQ(chars.size(), 6u);
  EXPECT_EQ(chars[0].cp, U'a');
  EXPECT_EQ(chars[1].cp, U'\u00e9');
  EXPECT_EQ(chars[1].end - chars[1].begin, 2u);
  EXPECT_EQ(chars[2].cp, kInvalidCodePoint);
  EXPECT_EQ(chars[3].cp, U'\U0001F600');
  EXPECT_EQ(chars[4].cp, kInvalidCodePoint);  // truncated E2 82: two single bytes
  EXPECT_EQ(chars[5].cp, kInvalidCodePoint);
  EXPECT_EQ(chars[5].end, text.size());
}

TEST(UnicodeTest, ValidityAndIncompletePrefixes) {
  EXPECT_TRUE(IsValidUtf8("plain \xE2\x82\xAC \xF0\x9F\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));          // overlong
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xE2\x82"));
  EXPECT_EQ(IncompletePrefixLength("\xE2\x82"), 2u);
  EXPECT_EQ(IncompletePrefixLength("\xF0\x9F\x98"), 3u);
  EXPECT_EQ(IncompletePrefixLength("\xF0"), 1u);
  EXPECT_EQ(IncompletePrefixLength("\xE2\x82\xAC"), 0u);  // complete
  EXPECT_EQ(IncompletePrefixLength("\xE2\x41"), 0u);      // can never complete
  EXPECT_EQ(IncompletePrefixLength("\xE0\x80"), 0u);      // overlong start
  EXPECT_EQ(IncompletePrefixLength("\x80"), 0u);
}

std::string Lossy(const std::string& bytes) {
  std::string out;
  AppendUtf8Lossy(bytes, &out);
  return out;
}

TEST(UnicodeTest, LossyReplacesMaximalSubparts) {
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(Lossy("ok \xE2\x82\xAC"), "ok \xE2\x82\xAC");
  EXPECT_EQ(Lossy("\xE2\x82"), r);  // one truncated sequence: one U+FFFD
  EXPECT_EQ(Lossy("\xF0\x9F\x98"
                  "A"),
            r + "A");
  EXPECT_EQ(Lossy("\xC0\xAF"), r + r);          // C0 can never start a sequence
  EXPECT_EQ(Lossy("\xED\xA0\x80"), r + r + r);  // surrogates: each byte
  EXPECT_EQ(Lossy("\xE2\xE2\x82\xAC"), r + "\xE2\x82\xAC");
  EXPECT_EQ(Lossy("\xFF\xFE"), r + r);
}

TEST(UnicodeTest, EncodesUtf8) {
  std::string s;
  for (char32_t cp : {U'A', U'\u00e9', U'\u4e2d', U'\U0001F600'}) AppendUtf8(cp, &s);
  EXPECT_EQ(s, "A\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80");
}

}  // namespace
}  // namespace verdict::engine::unicode
