// SPDX-License-Identifier: Apache-2.0
// libFuzzer entry point for GgufFile::Parse and ConfigFromGguf (optional; clang only, see
// CMakeLists.txt).
#include <cstddef>
#include <cstdint>

#include "engine/io/gguf.h"
#include "engine/io/model_config_loader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = verdict::engine::GgufFile::Parse(data, size);
  if (!file.ok()) return 0;
  const verdict::engine::GgufFile& f = **file;
  volatile uint8_t sink = 0;
  for (const std::string& name : f.Names()) {
    const verdict::engine::WeightTensor* t = f.Find(name);
    if (t->nbytes > 0) sink = static_cast<uint8_t>(sink + t->data[0] + t->data[t->nbytes - 1]);
  }
  for (const std::string& key : f.MetadataKeys()) {
    const verdict::engine::GgufValue* v = f.FindMetadata(key);
    (void)v->AsInt();
    (void)v->AsFloat();
    (void)v->AsString();
    (void)v->AsStringArray();
    (void)v->AsFloatArray();
    (void)v->AsIntArray();
    (void)v->DebugString();
  }
  (void)verdict::engine::ConfigFromGguf(f);
  return 0;
}
