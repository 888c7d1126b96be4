// SPDX-License-Identifier: Apache-2.0
// libFuzzer entry point for ParseSafetensorsHeader (optional; clang only, see CMakeLists.txt).
#include <cstddef>
#include <cstdint>

#include "engine/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = verdict::engine::ParseSafetensorsHeader(data, size, "fuzz");
  if (file.ok()) {
    volatile uint8_t sink = 0;
    for (const auto& t : file->tensors) {
      if (t.nbytes > 0) sink = static_cast<uint8_t>(sink + t.data[0] + t.data[t.nbytes - 1]);
    }
  }
  return 0;
}
