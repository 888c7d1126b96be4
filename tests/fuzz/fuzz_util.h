// SPDX-License-Identifier: Apache-2.0
// What the wire fuzz targets share (docs/fuzzing.md): a bounded structure-aware mutator over
// protobuf reflection (Debian has no libprotobuf-mutator), the "message sequence" input format of
// the proto targets (a peer's session of several RPCs), a JSON-aware mutator for the HTTP bodies,
// and FUZZ_CHECK for the invariants the targets assert. Test-only code; a Mutator is not
// thread-safe (libFuzzer and tests/fuzz/fuzz_driver.cc call it from one thread).
//
// The mutators draw every random choice from a seeded std::mt19937_64, so the CI driver replays a
// run exactly from the seed it prints.
#ifndef VERDICT_TESTS_FUZZ_FUZZ_UTIL_H_
#define VERDICT_TESTS_FUZZ_FUZZ_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

// libFuzzer's entry points; tests/fuzz/fuzz_driver.cc provides LLVMFuzzerMutate outside libFuzzer.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

// An invariant of a fuzz target: prints what broke and aborts (a finding, in both drivers).
// The extra arguments are absl::StrCat's.
#define FUZZ_CHECK(cond, ...)                                                              \
  do {                                                                                     \
    if (!(cond)) ::verdict::fuzz::CheckFailed(__FILE__, __LINE__, #cond, absl::StrCat(__VA_ARGS__)); \
  } while (0)

namespace verdict::fuzz {

[[noreturn]] void CheckFailed(const char* file, int line, const char* condition, const std::string& message);

// Silences protobuf's own logging (a parse of invalid UTF-8 logs an error per input). Idempotent.
void QuietProtobufLogs();

// Replaces every -0.0 float or double in `message`'s tree by +0.0: protobuf's JSON parser reads
// "-0" as 0, which a proto3 field then holds as "unset", so -0.0 cannot survive a JSON round trip.
void PositiveZeros(google::protobuf::Message* message);

// Bounds of what a mutation may create: inputs stay small enough for thousands of runs a second.
inline constexpr int kMaxRepeated = 300;      // above spec::kMaxDraftTokens (256), to cross limits
inline constexpr size_t kMaxStringBytes = 2048;
inline constexpr int kMaxDepth = 6;

class ProtoMutator {
 public:
  explicit ProtoMutator(uint64_t seed) : rng_(seed) {}

  // One to three structural mutations somewhere in `message`'s tree: a scalar set to an edge value
  // (0, -1, limits, huge unsigned, NaN, infinities, out-of-range enum numbers), a repeated field
  // grown, shrunk, reordered or filled past the limits, a string or bytes field truncated,
  // extended or made invalid UTF-8, a submessage cleared or created, a oneof switched, or an
  // optional field cleared.
  void Mutate(google::protobuf::Message* message);

  std::mt19937_64& rng() { return rng_; }
  uint64_t Below(uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  bool OneIn(uint64_t n) { return Below(n) == 0; }

  int32_t EdgeInt32();
  int64_t EdgeInt64();
  uint64_t EdgeUint64();
  float EdgeFloat();
  double EdgeDouble();
  std::string EdgeString(const std::string& current);

 private:
  struct Slot {
    google::protobuf::Message* message;
    const google::protobuf::FieldDescriptor* field;
  };
  void Collect(google::protobuf::Message* message, int depth, std::vector<Slot>* slots);
  void MutateSlot(const Slot& slot);
  void SetSingular(google::protobuf::Message* m, const google::protobuf::FieldDescriptor* f);
  void AddRepeated(google::protobuf::Message* m, const google::protobuf::FieldDescriptor* f);
  void SetRepeated(google::protobuf::Message* m, const google::protobuf::FieldDescriptor* f, int index);
  int EdgeEnum(const google::protobuf::FieldDescriptor* f);

  std::mt19937_64 rng_;
};

// ---- the proto targets' input: a sequence of typed messages, as one peer sends them.
//
// Encoding: repeated [u8 type][u32 little-endian length][length bytes of the serialized message].
// Decoding is total: a type byte is taken modulo the number of types, a length past the end takes
// what is left, and at most kMaxMessages entries are read.
inline constexpr size_t kMaxMessages = 24;

struct Entry {
  int type = 0;
  std::string bytes;  // the serialized message, possibly not a valid one
};
std::vector<Entry> DecodeSequence(const uint8_t* data, size_t size, int num_types);
std::string EncodeSequence(const std::vector<Entry>& entries);

// The custom mutator of a message-sequence target. `prototypes[t]` is the message type of type t.
// Mostly a structural mutation of one entry (ProtoMutator over the parsed message), sometimes an
// entry inserted (a copy or a fresh message), removed, moved or retyped, and sometimes a raw
// byte-level mutation of one entry's serialized form or of the whole input.
size_t MutateSequence(const std::vector<const google::protobuf::Message*>& prototypes, uint8_t* data,
                      size_t size, size_t max_size, unsigned int seed);

// The custom mutator of a JSON-text target: parses the JSON and changes a value somewhere in it
// (edge numbers, wrong types, invalid or huge strings, known field names from `keys` added or
// removed); raw byte mutation when the text is not JSON or by chance.
size_t MutateJson(const std::vector<std::string>& keys, uint8_t* data, size_t size, size_t max_size,
                  unsigned int seed);

// Copies `bytes` into a mutator's output buffer (truncated to max_size) and returns its size.
size_t Emit(const std::string& bytes, uint8_t* data, size_t max_size);

}  // namespace verdict::fuzz

#endif  // VERDICT_TESTS_FUZZ_FUZZ_UTIL_H_
