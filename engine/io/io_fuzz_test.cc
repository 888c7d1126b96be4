// SPDX-License-Identifier: Apache-2.0
// Bounded mutation fuzzer for the checkpoint parsers (ParseSafetensorsHeader, GgufFile::Parse,
// the config parsers), built with AddressSanitizer + UndefinedBehaviorSanitizer. Seeds are the
// committed fixtures plus small synthetic files. Every input lives in an exactly sized heap
// buffer, so any read past its end is reported. The parsers must never crash, leak or read out
// of bounds; whether they accept a mutant does not matter, but whatever they accept must point
// inside the buffer.
//
// Deterministic for a given seed. Environment:
//   VERDICT_FUZZ_SEED        RNG seed (default: time-based; always printed)
//   VERDICT_FUZZ_SECONDS     total wall-clock budget over all targets (default 20)
//   VERDICT_FUZZ_ITERATIONS  iteration cap per target (default 300000)
// On a sanitizer report the current input is written to $TMPDIR/verdict_io_fuzz_crash.bin.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/dtype.h"
#include "engine/io/gguf.h"
#include "engine/io/io_test_util.h"
#include "engine/io/model_config_loader.h"
#include "engine/io/safetensors.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

#if defined(__has_include)
#if __has_include(<sanitizer/common_interface_defs.h>)
#include <sanitizer/common_interface_defs.h>
#define VERDICT_HAVE_SANITIZER_CALLBACK 1
#endif
#endif

namespace verdict::engine {
namespace {

using io_testing::FixturePath;
using io_testing::GgufBuilder;

// ---- Run parameters -------------------------------------------------------------------------

uint64_t EnvU64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::strtoull(v, nullptr, 10);
}

uint64_t RunSeed() {
  static const uint64_t seed = [] {
    const uint64_t s =
        EnvU64("VERDICT_FUZZ_SEED",
               static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
                   0x9e3779b97f4a7c15ull);
    std::printf("io_fuzz_test: seed %llu (replay with VERDICT_FUZZ_SEED=%llu)\n",
                static_cast<unsigned long long>(s), static_cast<unsigned long long>(s));
    std::fflush(stdout);
    return s;
  }();
  return seed;
}

// The input being parsed, for the sanitizer death callback.
const uint8_t* g_current = nullptr;
size_t g_current_size = 0;
const char* g_current_target = "";
uint64_t g_current_iteration = 0;

void DumpCurrentInput() {
  const char* base = std::getenv("TMPDIR");
  const std::string path =
      std::string(base != nullptr && *base ? base : "/tmp") + "/verdict_io_fuzz_crash.bin";
  std::fprintf(stderr, "io_fuzz_test: crash in target %s at iteration %llu (seed %llu)\n",
               g_current_target, static_cast<unsigned long long>(g_current_iteration),
               static_cast<unsigned long long>(RunSeed()));
  if (g_current == nullptr) return;
  if (FILE* f = std::fopen(path.c_str(), "wb"); f != nullptr) {
    std::fwrite(g_current, 1, g_current_size, f);
    std::fclose(f);
    std::fprintf(stderr, "io_fuzz_test: input (%zu bytes) written to %s\n", g_current_size,
                 path.c_str());
  }
}

// ---- Mutator --------------------------------------------------------------------------------

struct Seed {
  std::vector<uint8_t> bytes;
  size_t header_end;  // mutations concentrate on [0, header_end)
};

class Mutator {
 public:
  explicit Mutator(uint64_t seed, bool json) : rng_(seed), json_(json) {}

  std::vector<uint8_t> Mutate(const Seed& seed) {
    std::vector<uint8_t> b = seed.bytes;
    const int ops = 1 + static_cast<int>(Below(4));
    for (int i = 0; i < ops; ++i) MutateOnce(&b, std::min(seed.header_end, b.size()));
    return b;
  }

  uint64_t Below(uint64_t n) { return n == 0 ? 0 : rng_() % n; }

 private:
  size_t Pos(size_t size, size_t header_end) {
    if (size == 0) return 0;
    if (header_end > 0 && Below(10) < 8) return static_cast<size_t>(Below(header_end));
    return static_cast<size_t>(Below(size));
  }

  uint64_t Interesting(size_t size) {
    static constexpr uint64_t kValues[] = {
        0,          1,          2,          3,           7,          8,          31,     32,
        33,         63,         64,         255,         256,        4096,       0x7fff, 0xffff,
        0x7fffffff, 0x80000000, 0xffffffff, 0x100000000, 1ull << 62, 1ull << 63, ~0ull,  ~0ull - 1};
    const uint64_t pick = Below(sizeof(kValues) / sizeof(kValues[0]) + 4);
    if (pick < sizeof(kValues) / sizeof(kValues[0])) return kValues[pick];
    switch (pick % 4) {
      case 0: return size;
      case 1: return size - 1;
      case 2: return size + 1;
      default: return rng_();
    }
  }

  void WriteLe(std::vector<uint8_t>* b, size_t pos, uint64_t v, int n) {
    for (int i = 0; i < n && pos + i < b->size(); ++i) {
      (*b)[pos + i] = static_cast<uint8_t>(v >> (8 * i));
    }
  }

  void MutateOnce(std::vector<uint8_t>* b, size_t header_end) {
    const size_t size = b->size();
    switch (Below(json_ ? 10 : 9)) {
      case 0:  // bit flip
        if (size > 0) (*b)[Pos(size, header_end)] ^= static_cast<uint8_t>(1u << Below(8));
        break;
      case 1: {  // interesting byte
        static constexpr uint8_t kBytes[] = {0,   1,   0x7f, 0x80, 0xff, '"', '{', '}',  '[',
                                             ']', ',', ':',  '-',  '0',  '9', 'e', '\\', ' '};
        if (size > 0) (*b)[Pos(size, header_end)] = kBytes[Below(sizeof(kBytes))];
        break;
      }
      case 2:  // interesting 32-bit value
        if (size > 0) WriteLe(b, Pos(size, header_end), Interesting(size), 4);
        break;
      case 3:  // interesting 64-bit value
        if (size > 0) WriteLe(b, Pos(size, header_end), Interesting(size), 8);
        break;
      case 4:  // truncate
        b->resize(Below(10) < 7 ? Pos(size, header_end) : static_cast<size_t>(Below(size + 1)));
        break;
      case 5: {  // insert random bytes
        const size_t pos = size == 0 ? 0 : Pos(size, header_end);
        const size_t n = 1 + static_cast<size_t>(Below(16));
        std::vector<uint8_t> ins(n);
        for (uint8_t& x : ins) x = static_cast<uint8_t>(rng_());
        b->insert(b->begin() + static_cast<std::ptrdiff_t>(pos), ins.begin(), ins.end());
        break;
      }
      case 6: {  // delete a range
        if (size == 0) break;
        const size_t pos = Pos(size, header_end);
        const size_t n = std::min<size_t>(1 + Below(32), size - pos);
        b->erase(b->begin() + static_cast<std::ptrdiff_t>(pos),
                 b->begin() + static_cast<std::ptrdiff_t>(pos + n));
        break;
      }
      case 7: {  // copy a chunk over another place
        if (size < 2) break;
        const size_t from = Pos(size, header_end);
        const size_t to = Pos(size, header_end);
        const size_t n = std::min<size_t>({1 + Below(64), size - from, size - to});
        std::memmove(b->data() + to, b->data() + from, n);
        break;
      }
      case 8:  // length fields: safetensors' header length, GGUF's version and counts
        if (json_) {
          WriteLe(b, 0, Below(2) ? Interesting(size) : header_end - 24 + Below(17), 8);
        } else {
          static constexpr size_t kFields[] = {4, 8, 16};
          const size_t f = kFields[Below(3)];
          WriteLe(b, f, Interesting(size), f == 4 ? 4 : 8);
        }
        break;
      case 9: {  // JSON-level: a token spliced in
        static constexpr const char* kTokens[] = {"-1",
                                                  "1e999",
                                                  "18446744073709551616",
                                                  "\"F64\"",
                                                  "null",
                                                  "[]",
                                                  "{}",
                                                  "\"\\u0000\"",
                                                  "9223372036854775807",
                                                  "0.5",
                                                  "true",
                                                  "[0,0]",
                                                  "\"__metadata__\"",
                                                  "\"BF16\""};
        const std::string t = kTokens[Below(sizeof(kTokens) / sizeof(kTokens[0]))];
        const size_t pos = size == 0 ? 0 : Pos(size, header_end);
        if (Below(2) && pos + t.size() <= size) {
          std::memcpy(b->data() + pos, t.data(), t.size());
        } else {
          b->insert(b->begin() + static_cast<std::ptrdiff_t>(pos), t.begin(), t.end());
        }
        break;
      }
    }
  }

  std::mt19937_64 rng_;
  bool json_;
};

// ---- Driver ---------------------------------------------------------------------------------

// Consumes what a parser accepted so that sanitizers check every pointer it produced.
volatile uint8_t g_sink = 0;
void Touch(const WeightTensor& t) {
  if (t.nbytes == 0) return;
  g_sink = static_cast<uint8_t>(g_sink + t.data[0] + t.data[t.nbytes - 1] + t.data[t.nbytes / 2]);
}

struct Target {
  const char* name;
  bool json;
  std::vector<Seed> seeds;
  // Parses one input; returns true if it was accepted.
  std::function<bool(const uint8_t*, size_t)> parse;
};

struct Stats {
  uint64_t iterations = 0;
  uint64_t accepted = 0;
};

Stats RunTarget(const Target& target, double seconds, uint64_t max_iterations, uint64_t salt) {
  Mutator mutator(RunSeed() ^ (salt * 0x9e3779b97f4a7c15ull), target.json);
  std::vector<Seed> pool = target.seeds;  // seeds plus accepted mutants
  const size_t n_seeds = pool.size();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  Stats stats;
  g_current_target = target.name;
  for (uint64_t it = 0; it < max_iterations; ++it) {
    if ((it & 63) == 0 && std::chrono::steady_clock::now() >= deadline) break;
    const Seed& base = pool[mutator.Below(pool.size())];
    const std::vector<uint8_t> input = mutator.Mutate(base);
    // Exactly sized copy: a read one past the end is a heap-buffer-overflow.
    std::unique_ptr<uint8_t[]> buf(new uint8_t[std::max<size_t>(input.size(), 1)]);
    if (!input.empty()) std::memcpy(buf.get(), input.data(), input.size());
    g_current = buf.get();
    g_current_size = input.size();
    g_current_iteration = it;
    const bool ok = target.parse(input.empty() ? nullptr : buf.get(), input.size());
    ++stats.iterations;
    if (ok) {
      ++stats.accepted;
      // Keep some accepted mutants to mutate further (bounded pool).
      if (mutator.Below(8) == 0) {
        Seed s{input, base.header_end};
        if (pool.size() < n_seeds + 32) {
          pool.push_back(std::move(s));
        } else {
          pool[n_seeds + mutator.Below(32)] = std::move(s);
        }
      }
    }
  }
  g_current = nullptr;
  std::printf("io_fuzz_test: %s: %llu inputs, %llu accepted\n", target.name,
              static_cast<unsigned long long>(stats.iterations),
              static_cast<unsigned long long>(stats.accepted));
  std::fflush(stdout);
  return stats;
}

double Budget(double share) {
  return static_cast<double>(EnvU64("VERDICT_FUZZ_SECONDS", 20)) * share;
}
uint64_t MaxIterations() { return EnvU64("VERDICT_FUZZ_ITERATIONS", 300000); }

class IoFuzzTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    RunSeed();
#ifdef VERDICT_HAVE_SANITIZER_CALLBACK
    __sanitizer_set_death_callback(DumpCurrentInput);
#endif
  }
};

Seed SafetensorsSeed(std::vector<uint8_t> bytes) {
  uint64_t len = 0;
  for (int i = 7; i >= 0 && bytes.size() >= 8; --i)
    len = (len << 8) | bytes[static_cast<size_t>(i)];
  const size_t end = static_cast<size_t>(std::min<uint64_t>(8 + len, bytes.size()));
  return Seed{std::move(bytes), end + 16};
}

// The same header structure with every dimension cut to at most 2 (data zero-filled), so the
// fuzzer spends its time in the header rather than copying megabytes of weights.
std::vector<uint8_t> ShrinkSafetensors(const std::vector<uint8_t>& bytes) {
  uint64_t len = 0;
  for (int i = 7; i >= 0; --i) len = (len << 8) | bytes[static_cast<size_t>(i)];
  nlohmann::json header = nlohmann::json::parse(
      bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(len));
  uint64_t offset = 0;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    nlohmann::json& e = it.value();
    uint64_t n = e["dtype"] == "F32" || e["dtype"] == "I32" ? 4 : 2;
    for (auto& d : e["shape"]) {
      d = std::min<uint64_t>(d.get<uint64_t>(), 2);
      n *= d.get<uint64_t>();
    }
    e["data_offsets"] = {offset, offset + n};
    offset += n;
  }
  return io_testing::MakeSafetensors(header.dump(), std::vector<uint8_t>(offset, 0x3c));
}

// The same metadata and tensor names/types with small shapes (GGUF's ne[0] kept at 32 for
// Q8_0), re-encoded through GgufBuilder.
std::vector<uint8_t> ShrinkGguf(const GgufFile& f) {
  GgufBuilder b;
  for (const std::string& key : f.MetadataKeys()) {
    const GgufValue& v = *f.FindMetadata(key);
    switch (v.type()) {
      case GgufType::kString: b.String(key, *v.AsString()); break;
      case GgufType::kBool: b.Bool(key, *v.AsBool()); break;
      case GgufType::kFloat32: b.F32(key, static_cast<float>(*v.AsFloat())); break;
      case GgufType::kFloat64: b.F64(key, *v.AsFloat()); break;
      case GgufType::kArray:
        if (v.element_type() == GgufType::kString) {
          b.StringArray(key, *v.AsStringArray());
        } else if (v.element_type() == GgufType::kFloat32) {
          b.F32Array(key, *v.AsFloatArray());
        } else {
          const absl::StatusOr<std::vector<int64_t>> values = v.AsIntArray();
          std::vector<int32_t> ints;
          if (values.ok()) {
            for (int64_t x : *values) ints.push_back(static_cast<int32_t>(x));
          }
          b.I32Array(key, ints);
        }
        break;
      default: b.U32(key, static_cast<uint32_t>(*v.AsInt())); break;
    }
  }
  for (const std::string& name : f.Names()) {
    const WeightTensor& t = *f.Find(name);
    std::vector<uint64_t> ne;
    for (auto d = t.shape.rbegin(); d != t.shape.rend(); ++d)
      ne.push_back(std::min<uint64_t>(*d, 2));
    uint32_t type = 0;
    size_t bytes = 4;
    switch (t.dtype) {
      case DType::kF16:
        type = 1;
        bytes = 2;
        break;
      case DType::kBF16:
        type = 30;
        bytes = 2;
        break;
      case DType::kQ8_0:
        type = 8;
        ne[0] = 32;
        bytes = 34;
        break;
      default: break;
    }
    size_t n = 1;
    for (size_t i = (t.dtype == DType::kQ8_0 ? 1 : 0); i < ne.size(); ++i) n *= ne[i];
    b.Tensor(name, type, ne, std::vector<uint8_t>(n * bytes, 0x11));
  }
  return b.Build();
}

TEST_F(IoFuzzTest, Safetensors) {
  Target t{"safetensors", /*json=*/true, {}, nullptr};
  t.seeds.push_back(SafetensorsSeed(io_testing::ReadFileBytes(
      FixturePath("llama3_gqa/sharded/model-00002-of-00002.safetensors"))));
  for (const char* rel : {"llama3_gqa/sharded/model-00001-of-00002.safetensors",
                          "llama2_mha/reference.safetensors", "odd_tied/model.safetensors"}) {
    t.seeds.push_back(
        SafetensorsSeed(ShrinkSafetensors(io_testing::ReadFileBytes(FixturePath(rel)))));
  }
  std::vector<uint8_t> data(64);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i);
  t.seeds.push_back(SafetensorsSeed(io_testing::MakeSafetensors(
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
      R"("b":{"dtype":"BF16","shape":[4],"data_offsets":[16,24]},)"
      R"("c":{"dtype":"I32","shape":[],"data_offsets":[24,28]},)"
      R"("d":{"dtype":"F16","shape":[0],"data_offsets":[28,28]}})",
      data)));
  for (const Seed& s : t.seeds) {
    ASSERT_TRUE(ParseSafetensorsHeader(s.bytes.data(), s.bytes.size()).ok());
  }
  t.parse = [](const uint8_t* data, size_t size) {
    absl::StatusOr<SafetensorsFile> f = ParseSafetensorsHeader(data, size, "fuzz");
    if (!f.ok()) return false;
    for (const WeightTensor& w : f->tensors) {
      EXPECT_GE(w.data, data);
      EXPECT_LE(w.data + w.nbytes, data + size);
      Touch(w);
    }
    return true;
  };
  const Stats s = RunTarget(t, Budget(0.4), MaxIterations(), 1);
  EXPECT_GT(s.iterations, 0u);
}

TEST_F(IoFuzzTest, Gguf) {
  Target t{"gguf", /*json=*/false, {}, nullptr};
  for (const char* rel : {"llama2_mha/llama2_mha-q8_0.gguf", "llama3_gqa/llama3_gqa-q8_0.gguf",
                          "odd_tied/odd_tied-bf16.gguf"}) {
    std::vector<uint8_t> bytes = io_testing::ReadFileBytes(FixturePath(rel));
    absl::StatusOr<std::unique_ptr<GgufFile>> g = GgufFile::Parse(bytes.data(), bytes.size());
    ASSERT_TRUE(g.ok()) << g.status();
    std::vector<uint8_t> small = ShrinkGguf(**g);
    absl::StatusOr<std::unique_ptr<GgufFile>> s = GgufFile::Parse(small.data(), small.size());
    ASSERT_TRUE(s.ok()) << s.status();
    t.seeds.push_back(Seed{std::move(small), (*s)->data_offset()});
    if (t.seeds.size() == 1) {  // one full-size file too
      const size_t header_end = (*g)->data_offset();
      t.seeds.push_back(Seed{std::move(bytes), header_end});
    }
  }
  // Every value type, a nested array, a custom alignment and each supported tensor type.
  std::vector<uint8_t> nested = GgufBuilder::Le(GgufBuilder::kArray, 4);
  io_testing::PutLe(&nested, 1, 8);
  io_testing::PutLe(&nested, GgufBuilder::kI16, 4);
  io_testing::PutLe(&nested, 2, 8);
  io_testing::PutLe(&nested, 0xfffe, 2);
  io_testing::PutLe(&nested, 7, 2);
  GgufBuilder b;
  b.Alignment(64)
      .U32("general.alignment", 64)
      .String("general.architecture", "llama")
      .U8("a", 1)
      .I8("b", -1)
      .U16("c", 2)
      .I16("d", -2)
      .I32("e", -3)
      .U64("f", 4)
      .I64("g", -5)
      .F32("h", 0.5f)
      .F64("i", 0.25)
      .Bool("j", true)
      .StringArray("k", {"x", "yy"})
      .F32Array("l", {1, 2})
      .I32Array("m", {3})
      .Raw("n", GgufBuilder::kArray, nested)
      .U32("llama.context_length", 64)
      .U32("llama.embedding_length", 32)
      .U32("llama.block_count", 1)
      .U32("llama.feed_forward_length", 64)
      .U32("llama.attention.head_count", 2)
      .F32("llama.attention.layer_norm_rms_epsilon", 1e-5f)
      .Tensor("token_embd.weight", 8, {32, 3}, std::vector<uint8_t>(3 * 34, 1))
      .Tensor("f16", 1, {5}, std::vector<uint8_t>(10, 2))
      .Tensor("bf16", 30, {2, 1, 1, 2}, std::vector<uint8_t>(8, 3))
      .Tensor("f32", 0, {1}, std::vector<uint8_t>(4, 4));
  std::vector<uint8_t> synth = b.Build();
  {
    absl::StatusOr<std::unique_ptr<GgufFile>> g = GgufFile::Parse(synth.data(), synth.size());
    ASSERT_TRUE(g.ok()) << g.status();
    t.seeds.push_back(Seed{synth, (*g)->data_offset()});
  }
  t.parse = [](const uint8_t* data, size_t size) {
    absl::StatusOr<std::unique_ptr<GgufFile>> g = GgufFile::Parse(data, size);
    if (!g.ok()) return false;
    const GgufFile& f = **g;
    for (const std::string& name : f.Names()) {
      const WeightTensor* w = f.Find(name);
      EXPECT_NE(w, nullptr);
      EXPECT_GE(w->data, data);
      EXPECT_LE(w->data + w->nbytes, data + size);
      Touch(*w);
    }
    for (const std::string& key : f.MetadataKeys()) {
      const GgufValue* v = f.FindMetadata(key);
      EXPECT_NE(v, nullptr);
      (void)v->AsInt();
      (void)v->AsFloat();
      (void)v->AsBool();
      (void)v->AsString();
      (void)v->AsStringArray();
      (void)v->AsFloatArray();
      (void)v->AsIntArray();
      (void)v->DebugString();
    }
    (void)ConfigFromGguf(f);
    return true;
  };
  const Stats s = RunTarget(t, Budget(0.4), MaxIterations(), 2);
  EXPECT_GT(s.iterations, 0u);
}

TEST_F(IoFuzzTest, Configs) {
  Target t{"config.json", /*json=*/true, {}, nullptr};
  for (const char* rel :
       {"llama3_gqa/config.json", "llama2_mha/config.json", "llama3_gqa/generation_config.json",
        "llama2_mha/generation_config.json", "llama3_gqa/sharded/model.safetensors.index.json"}) {
    std::vector<uint8_t> bytes = io_testing::ReadFileBytes(FixturePath(rel));
    const size_t n = bytes.size();
    t.seeds.push_back(Seed{std::move(bytes), n});
  }
  t.parse = [](const uint8_t* data, size_t size) {
    const absl::string_view text(reinterpret_cast<const char*>(data), size);
    const bool a = ParseHfConfig(text).ok();
    const bool b = ParseGenerationConfig(text).ok();
    return a || b;
  };
  const Stats s = RunTarget(t, Budget(0.2), MaxIterations(), 3);
  EXPECT_GT(s.iterations, 0u);
}

}  // namespace
}  // namespace verdict::engine
