// SPDX-License-Identifier: Apache-2.0
// Fuzz target: what a peer shard sends to a target shard's data port. The UCX handshake (hello and
// welcome), a UCX active message (frame prefix, layout check, header and payload split as the
// receiver does) carrying an activation batch, and the gRPC fallback's ActivationBatch; every
// batch that gets through is decoded as the shard's service decodes it (DecodeActivations).
//
// Input: byte 0 selects the path and the fix-ups that let mutated inputs past the checksums (a
// fuzzer cannot guess a CRC); the rest is the bytes of that path:
//   bits 0-1: 0 hello, 1 welcome: ParseHandshake of the rest (and of its prefixes);
//             2 active message: [u16 LE AM header length][AM header][AM data];
//             3 gRPC fallback: a serialized ActivationBatch with the payload in `data`.
//   bit 2: make the frame prefix's lengths (or data_bytes) match what came;
//   bit 3: set the batch's CRC-32 to the payload's;
//   bit 4: set the hidden size to the shard's and size the payload to the blocks' rows.
// Invariants: a parsed handshake re-encodes to the same bytes and each proper prefix of it is
// "need more"; a decoded prefix re-encodes to the same 32 bytes; a frame that passes the layout
// check has lengths that add up within the limit; a decoded batch has rows x hidden values, blocks
// inside their documented ranges, and re-encodes to the same header blocks and payload bytes.
#include <cmath>
#include <cstring>
#include <string>

#include "absl/strings/string_view.h"
#include "clients/grpc/wire_convert.h"
#include "google/protobuf/util/message_differencer.h"
#include "services/shard/activation_codec.h"
#include "tests/fuzz/fuzz_util.h"
#include "transport/wire_format.h"

namespace verdict::fuzz {

constexpr int kFixLengths = 4;
constexpr int kFixCrc = 8;
constexpr int kFixShape = 16;

namespace {

namespace tw = transport::internal;

constexpr int64_t kHidden = 8;
constexpr int64_t kVocab = 64;
constexpr uint64_t kMaxFrameBytes = 1 << 20;
constexpr size_t kMaxFixedPayload = 64 << 10;

void CheckHandshake(const char* magic, absl::string_view bytes) {
  absl::StatusOr<std::optional<tw::Handshake>> parsed = tw::ParseHandshake(magic, bytes);
  if (!parsed.ok()) {
    FUZZ_CHECK(parsed.status().code() == absl::StatusCode::kDataLoss, parsed.status().ToString());
    return;
  }
  if (!parsed->has_value()) {
    FUZZ_CHECK(bytes.size() < tw::kHandshakeHeaderBytes + tw::kMaxWorkerAddressBytes, "need more past the limit");
    return;
  }
  const tw::Handshake& h = **parsed;
  FUZZ_CHECK(h.worker_address.size() <= tw::kMaxWorkerAddressBytes);
  FUZZ_CHECK(tw::EncodeHandshake(magic, h) == bytes, "a parsed handshake does not re-encode to its bytes");
  // The receiver parses what has arrived so far: every proper prefix asks for more.
  for (size_t cut : {size_t{0}, size_t{1}, size_t{7}, size_t{8}, tw::kHandshakeHeaderBytes - 1,
                     tw::kHandshakeHeaderBytes, bytes.size() - 1}) {
    if (cut >= bytes.size()) continue;
    absl::StatusOr<std::optional<tw::Handshake>> part = tw::ParseHandshake(magic, bytes.substr(0, cut));
    FUZZ_CHECK(part.ok() && !part->has_value(), "a prefix of a valid handshake of ", cut, " bytes was refused");
  }
}

bool SameFloats(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) && std::isnan(b[i])) continue;
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) return false;
  }
  return true;
}

void ApplyFixes(int mode, v1::ActivationBatch* header, std::string* payload) {
  if (mode & kFixShape) {
    header->set_hidden_size(static_cast<int32_t>(kHidden));
    uint64_t rows = 0;
    for (const v1::BlockHeader& b : header->blocks()) rows += b.num_tokens() > 0 ? static_cast<uint64_t>(b.num_tokens()) : 0;
    const uint64_t element = header->dtype() == v1::ACTIVATION_DTYPE_BF16 ? 2 : 4;
    if (rows * kHidden * element <= kMaxFixedPayload) payload->resize(rows * kHidden * element, '\x3f');
  }
  if (mode & kFixLengths) header->set_data_bytes(payload->size());
  if (mode & kFixCrc) header->set_crc32(services::Crc32(*payload));
}

// What the shard's service does with a batch (HandleActivations), with the invariants of success.
void CheckDecode(const v1::ActivationBatch& header, const std::string& payload) {
  absl::StatusOr<workers::ShardBatch> batch = services::DecodeActivations(header, payload, kHidden, kVocab);
  if (!batch.ok()) {
    const absl::StatusCode code = batch.status().code();
    FUZZ_CHECK(code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kDataLoss,
               batch.status().ToString());
    return;
  }
  FUZZ_CHECK(header.hidden_size() == kHidden);
  FUZZ_CHECK(static_cast<int>(batch->blocks.size()) == header.blocks_size());
  int64_t rows = 0;
  for (const spec::ShardBlock& b : batch->blocks) {
    FUZZ_CHECK(b.num_tokens >= 1 && b.start_position >= 0, "block ", b.num_tokens, " at ", b.start_position);
    FUZZ_CHECK(static_cast<int64_t>(b.draft.tokens.size()) <= spec::kMaxDraftTokens);
    for (int32_t t : b.draft.tokens) FUZZ_CHECK(t >= 0 && t < kVocab, "draft token ", t);
    rows += b.num_tokens;
  }
  FUZZ_CHECK(static_cast<int64_t>(batch->activations.size()) == rows * kHidden, "activations ",
             batch->activations.size(), " for ", rows, " rows");
  FUZZ_CHECK(batch->token_ids.empty());
  // What a shard decodes, it encodes again to the same bytes (the next hop's view of it).
  const services::EncodedActivations again =
      services::EncodeActivations(*batch, header.from_shard(), kHidden, header.dtype());
  if (header.dtype() == v1::ACTIVATION_DTYPE_F32) {
    FUZZ_CHECK(again.payload == payload, "f32 activations do not re-encode to the same bytes");
  }
  FUZZ_CHECK(again.payload.size() == payload.size());
  absl::StatusOr<workers::ShardBatch> twice = services::DecodeActivations(again.header, again.payload, kHidden, kVocab);
  FUZZ_CHECK(twice.ok(), twice.status().ToString());
  FUZZ_CHECK(SameFloats(twice->activations, batch->activations), "activations changed on a round trip");
  FUZZ_CHECK(twice->blocks.size() == batch->blocks.size());
  for (size_t i = 0; i < batch->blocks.size(); ++i) {
    const spec::ShardBlock& a = batch->blocks[i];
    const spec::ShardBlock& b = twice->blocks[i];
    FUZZ_CHECK(a.session_id == b.session_id && a.step == b.step && a.start_position == b.start_position &&
                   a.num_tokens == b.num_tokens && a.verify == b.verify && a.draft.tokens == b.draft.tokens,
               "block ", i, " changed on a round trip");
  }
}

void CheckFrame(int mode, absl::string_view rest) {
  if (rest.size() < 2) return;
  const size_t am_length = std::min<size_t>(static_cast<uint8_t>(rest[0]) | static_cast<uint8_t>(rest[1]) << 8,
                                            rest.size() - 2);
  std::string am_header(rest.substr(2, am_length));
  const std::string data(rest.substr(2 + am_length));
  if ((mode & kFixLengths) && am_header.size() >= tw::kFramePrefixBytes) {
    // Rewrite the prefix's lengths to what came, keeping its flags and sequence.
    absl::StatusOr<tw::FramePrefix> p = tw::DecodeFramePrefix(am_header);
    if (p.ok()) {
      if (p->flags & tw::kHeaderInData) {
        p->header_bytes = std::min<uint64_t>(p->header_bytes, data.size());
        p->payload_bytes = data.size() - p->header_bytes;
        am_header.resize(tw::kFramePrefixBytes);
      } else {
        p->header_bytes = am_header.size() - tw::kFramePrefixBytes;
        p->payload_bytes = data.size();
      }
      std::string fixed;
      tw::AppendFramePrefix(*p, &fixed);
      am_header.replace(0, tw::kFramePrefixBytes, fixed);
    }
  }
  absl::StatusOr<tw::FramePrefix> prefix = tw::DecodeFramePrefix(am_header);
  if (!prefix.ok()) {
    FUZZ_CHECK(prefix.status().code() == absl::StatusCode::kDataLoss, prefix.status().ToString());
    return;
  }
  std::string encoded;
  tw::AppendFramePrefix(*prefix, &encoded);
  FUZZ_CHECK(encoded == am_header.substr(0, tw::kFramePrefixBytes), "a decoded prefix does not re-encode");
  const absl::Status layout = tw::CheckFrameLayout(*prefix, am_header.size(), data.size(), kMaxFrameBytes);
  if (!layout.ok()) {
    FUZZ_CHECK(layout.code() == absl::StatusCode::kDataLoss, layout.ToString());
    return;
  }
  const bool in_data = (prefix->flags & tw::kHeaderInData) != 0;
  FUZZ_CHECK(prefix->header_bytes + prefix->payload_bytes <= kMaxFrameBytes);
  FUZZ_CHECK(am_header.size() + data.size() == tw::kFramePrefixBytes + prefix->header_bytes + prefix->payload_bytes,
             "the layout check passed lengths that do not add up");
  // The receiver's split (UcxReceiver, eager data) and the shard's HandleActivationFrame.
  std::string header_bytes = in_data ? data.substr(0, prefix->header_bytes) : am_header.substr(tw::kFramePrefixBytes);
  std::string payload = data.substr(in_data ? prefix->header_bytes : 0);
  FUZZ_CHECK(header_bytes.size() == prefix->header_bytes && payload.size() == prefix->payload_bytes);
  v1::ActivationBatch header;
  if (!header.ParseFromString(header_bytes)) return;
  ApplyFixes(mode, &header, &payload);
  CheckDecode(header, payload);
}

}  // namespace
}  // namespace verdict::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace verdict::fuzz;  // NOLINT
  static const bool quiet = (QuietProtobufLogs(), true);
  (void)quiet;
  if (size < 1) return 0;
  const int mode = data[0];
  const absl::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (mode & 3) {
    case 0: CheckHandshake(tw::kHelloMagic, rest); break;
    case 1: CheckHandshake(tw::kWelcomeMagic, rest); break;
    case 2: CheckFrame(mode, rest); break;
    default: {
      verdict::v1::ActivationBatch batch;
      if (!batch.ParseFromArray(rest.data(), static_cast<int>(rest.size()))) return -1;
      std::string payload = batch.data();
      ApplyFixes(mode, &batch, &payload);
      CheckDecode(batch, payload);
      break;
    }
  }
  return 0;
}

// Valid inputs of each path: the corpus's seeds (tests/fuzz/fuzz_driver.cc --write-seeds).
std::vector<std::string> VerdictFuzzSeeds() {
  using namespace verdict;  // NOLINT
  namespace tw = transport::internal;
  std::vector<std::string> seeds;
  for (const char* magic : {tw::kHelloMagic, tw::kWelcomeMagic}) {
    tw::Handshake h;
    h.worker_address = std::string("\x01\x02ucp-worker-address\x00\xff", 22);
    seeds.push_back(std::string(1, magic == tw::kHelloMagic ? '\0' : '\1') + tw::EncodeHandshake(magic, h));
  }
  workers::ShardBatch batch;
  for (int i = 0; i < 2; ++i) {
    spec::ShardBlock b;
    b.session_id = spec::SessionId(7 + i);
    b.step = 3;
    b.start_position = 5 * i;
    b.num_tokens = 3 + i;
    b.verify = true;
    b.draft.tokens = {1, 2};
    b.draft.logprobs = {-0.5f, -1.5f};
    batch.blocks.push_back(b);
  }
  for (int i = 0; i < 7 * 8; ++i) batch.activations.push_back(0.25f * static_cast<float>(i) - 3.0f);
  for (v1::ActivationDType dtype : {v1::ACTIVATION_DTYPE_F32, v1::ACTIVATION_DTYPE_BF16}) {
    services::EncodedActivations e = services::EncodeActivations(batch, 0, 8, dtype);
    for (bool in_data : {false, true}) {
      const std::string header = e.header.SerializeAsString();
      tw::FramePrefix p;
      p.flags = in_data ? tw::kHeaderInData : 0;
      p.sequence = 4;
      p.header_bytes = header.size();
      p.payload_bytes = e.payload.size();
      std::string am;
      tw::AppendFramePrefix(p, &am);
      if (!in_data) am += header;
      const std::string body = in_data ? header + e.payload : e.payload;
      std::string seed(1, static_cast<char>(2));
      seed.push_back(static_cast<char>(am.size() & 0xff));
      seed.push_back(static_cast<char>(am.size() >> 8));
      seeds.push_back(seed + am + body);
    }
    v1::ActivationBatch grpc = e.header;
    grpc.set_data(e.payload);
    seeds.push_back(std::string(1, static_cast<char>(3)) + grpc.SerializeAsString());
    seeds.push_back(std::string(1, static_cast<char>(3 | fuzz::kFixLengths | fuzz::kFixCrc | fuzz::kFixShape)) + grpc.SerializeAsString());
  }
  return seeds;
}

// Structure-aware: the ActivationBatch inside a gRPC fallback input or inside an active message's
// header is mutated through protobuf reflection; the selector byte's fix-ups are flipped now and
// then; the rest is libFuzzer's byte-level mutation.
extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned int seed) {
  using namespace verdict;  // NOLINT
  fuzz::ProtoMutator m(seed);
  if (size < 1 || m.OneIn(4)) return LLVMFuzzerMutate(data, size, max_size);
  if (m.OneIn(8)) {
    data[0] ^= static_cast<uint8_t>(1u << m.Below(5));
    return size;
  }
  const int kind = data[0] & 3;
  std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  v1::ActivationBatch batch;
  if (kind == 3) {
    (void)batch.ParsePartialFromString(rest);
    m.Mutate(&batch);
    return fuzz::Emit(std::string(1, static_cast<char>(data[0])) + batch.SerializePartialAsString(), data, max_size);
  }
  if (kind == 2 && rest.size() >= 2) {
    const size_t am_length = std::min<size_t>(static_cast<uint8_t>(rest[0]) | static_cast<uint8_t>(rest[1]) << 8,
                                              rest.size() - 2);
    namespace tw = transport::internal;
    if (am_length >= tw::kFramePrefixBytes) {
      std::string am = rest.substr(2, am_length);
      const std::string body = rest.substr(2 + am_length);
      (void)batch.ParsePartialFromString(am.substr(tw::kFramePrefixBytes));
      m.Mutate(&batch);
      am = am.substr(0, tw::kFramePrefixBytes) + batch.SerializePartialAsString();
      if (am.size() > 0xffff) return LLVMFuzzerMutate(data, size, max_size);
      std::string out(1, static_cast<char>(data[0]));
      out.push_back(static_cast<char>(am.size() & 0xff));
      out.push_back(static_cast<char>(am.size() >> 8));
      return fuzz::Emit(out + am + body, data, max_size);
    }
  }
  return LLVMFuzzerMutate(data, size, max_size);
}
