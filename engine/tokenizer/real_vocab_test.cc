// SPDX-License-Identifier: Apache-2.0
// The real Llama 2 / Llama 3 vocabularies (read-only test data in ../shared/tokenizers next to
// the repository; the tests skip when it is absent). tools/tokenizer_reference_test.py compares
// against the Python reference implementations on a large corpus; these pin a few known encodings
// in C++ alone and check the merge-based BPE against a direct implementation of tiktoken's
// rank-based algorithm.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_split.h"
#include "common/testing/status_matchers.h"
#include "engine/tokenizer/bpe_tokenizer.h"
#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/spm_tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict::engine {
namespace {

using ::testing::ElementsAre;

std::string SharedDir() { return std::string(VERDICT_SOURCE_DIR) + "/../shared/tokenizers"; }

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream s;
  s << in.rdbuf();
  *out = s.str();
  return true;
}

#define SKIP_WITHOUT_SHARED()                                                               \
  if (!std::filesystem::is_directory(SharedDir())) {                                        \
    GTEST_SKIP() << "SKIPPED: " << SharedDir() << " does not exist (real tokenizer files)"; \
  }

// --- Llama 3: tiktoken ranks ("<base64 token> <rank>" per line). ---

class Llama3RealTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string text;
    if (!ReadFile(SharedDir() + "/llama3/tokenizer.model", &text)) return;
    ranks_ = new std::vector<std::string>();
    for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
      std::vector<absl::string_view> parts = absl::StrSplit(line, ' ');
      std::string token;
      ASSERT_EQ(parts.size(), 2u);
      ASSERT_TRUE(absl::Base64Unescape(parts[0], &token));
      ranks_->push_back(token);  // ranks are the line numbers
    }
    // Merges as transformers' tiktoken converter derives them: every split of a token into two
    // tokens, ordered by the merged token's rank, then the parts' ranks.
    absl::flat_hash_map<std::string, int32_t>& rank = *rank_map_;
    for (size_t i = 0; i < ranks_->size(); ++i) rank[(*ranks_)[i]] = static_cast<int32_t>(i);
    BpeVocab vocab;
    for (const std::string& t : *ranks_) {
      std::string spelled;
      AppendByteLevel(t, &spelled);
      vocab.tokens.push_back(spelled);
    }
    for (const std::string& t : *ranks_) {
      std::vector<std::pair<int32_t, int32_t>> splits;
      for (size_t k = 1; k < t.size(); ++k) {
        auto l = rank.find(t.substr(0, k));
        auto r = rank.find(t.substr(k));
        if (l != rank.end() && r != rank.end()) splits.emplace_back(l->second, r->second);
      }
      std::sort(splits.begin(), splits.end());
      for (auto [l, r] : splits) vocab.merges.push_back(vocab.tokens[l] + " " + vocab.tokens[r]);
    }
    vocab.tokens.push_back("<|begin_of_text|>");
    vocab.tokens.push_back("<|end_of_text|>");
    vocab.token_types.assign(vocab.tokens.size(), 1);
    vocab.token_types[128000] = vocab.token_types[128001] = 3;
    vocab.bos_id = 128000;
    vocab.eos_ids = {128001};
    vocab.add_bos = true;
    auto tok = CreateBpeTokenizerFromVocab(vocab);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = tok->release();
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    delete ranks_;
    tokenizer_ = nullptr;
    ranks_ = nullptr;
  }
  void SetUp() override {
    SKIP_WITHOUT_SHARED();
    ASSERT_NE(tokenizer_, nullptr) << "could not build the Llama 3 tokenizer";
  }

  // tiktoken's algorithm on one piece: repeatedly merge the adjacent pair whose concatenation
  // has the lowest rank (leftmost on ties), until no pair is a token.
  static std::vector<int32_t> Tiktoken(const std::string& piece) {
    std::vector<std::string> parts;
    for (char c : piece) parts.emplace_back(1, c);
    if (auto it = rank_map_->find(piece); it != rank_map_->end()) return {it->second};
    while (parts.size() > 1) {
      int32_t best = INT32_MAX;
      size_t at = 0;
      for (size_t i = 0; i + 1 < parts.size(); ++i) {
        auto it = rank_map_->find(parts[i] + parts[i + 1]);
        if (it != rank_map_->end() && it->second < best) {
          best = it->second;
          at = i;
        }
      }
      if (best == INT32_MAX) break;
      parts[at] += parts[at + 1];
      parts.erase(parts.begin() + static_cast<std::ptrdiff_t>(at) + 1);
    }
    std::vector<int32_t> ids;
    for (const std::string& p : parts) ids.push_back(rank_map_->at(p));
    return ids;
  }

  static std::vector<std::string>* ranks_;
  static absl::flat_hash_map<std::string, int32_t>* rank_map_;
  static Tokenizer* tokenizer_;
};

std::vector<std::string>* Llama3RealTest::ranks_ = nullptr;
absl::flat_hash_map<std::string, int32_t>* Llama3RealTest::rank_map_ =
    new absl::flat_hash_map<std::string, int32_t>();
Tokenizer* Llama3RealTest::tokenizer_ = nullptr;

TEST_F(Llama3RealTest, KnownEncodings) {
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tokenizer_->Encode("Hello world", {}));
  EXPECT_THAT(ids, ElementsAre(9906, 1917));
  ASSERT_OK_AND_ASSIGN(ids, tokenizer_->Encode("I'm 12345 caf\xC3\xA9 \xF0\x9F\x98\x80", {}));
  EXPECT_THAT(ids, ElementsAre(40, 2846, 220, 4513, 1774, 53050, 91416));
  ASSERT_OK_AND_ASSIGN(ids, tokenizer_->Encode("  indented\n\n\tcode();", {}));
  EXPECT_THAT(ids, ElementsAre(220, 1280, 16243, 271, 44443, 2178));
  EncodeOptions options;
  options.add_bos = true;
  ASSERT_OK_AND_ASSIGN(ids, tokenizer_->Encode("\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E", options));
  EXPECT_THAT(ids, ElementsAre(128000, 102433, 102158));
}

TEST_F(Llama3RealTest, MergesAgreeWithTiktokenRanks) {
  const std::vector<std::string> corpus = {
      "The quick brown fox jumps over the lazy dog. It's 2024!",
      "def tokenize(text):\n    return [t for t in text.split()]  # 100%\n",
      "Supercalifragilisticexpialidocious antidisestablishmentarianism",
      "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82 \xD0\xBC\xD0\xB8\xD1\x80",
      "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7 family",
      std::string(300, 'z') + " " + std::string(77, '9'),
  };
  PreTokenizer pre;
  pre.AddRegexSplit(PreTokenizerRegex::kLlama3, SplitBehavior::kIsolated, false);
  for (const std::string& text : corpus) {
    std::vector<std::string> pieces;
    pre.Split(text, &pieces);
    std::vector<int32_t> expected;
    for (const std::string& piece : pieces) {
      for (int32_t id : Tiktoken(piece)) expected.push_back(id);
    }
    ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tokenizer_->Encode(text, {}));
    EXPECT_EQ(ids, expected) << text;
    ASSERT_OK_AND_ASSIGN(std::string decoded, tokenizer_->Decode(ids, false));
    EXPECT_EQ(decoded, text);
  }
}

// --- Llama 2: sentencepiece ModelProto (protobuf), read with a minimal wire-format parser. ---

// Reads a varint at *pos; false if truncated.
bool ReadVarint(absl::string_view s, size_t* pos, uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 64 && *pos < s.size(); shift += 7) {
    const auto b = static_cast<uint8_t>(s[(*pos)++]);
    *v |= static_cast<uint64_t>(b & 0x7F) << shift;
    if (!(b & 0x80)) return true;
  }
  return false;
}

// ModelProto.pieces (field 1) = SentencePiece { piece = 1 (string), score = 2 (float),
// type = 3 (enum: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte) }.
bool ParseSentencePieceModel(absl::string_view s, SpmVocab* vocab) {
  size_t pos = 0;
  while (pos < s.size()) {
    uint64_t key, len;
    if (!ReadVarint(s, &pos, &key)) return false;
    const int wire = static_cast<int>(key & 7);
    if (wire == 0) {
      if (!ReadVarint(s, &pos, &len)) return false;
      continue;
    }
    if (wire == 5) {
      pos += 4;
      continue;
    }
    if (wire == 1) {
      pos += 8;
      continue;
    }
    if (wire != 2 || !ReadVarint(s, &pos, &len) || pos + len > s.size()) return false;
    const absl::string_view body = s.substr(pos, len);
    pos += len;
    if ((key >> 3) != 1) continue;  // not a piece (trainer / normalizer spec)
    std::string piece;
    float score = 0;
    int32_t type = 1;
    size_t p = 0;
    while (p < body.size()) {
      uint64_t k, v;
      if (!ReadVarint(body, &p, &k)) return false;
      if ((k >> 3) == 1 && (k & 7) == 2) {
        if (!ReadVarint(body, &p, &v) || p + v > body.size()) return false;
        piece = std::string(body.substr(p, v));
        p += v;
      } else if ((k >> 3) == 2 && (k & 7) == 5) {
        std::memcpy(&score, body.data() + p, 4);
        p += 4;
      } else if ((k >> 3) == 3 && (k & 7) == 0) {
        if (!ReadVarint(body, &p, &v)) return false;
        type = static_cast<int32_t>(v);
      } else {
        return false;
      }
    }
    vocab->tokens.push_back(piece);
    vocab->scores.push_back(score);
    vocab->token_types.push_back(type);
  }
  return true;
}

TEST(Llama2RealTest, KnownEncodings) {
  SKIP_WITHOUT_SHARED();
  std::string model;
  ASSERT_TRUE(ReadFile(SharedDir() + "/llama2/tokenizer.model", &model));
  SpmVocab vocab;
  ASSERT_TRUE(ParseSentencePieceModel(model, &vocab));
  ASSERT_EQ(vocab.tokens.size(), 32000u);
  vocab.unk_id = 0;
  vocab.bos_id = 1;
  vocab.eos_id = 2;
  ASSERT_OK_AND_ASSIGN(auto tok, CreateSpmTokenizer(vocab));
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tok->Encode("Hello world", {}));
  EXPECT_THAT(ids, ElementsAre(15043, 3186));
  ASSERT_OK_AND_ASSIGN(ids, tok->Encode("I'm 12345 caf\xC3\xA9 \xF0\x9F\x98\x80", {}));
  EXPECT_THAT(ids, ElementsAre(306, 29915, 29885, 29871, 29896, 29906, 29941, 29946, 29945, 274,
                               28059, 29871, 243, 162, 155, 131));
  EncodeOptions options;
  options.add_bos = true;
  ASSERT_OK_AND_ASSIGN(ids, tok->Encode("  indented\n\n\tcode();", options));
  EXPECT_THAT(ids, ElementsAre(1, 259, 1399, 14927, 13, 13, 12, 401, 890));
  ASSERT_OK_AND_ASSIGN(std::string text, tok->Decode(ids, true));
  EXPECT_EQ(text, "  indented\n\n\tcode();");
}

}  // namespace
}  // namespace verdict::engine
