// SPDX-License-Identifier: Apache-2.0
#include "engine/io/safetensors_writer.h"

#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/testing/status_matchers.h"
#include "engine/dtype.h"
#include "engine/io/io_test_util.h"
#include "engine/io/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace verdict::engine {
namespace {

using io_testing::ReadFileBytes;
using io_testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;
using ::verdict::testing::StatusIs;

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

template <typename T>
absl::Span<const uint8_t> Bytes(const std::vector<T>& v) {
  return absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(v.data()),
                                   v.size() * sizeof(T));
}

// A fixed set of tensors of every supported dtype (kept alive by the struct).
struct Sample {
  std::vector<float> f32 = {1.5f, -2.25f, 3.0f, 0.0f, 1e-3f, -7.0f};
  std::vector<uint16_t> bf16 = {F32ToBf16(0.5f), F32ToBf16(-1.0f), F32ToBf16(2.75f),
                                F32ToBf16(100.0f)};
  std::vector<uint16_t> f16 = {F32ToF16(0.25f), F32ToF16(-3.5f), F32ToF16(65504.0f)};
  std::vector<int32_t> i32 = {7, -1, 0, 2147483647, -2147483647 - 1};
  std::vector<TensorToWrite> tensors;
  Sample() {
    // Deliberately not in name order: the writer sorts.
    tensors.push_back({"z.weight", DType::kF32, {2, 3}, Bytes(f32)});
    tensors.push_back({"a.bf16", DType::kBF16, {2, 2}, Bytes(bf16)});
    tensors.push_back({"m.f16", DType::kF16, {3}, Bytes(f16)});
    tensors.push_back({"labels", DType::kI32, {5}, Bytes(i32)});
  }
};

const std::map<std::string, std::string> kMetadata = {{"format", "pt"},
                                                      {"note", "quote \" and ü"}};

TEST(SafetensorsWriterTest, RoundTripsThroughOurReader) {
  TempDir dir;
  const std::string path = dir.File("out.safetensors");
  Sample s;
  ASSERT_OK(WriteSafetensors(path, s.tensors, kMetadata));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  const std::vector<uint8_t> bytes = ReadFileBytes(path);
  ASSERT_OK_AND_ASSIGN(SafetensorsFile file,
                       ParseSafetensorsHeader(bytes.data(), bytes.size(), path));
  EXPECT_EQ(file.metadata, kMetadata);
  EXPECT_EQ(file.data_offset % 8, 0u);
  ASSERT_EQ(file.tensors.size(), 4u);
  // Data laid out in name order, contiguously, from the start of the data section.
  const uint8_t* expected_data = bytes.data() + file.data_offset;
  for (const WeightTensor& t : file.tensors) {
    EXPECT_EQ(t.data, expected_data) << t.name;
    expected_data += t.nbytes;
  }
  EXPECT_EQ(expected_data, bytes.data() + bytes.size());

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<WeightSource> src, OpenSafetensors(path));
  EXPECT_THAT(src->Names(), ElementsAre("a.bf16", "labels", "m.f16", "z.weight"));
  for (const TensorToWrite& want : s.tensors) {
    const WeightTensor* got = src->Find(want.name);
    ASSERT_NE(got, nullptr) << want.name;
    EXPECT_EQ(got->dtype, want.dtype) << want.name;
    EXPECT_EQ(got->shape, want.shape) << want.name;
    ASSERT_EQ(got->nbytes, want.data.size()) << want.name;
    EXPECT_EQ(std::memcmp(got->data, want.data.data(), got->nbytes), 0) << want.name;
  }
}

TEST(SafetensorsWriterTest, HeaderIsSpacePaddedJson) {
  TempDir dir;
  const std::string path = dir.File("out.safetensors");
  std::vector<float> one = {1.0f};
  ASSERT_OK(WriteSafetensors(path, {{"x", DType::kF32, {1}, Bytes(one)}}, {}));
  const std::vector<uint8_t> bytes = ReadFileBytes(path);
  ASSERT_GE(bytes.size(), 8u);
  uint64_t len = 0;
  for (int i = 0; i < 8; ++i) len |= static_cast<uint64_t>(bytes[i]) << (8 * i);
  EXPECT_EQ(len % 8, 0u);
  ASSERT_EQ(bytes.size(), 8 + len + 4);
  const std::string header(bytes.begin() + 8, bytes.begin() + 8 + len);
  const nlohmann::json j = nlohmann::json::parse(header);
  EXPECT_FALSE(j.contains("__metadata__"));  // no metadata given
  EXPECT_EQ(j["x"]["dtype"], "F32");
  EXPECT_EQ(j["x"]["data_offsets"], nlohmann::json::array({0, 4}));
  EXPECT_EQ(header.find_last_not_of(' ') + 1, header.rfind('}') + 1);
}

TEST(SafetensorsWriterTest, WritesScalarsAndEmptyTensorsAndNoTensors) {
  TempDir dir;
  std::vector<float> scalar = {42.0f};
  std::vector<float> none;
  const std::string path = dir.File("a.safetensors");
  ASSERT_OK(WriteSafetensors(path,
                             {{"scalar", DType::kF32, {}, Bytes(scalar)},
                              {"empty", DType::kF32, {0, 3}, Bytes(none)}},
                             {}));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<WeightSource> src, OpenSafetensors(path));
  ASSERT_NE(src->Find("scalar"), nullptr);
  EXPECT_TRUE(src->Find("scalar")->shape.empty());
  ASSERT_NE(src->Find("empty"), nullptr);
  EXPECT_EQ(src->Find("empty")->nbytes, 0u);

  const std::string meta_only = dir.File("b.safetensors");
  ASSERT_OK(WriteSafetensors(meta_only, {}, {{"k", "v"}}));
  const std::vector<uint8_t> bytes = ReadFileBytes(meta_only);
  ASSERT_OK_AND_ASSIGN(SafetensorsFile file,
                       ParseSafetensorsHeader(bytes.data(), bytes.size(), meta_only));
  EXPECT_TRUE(file.tensors.empty());
  EXPECT_THAT(file.metadata, ElementsAre(Pair("k", "v")));
}

TEST(SafetensorsWriterTest, ReplacesExistingFile) {
  TempDir dir;
  const std::string path = dir.File("out.safetensors");
  io_testing::WriteFileText(path, "old contents");
  std::vector<int32_t> v = {1, 2};
  ASSERT_OK(WriteSafetensors(path, {{"v", DType::kI32, {2}, Bytes(v)}}, {}));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<WeightSource> src, OpenSafetensors(path));
  EXPECT_NE(src->Find("v"), nullptr);
}

TEST(SafetensorsWriterTest, RejectsBadInputAndLeavesNothingBehind) {
  TempDir dir;
  const std::string path = dir.File("bad.safetensors");
  std::vector<float> six(6, 1.0f);
  std::vector<uint8_t> q8(34, 0);
  EXPECT_THAT(WriteSafetensors(path, {{"x", DType::kF32, {2, 2}, Bytes(six)}}, {}),
              StatusIs(kInvalid, HasSubstr("needs 16")));
  EXPECT_THAT(WriteSafetensors(path, {{"x", DType::kF32, {7}, Bytes(six)}}, {}),
              StatusIs(kInvalid, HasSubstr(path)));
  EXPECT_THAT(WriteSafetensors(path, {{"x", DType::kBF16, {6}, Bytes(six)}}, {}),
              StatusIs(kInvalid));
  EXPECT_THAT(WriteSafetensors(path,
                               {{"x", DType::kF32, {6}, Bytes(six)},
                                {"x", DType::kF32, {6}, Bytes(six)}},
                               {}),
              StatusIs(kInvalid, HasSubstr("twice")));
  EXPECT_THAT(WriteSafetensors(path, {{"", DType::kF32, {6}, Bytes(six)}}, {}),
              StatusIs(kInvalid));
  EXPECT_THAT(WriteSafetensors(path, {{"__metadata__", DType::kF32, {6}, Bytes(six)}}, {}),
              StatusIs(kInvalid));
  EXPECT_THAT(WriteSafetensors(path, {{"x", DType::kF32, {-1, -6}, Bytes(six)}}, {}),
              StatusIs(kInvalid, HasSubstr("negative")));
  EXPECT_THAT(WriteSafetensors(path, {{"q", DType::kQ8_0, {32}, Bytes(q8)}}, {}),
              StatusIs(kInvalid, HasSubstr("cannot be written")));
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(SafetensorsWriterTest, ReportsUnwritablePaths) {
  TempDir dir;
  std::vector<float> one = {1.0f};
  const std::string missing = dir.File("no/such/dir/x.safetensors");
  EXPECT_THAT(WriteSafetensors(missing, {{"x", DType::kF32, {1}, Bytes(one)}}, {}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(missing)));
  // The target is a non-empty directory: the rename fails and the temporary file is removed.
  const std::string target = dir.File("occupied");
  std::filesystem::create_directories(target + "/child");
  EXPECT_THAT(WriteSafetensors(target, {{"x", DType::kF32, {1}, Bytes(one)}}, {}),
              StatusIs(absl::StatusCode::kInternal, HasSubstr(target)));
  EXPECT_FALSE(std::filesystem::exists(target + ".tmp"));
}

// Cross-check with the reference implementation (Hugging Face `safetensors`, via the project
// venv): it must load our file and see the same names, dtypes, shapes, values and metadata.
TEST(SafetensorsWriterTest, ReferencePythonLibraryReadsOurFile) {
  const std::string python = std::string(VERDICT_SOURCE_DIR) + "/.venv/bin/python";
  if (!std::filesystem::exists(python)) GTEST_SKIP() << "no Python venv at " << python;
  TempDir dir;
  const std::string path = dir.File("out.safetensors");
  Sample s;
  ASSERT_OK(WriteSafetensors(path, s.tensors, kMetadata));

  const std::string script =
      "import json, sys\n"
      "from safetensors import safe_open\n"
      "out = {'tensors': {}}\n"
      "with safe_open(sys.argv[1], framework='pt') as f:\n"
      "    out['metadata'] = f.metadata()\n"
      "    for k in f.keys():\n"
      "        t = f.get_tensor(k)\n"
      "        out['tensors'][k] = {'dtype': str(t.dtype), 'shape': list(t.shape),\n"
      "                             'values': t.double().flatten().tolist()}\n"
      "print(json.dumps(out))\n";
  const std::string script_path = dir.File("check.py");
  io_testing::WriteFileText(script_path, script);
  const std::string cmd = python + " " + script_path + " " + path + " 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) output.append(buf, n);
  const int rc = ::pclose(pipe);
  if (rc != 0 && output.find("No module named") != std::string::npos) {
    GTEST_SKIP() << "the venv lacks safetensors/torch: " << output;
  }
  ASSERT_EQ(rc, 0) << output;
  const nlohmann::json got = nlohmann::json::parse(output, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(got.is_discarded()) << output;

  EXPECT_EQ((got["metadata"].get<std::map<std::string, std::string>>()), kMetadata);
  const nlohmann::json& t = got["tensors"];
  ASSERT_EQ(t.size(), 4u) << output;
  EXPECT_EQ(t["z.weight"]["dtype"], "torch.float32");
  EXPECT_EQ(t["z.weight"]["shape"], nlohmann::json::array({2, 3}));
  EXPECT_EQ(t["a.bf16"]["dtype"], "torch.bfloat16");
  EXPECT_EQ(t["a.bf16"]["shape"], nlohmann::json::array({2, 2}));
  EXPECT_EQ(t["m.f16"]["dtype"], "torch.float16");
  EXPECT_EQ(t["m.f16"]["shape"], nlohmann::json::array({3}));
  EXPECT_EQ(t["labels"]["dtype"], "torch.int32");
  EXPECT_EQ(t["labels"]["shape"], nlohmann::json::array({5}));
  std::vector<double> want;
  for (float f : s.f32) want.push_back(f);
  EXPECT_EQ(t["z.weight"]["values"].get<std::vector<double>>(), want);
  EXPECT_EQ(t["a.bf16"]["values"].get<std::vector<double>>(),
            (std::vector<double>{0.5, -1.0, 2.75, 100.0}));
  EXPECT_EQ(t["m.f16"]["values"].get<std::vector<double>>(),
            (std::vector<double>{0.25, -3.5, 65504.0}));
  want.clear();
  for (int32_t v : s.i32) want.push_back(v);
  EXPECT_EQ(t["labels"]["values"].get<std::vector<double>>(), want);
}

}  // namespace
}  // namespace verdict::engine
