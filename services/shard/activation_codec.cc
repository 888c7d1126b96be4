// SPDX-License-Identifier: Apache-2.0
#include "services/shard/activation_codec.h"

#include <zlib.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/dtype.h"
#include "clients/grpc/wire_convert.h"

namespace verdict::services {

uint32_t Crc32(absl::string_view bytes) {
  return static_cast<uint32_t>(crc32_z(0L, reinterpret_cast<const Bytef*>(bytes.data()), bytes.size()));
}

EncodedActivations EncodeActivations(const workers::ShardBatch& batch, int from_shard, int64_t hidden_size,
                                     v1::ActivationDType dtype) {
  EncodedActivations out;
  v1::ActivationBatch& h = out.header;
  h.set_from_shard(from_shard);
  h.set_hidden_size(static_cast<int32_t>(hidden_size));
  h.set_dtype(dtype == v1::ACTIVATION_DTYPE_BF16 ? v1::ACTIVATION_DTYPE_BF16 : v1::ACTIVATION_DTYPE_F32);
  for (const spec::ShardBlock& b : batch.blocks) wire::ToProto(b, h.add_blocks());
  const std::vector<float>& a = batch.activations;
  if (h.dtype() == v1::ACTIVATION_DTYPE_BF16) {
    out.payload.resize(a.size() * sizeof(uint16_t));
    for (size_t i = 0; i < a.size(); ++i) {
      const uint16_t v = engine::F32ToBf16(a[i]);
      std::memcpy(out.payload.data() + 2 * i, &v, sizeof(v));
    }
  } else {
    out.payload.assign(reinterpret_cast<const char*>(a.data()), a.size() * sizeof(float));
  }
  h.set_data_bytes(out.payload.size());
  h.set_crc32(Crc32(out.payload));
  return out;
}

absl::StatusOr<workers::ShardBatch> DecodeActivations(const v1::ActivationBatch& header, absl::string_view payload,
                                                      int64_t hidden_size, int64_t vocab_size) {
  if (header.hidden_size() != hidden_size) {
    return absl::InvalidArgumentError(absl::StrCat("activations of hidden size ", header.hidden_size(),
                                                   " reached a shard of hidden size ", hidden_size));
  }
  size_t element;
  switch (header.dtype()) {
    case v1::ACTIVATION_DTYPE_F32: element = sizeof(float); break;
    case v1::ACTIVATION_DTYPE_BF16: element = sizeof(uint16_t); break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("unknown activation dtype ", static_cast<int>(header.dtype())));
  }
  if (header.data_bytes() != payload.size()) {
    return absl::DataLossError(absl::StrCat("the activation payload has ", payload.size(), " bytes, its header says ",
                                            header.data_bytes()));
  }
  if (Crc32(payload) != header.crc32()) return absl::DataLossError("the activation payload fails its CRC-32 check");
  workers::ShardBatch batch;
  int64_t rows = 0;
  for (const v1::BlockHeader& b : header.blocks()) {
    VERDICT_ASSIGN_OR_RETURN(spec::ShardBlock block, wire::FromProto(b, vocab_size));
    rows += block.num_tokens;
    batch.blocks.push_back(std::move(block));
  }
  // Divide rather than multiply: the rows of a hostile header (each block up to 2^31 - 1) times the
  // row size can wrap around 2^64 onto the payload's length, and the activations would then be
  // sized from the wrapped product.
  const uint64_t row_bytes = static_cast<uint64_t>(hidden_size) * element;
  if (row_bytes == 0 || payload.size() % row_bytes != 0 || static_cast<uint64_t>(rows) != payload.size() / row_bytes) {
    return absl::DataLossError(absl::StrCat("the blocks have ", rows, " rows of ", hidden_size, " values but ",
                                            payload.size(), " bytes came"));
  }
  const size_t n = static_cast<size_t>(rows * hidden_size);
  batch.activations.resize(n);
  if (n == 0) return batch;  // no rows: nothing to copy (memcpy from a null pointer is undefined)
  if (element == sizeof(float)) {
    std::memcpy(batch.activations.data(), payload.data(), n * sizeof(float));
  } else {
    for (size_t i = 0; i < n; ++i) {
      uint16_t v;
      std::memcpy(&v, payload.data() + 2 * i, sizeof(v));
      batch.activations[i] = engine::Bf16ToF32(v);
    }
  }
  return batch;
}

absl::StatusOr<workers::ShardBatch> DecodeForward(const v1::ForwardRequest& request, int64_t vocab_size) {
  VERDICT_ASSIGN_OR_RETURN(spec::ShardBlock block, wire::FromProto(request.header(), vocab_size));
  if (request.token_ids_size() != block.num_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("a block of ", block.num_tokens, " positions came with ",
                                                   request.token_ids_size(), " token ids"));
  }
  workers::ShardBatch batch;
  batch.token_ids.assign(request.token_ids().begin(), request.token_ids().end());
  batch.blocks.push_back(std::move(block));
  return batch;
}

}  // namespace verdict::services
