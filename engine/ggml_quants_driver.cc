// SPDX-License-Identifier: Apache-2.0
// Test driver for tools/ggml_quants_reference_test.py: dequantizes a file of GGML blocks with
// engine/ggml_quants.h and writes the values as little-endian f32.
//   ggml_quants_driver TYPE BLOCKS.bin OUT.f32     (TYPE: q4_0 q4_1 q5_0 q5_1 q4_k q5_k q6_k)
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "engine/ggml_quants.h"

int main(int argc, char** argv) {
  using verdict::engine::DType;
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s TYPE BLOCKS.bin OUT.f32\n", argv[0]);
    return 2;
  }
  const std::string name = argv[1];
  DType dtype = DType::kF32;
  for (DType d : {DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K}) {
    if (verdict::engine::DTypeName(d) == name) dtype = d;
  }
  if (!verdict::engine::IsGgmlBlockQuant(dtype)) {
    std::fprintf(stderr, "unknown type %s\n", name.c_str());
    return 2;
  }
  std::ifstream in(argv[2], std::ios::binary);
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t block_bytes = verdict::engine::GgmlBlockBytes(dtype);
  if (!in.eof() && !in.good()) return 1;
  if (bytes.size() % block_bytes != 0) {
    std::fprintf(stderr, "%zu bytes are not whole %s blocks of %zu\n", bytes.size(), name.c_str(), block_bytes);
    return 1;
  }
  const int64_t blocks = static_cast<int64_t>(bytes.size() / block_bytes);
  std::vector<float> out(static_cast<size_t>(blocks * verdict::engine::GgmlBlockValues(dtype)));
  verdict::engine::DequantizeGgmlBlocks(dtype, bytes.data(), blocks, out.data());
  std::ofstream(argv[3], std::ios::binary)
      .write(reinterpret_cast<const char*>(out.data()), static_cast<std::streamsize>(out.size() * sizeof(float)));
  return 0;
}
