// SPDX-License-Identifier: Apache-2.0
#include "judge/dataset/judge_dataset.h"

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "common/testing/status_matchers.h"
#include "engine/dtype.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict::judge {
namespace {

using ::testing::HasSubstr;
using ::verdict::testing::StatusIs;

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;
constexpr absl::StatusCode kNotFound = absl::StatusCode::kNotFound;

class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl =
        std::string(base != nullptr && *base ? base : "/tmp") + "/verdict_judge_ds_XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    const char* dir = ::mkdtemp(buf.data());
    EXPECT_NE(dir, nullptr);
    path_ = dir != nullptr ? dir : "/tmp";
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}
void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

constexpr int64_t kHidden = 8;

// Deterministic, non-trivial feature values (not exactly representable in bf16).
float HiddenValue(int64_t row, int64_t i) {
  return std::sin(0.37f * row + 1.3f * i) * (1.0f + 0.01f * row) + 1e-3f * i;
}

DatasetSpec TestSpec(engine::DType dtype, int64_t rows_per_shard) {
  DatasetSpec spec;
  spec.hidden_size = kHidden;
  spec.extra_feature_names = {"draft_prob", "target_entropy"};
  spec.feature_dtype = dtype;
  spec.rows_per_shard = rows_per_shard;
  spec.info = {{"target_model", "assets/models/tiny-stories"}, {"fingerprint", "abc123"}};
  return spec;
}

RowInfo Info(int64_t row) {
  RowInfo info;
  info.group = static_cast<int32_t>(row / 3);  // three rows per example
  info.example_id = "ex-" + std::to_string(row / 3);
  info.position = static_cast<int32_t>(row % 3);
  info.token_id = static_cast<int32_t>(100 + row);
  info.token_text = row == 1 ? std::string("\xe2\x80") : " tok\"" + std::to_string(row);
  return info;
}

// Writes `rows` rows; row r has label r % 2 == 0.
void WriteDataset(const std::string& dir, const DatasetSpec& spec, int64_t rows) {
  ASSERT_OK_AND_ASSIGN(JudgeDatasetWriter writer, JudgeDatasetWriter::Create(dir, spec));
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<float> hidden(kHidden);
    for (int64_t i = 0; i < kHidden; ++i) hidden[i] = HiddenValue(r, i);
    const std::vector<float> extras = {0.5f + 0.001f * r, -2.0f * r};
    ASSERT_OK(writer.Add(hidden, extras, r % 2 == 0, Info(r)));
  }
  EXPECT_EQ(writer.rows(), rows);
  ASSERT_OK(writer.Finish());
}

void ExpectRoundTrip(const JudgeDataset& ds, const DatasetSpec& spec, int64_t rows, bool exact) {
  EXPECT_EQ(ds.rows, rows);
  EXPECT_EQ(ds.positives, (rows + 1) / 2);
  EXPECT_EQ(ds.spec.hidden_size, spec.hidden_size);
  EXPECT_EQ(ds.spec.extra_feature_names, spec.extra_feature_names);
  EXPECT_EQ(ds.spec.feature_dtype, spec.feature_dtype);
  EXPECT_EQ(ds.spec.info, spec.info);
  ASSERT_EQ(ds.hidden.size(), static_cast<size_t>(rows * kHidden));
  ASSERT_EQ(ds.extras.size(), static_cast<size_t>(rows * 2));
  ASSERT_EQ(ds.labels.size(), static_cast<size_t>(rows));
  ASSERT_EQ(ds.groups.size(), static_cast<size_t>(rows));
  ASSERT_EQ(ds.index.size(), static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < kHidden; ++i) {
      const float want = HiddenValue(r, i);
      const float got = ds.hidden[r * kHidden + i];
      if (exact) {
        ASSERT_EQ(got, want) << r << "," << i;
      } else {
        // bf16 keeps 8 significant bits: round-to-nearest error <= 2^-8 relative.
        ASSERT_NEAR(got, want, std::abs(want) * (1.0f / 256) + 1e-30f) << r << "," << i;
        ASSERT_EQ(got, engine::Bf16ToF32(engine::F32ToBf16(want)));
      }
    }
    EXPECT_EQ(ds.extras[2 * r], 0.5f + 0.001f * r);
    EXPECT_EQ(ds.extras[2 * r + 1], -2.0f * r);
    EXPECT_EQ(ds.labels[r], r % 2 == 0 ? 1 : 0);
    EXPECT_EQ(ds.groups[r], r / 3);
    const RowInfo want = Info(r);
    EXPECT_EQ(ds.index[r].group, want.group);
    EXPECT_EQ(ds.index[r].example_id, want.example_id);
    EXPECT_EQ(ds.index[r].position, want.position);
    EXPECT_EQ(ds.index[r].token_id, want.token_id);
    if (r != 1) {  // row 1: bad UTF-8
      EXPECT_EQ(ds.index[r].token_text, want.token_text);
    }
  }
}

TEST(JudgeDatasetTest, RoundTripF32IsExact) {
  TempDir tmp;
  const std::string dir = tmp.File("ds");
  const DatasetSpec spec = TestSpec(engine::DType::kF32, 1000);
  WriteDataset(dir, spec, 10);
  EXPECT_TRUE(std::filesystem::exists(dir + "/shard-00000.safetensors"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/shard-00001.safetensors"));
  ASSERT_OK_AND_ASSIGN(JudgeDataset ds, LoadJudgeDataset(dir));
  ExpectRoundTrip(ds, spec, 10, /*exact=*/true);
}

TEST(JudgeDatasetTest, RoundTripBf16WithinRounding) {
  TempDir tmp;
  const std::string dir = tmp.File("ds");
  const DatasetSpec spec = TestSpec(engine::DType::kBF16, 1000);
  WriteDataset(dir, spec, 10);
  ASSERT_OK_AND_ASSIGN(JudgeDataset ds, LoadJudgeDataset(dir));
  ExpectRoundTrip(ds, spec, 10, /*exact=*/false);
}

TEST(JudgeDatasetTest, MultipleShards) {
  TempDir tmp;
  const std::string dir = tmp.File("ds");
  const DatasetSpec spec = TestSpec(engine::DType::kF32, 4);
  WriteDataset(dir, spec, 11);  // 4 + 4 + 3
  for (const char* f : {"shard-00000", "shard-00001", "shard-00002"}) {
    EXPECT_TRUE(std::filesystem::exists(dir + "/" + f + ".safetensors")) << f;
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/shard-00003.safetensors"));
  const nlohmann::json manifest = nlohmann::json::parse(ReadText(dir + "/dataset.json"));
  EXPECT_EQ(manifest["shards"].size(), 3u);
  EXPECT_EQ(manifest["shards"][2]["rows"], 3);
  EXPECT_EQ(manifest["total_rows"], 11);
  EXPECT_EQ(manifest["positive_count"], 6);
  ASSERT_OK_AND_ASSIGN(JudgeDataset ds, LoadJudgeDataset(dir));
  ExpectRoundTrip(ds, spec, 11, /*exact=*/true);
}

TEST(JudgeDatasetTest, EmptyDatasetAndNoExtras) {
  TempDir tmp;
  DatasetSpec spec = TestSpec(engine::DType::kBF16, 4);
  spec.extra_feature_names.clear();
  {
    ASSERT_OK_AND_ASSIGN(JudgeDatasetWriter w, JudgeDatasetWriter::Create(tmp.File("a"), spec));
    ASSERT_OK(w.Finish());
  }
  ASSERT_OK_AND_ASSIGN(JudgeDataset empty, LoadJudgeDataset(tmp.File("a")));
  EXPECT_EQ(empty.rows, 0);
  ASSERT_OK_AND_ASSIGN(JudgeDatasetWriter w, JudgeDatasetWriter::Create(tmp.File("b"), spec));
  const std::vector<float> hidden(kHidden, 1.0f);
  ASSERT_OK(w.Add(hidden, {}, true, Info(0)));
  ASSERT_OK(w.Finish());
  ASSERT_OK_AND_ASSIGN(JudgeDataset one, LoadJudgeDataset(tmp.File("b")));
  EXPECT_EQ(one.rows, 1);
  EXPECT_TRUE(one.extras.empty());
  EXPECT_EQ(one.positives, 1);
}

TEST(JudgeDatasetTest, CreateRefusesExistingDatasetUnlessOverwrite) {
  TempDir tmp;
  const std::string dir = tmp.File("ds");
  DatasetSpec spec = TestSpec(engine::DType::kF32, 4);
  WriteDataset(dir, spec, 9);
  EXPECT_THAT(JudgeDatasetWriter::Create(dir, spec).status(),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr(dir)));
  spec.overwrite = true;
  {
    ASSERT_OK_AND_ASSIGN(JudgeDatasetWriter w, JudgeDatasetWriter::Create(dir, spec));
    EXPECT_FALSE(std::filesystem::exists(dir + "/dataset.json"));
    EXPECT_FALSE(std::filesystem::exists(dir + "/shard-00002.safetensors"));
    const std::vector<float> hidden(kHidden, 2.0f);
    ASSERT_OK(w.Add(hidden, {1.0f, 2.0f}, false, Info(0)));
    ASSERT_OK(w.Finish());
  }
  ASSERT_OK_AND_ASSIGN(JudgeDataset ds, LoadJudgeDataset(dir));
  EXPECT_EQ(ds.rows, 1);
}

TEST(JudgeDatasetTest, WriterRejectsBadInput) {
  TempDir tmp;
  DatasetSpec bad = TestSpec(engine::DType::kF32, 4);
  bad.hidden_size = 0;
  EXPECT_THAT(JudgeDatasetWriter::Create(tmp.File("x"), bad).status(), StatusIs(kInvalid));
  bad = TestSpec(engine::DType::kF16, 4);
  EXPECT_THAT(JudgeDatasetWriter::Create(tmp.File("x"), bad).status(), StatusIs(kInvalid));
  bad = TestSpec(engine::DType::kF32, 0);
  EXPECT_THAT(JudgeDatasetWriter::Create(tmp.File("x"), bad).status(), StatusIs(kInvalid));
  bad = TestSpec(engine::DType::kF32, 4);
  bad.extra_feature_names = {"a", "a"};
  EXPECT_THAT(JudgeDatasetWriter::Create(tmp.File("x"), bad).status(),
              StatusIs(kInvalid, HasSubstr("twice")));
  bad = TestSpec(engine::DType::kF32, 4);
  bad.info = nlohmann::json::array();
  EXPECT_THAT(JudgeDatasetWriter::Create(tmp.File("x"), bad).status(), StatusIs(kInvalid));

  ASSERT_OK_AND_ASSIGN(JudgeDatasetWriter w, JudgeDatasetWriter::Create(
                                                 tmp.File("ok"), TestSpec(engine::DType::kF32, 4)));
  const std::vector<float> hidden(kHidden, 1.0f);
  const std::vector<float> short_hidden(kHidden - 1, 1.0f);
  const std::vector<float> extras = {1.0f, 2.0f};
  EXPECT_THAT(w.Add(short_hidden, extras, true, Info(0)), StatusIs(kInvalid, HasSubstr("hidden")));
  EXPECT_THAT(w.Add(hidden, {1.0f}, true, Info(0)), StatusIs(kInvalid, HasSubstr("extras")));
  std::vector<float> nan_hidden = hidden;
  nan_hidden[3] = std::nanf("");
  EXPECT_THAT(w.Add(nan_hidden, extras, true, Info(0)), StatusIs(kInvalid));
  RowInfo negative = Info(0);
  negative.group = -1;
  EXPECT_THAT(w.Add(hidden, extras, true, negative), StatusIs(kInvalid));
  EXPECT_EQ(w.rows(), 0);  // rejected rows leave the writer unchanged
  ASSERT_OK(w.Add(hidden, extras, true, Info(0)));
  ASSERT_OK(w.Finish());
  EXPECT_THAT(w.Add(hidden, extras, true, Info(1)),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(w.Finish(), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK_AND_ASSIGN(JudgeDataset ds, LoadJudgeDataset(tmp.File("ok")));
  EXPECT_EQ(ds.rows, 1);
}

TEST(JudgeDatasetTest, MissingFilesAreNotFound) {
  TempDir tmp;
  EXPECT_THAT(LoadJudgeDataset(tmp.File("nope")).status(), StatusIs(kNotFound));
  const std::string dir = tmp.File("ds");
  WriteDataset(dir, TestSpec(engine::DType::kF32, 4), 9);
  {
    // Unfinished dataset: no dataset.json.
    std::filesystem::rename(dir + "/dataset.json", dir + "/saved.json");
    EXPECT_THAT(LoadJudgeDataset(dir).status(), StatusIs(kNotFound, HasSubstr("dataset.json")));
    std::filesystem::rename(dir + "/saved.json", dir + "/dataset.json");
  }
  std::filesystem::rename(dir + "/shard-00001.safetensors", dir + "/moved");
  EXPECT_THAT(LoadJudgeDataset(dir).status(),
              StatusIs(kNotFound, HasSubstr("shard-00001.safetensors")));
  std::filesystem::rename(dir + "/moved", dir + "/shard-00001.safetensors");
  std::filesystem::remove(dir + "/index.jsonl");
  EXPECT_THAT(LoadJudgeDataset(dir).status(), StatusIs(kNotFound, HasSubstr("index.jsonl")));
}

// Each case corrupts one file of a good dataset; loading must fail with InvalidArgument naming
// that file.
TEST(JudgeDatasetTest, CorruptContentIsInvalidArgument) {
  TempDir tmp;
  const std::string good = tmp.File("good");
  WriteDataset(good, TestSpec(engine::DType::kF32, 4), 9);
  const std::string manifest = ReadText(good + "/dataset.json");
  const std::string index = ReadText(good + "/index.jsonl");
  const nlohmann::json m = nlohmann::json::parse(manifest);

  struct Case {
    std::string name;
    std::string file;
    std::string contents;
    std::string blamed = "";  // the file the error must name, if not `file`
  };
  std::vector<Case> cases;
  auto with = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json j = m;
    edit(j);
    return j.dump();
  };
  cases.push_back({"bad json", "dataset.json", "{not json"});
  cases.push_back({"not object", "dataset.json", "[1,2]"});
  cases.push_back({"version", "dataset.json", with([](auto& j) { j["format_version"] = 2; })});
  cases.push_back({"hidden size", "dataset.json", with([](auto& j) { j["hidden_size"] = 9; }),
                   "shard-00000.safetensors"});
  cases.push_back({"hidden str", "dataset.json", with([](auto& j) { j["hidden_size"] = "8"; })});
  cases.push_back({"dtype", "dataset.json", with([](auto& j) { j["feature_dtype"] = "bf16"; }),
                   "shard-00000.safetensors"});
  cases.push_back({"extras", "dataset.json",
                   with([](auto& j) { j["extra_feature_names"] = {"only_one"}; }),
                   "shard-00000.safetensors"});
  cases.push_back({"total", "dataset.json", with([](auto& j) { j["total_rows"] = 10; })});
  cases.push_back({"positives", "dataset.json", with([](auto& j) { j["positive_count"] = 1; })});
  cases.push_back({"shard rows", "dataset.json", with([](auto& j) {
                     j["shards"][0]["rows"] = 5;
                     j["total_rows"] = 10;
                   }),
                   "shard-00000.safetensors"});
  cases.push_back({"shard path", "dataset.json",
                   with([](auto& j) { j["shards"][0]["file"] = "../x.safetensors"; })});
  cases.push_back({"info", "dataset.json", with([](auto& j) { j["info"] = "x"; })});
  cases.push_back({"truncated shard", "shard-00000.safetensors",
                   ReadText(good + "/shard-00000.safetensors").substr(0, 100)});
  cases.push_back(
      {"index short", "index.jsonl", index.substr(0, index.rfind('\n', index.size() - 2) + 1)});
  cases.push_back({"index junk", "index.jsonl", index + "{\"row\": 9}\n"});
  cases.push_back({"index not json", "index.jsonl", "nope\n" + index});
  std::string relabeled = index;
  relabeled.replace(relabeled.find("\"label\":1"), 9, "\"label\":0");
  cases.push_back({"index label", "index.jsonl", relabeled});

  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string dir = tmp.File("bad");
    std::filesystem::remove_all(dir);
    std::filesystem::copy(good, dir);
    WriteText(dir + "/" + c.file, c.contents);
    EXPECT_THAT(LoadJudgeDataset(dir).status(),
                StatusIs(kInvalid, HasSubstr(c.blamed.empty() ? c.file : c.blamed)));
  }
}

TEST(JudgeDatasetTest, LabelsOtherThanZeroOrOneAreRejected) {
  // A shard written directly with a label of 2 (the writer cannot produce one).
  TempDir tmp;
  const std::string dir = tmp.File("ds");
  WriteDataset(dir, TestSpec(engine::DType::kF32, 100), 3);
  std::string shard = ReadText(dir + "/shard-00000.safetensors");
  // labels follow hidden, extras and group in name order: extras, group, hidden, labels.
  const size_t labels_end = shard.size();
  shard[labels_end - 4] = 2;  // last row's label (little-endian int32)
  WriteText(dir + "/shard-00000.safetensors", shard);
  EXPECT_THAT(LoadJudgeDataset(dir).status(), StatusIs(kInvalid, HasSubstr("not 0 or 1")));
}

JudgeDataset GroupsOnly(const std::vector<int32_t>& groups) {
  JudgeDataset ds;
  ds.groups = groups;
  ds.rows = static_cast<int64_t>(groups.size());
  return ds;
}

TEST(JudgeDatasetTest, SplitByGroupIsDisjointCoveringGroupedAndDeterministic) {
  std::vector<int32_t> groups;
  for (int g = 0; g < 100; ++g) {
    for (int k = 0; k < 1 + g % 5; ++k) groups.push_back(g * 7);  // unequal group sizes
  }
  const JudgeDataset ds = GroupsOnly(groups);
  ASSERT_OK_AND_ASSIGN(DatasetSplit s, SplitByGroup(ds, 0.1, 0.2, 42));
  std::set<int64_t> all;
  std::set<int32_t> g_train, g_val, g_test;
  for (int64_t r : s.train) all.insert(r), g_train.insert(groups[r]);
  for (int64_t r : s.validation) all.insert(r), g_val.insert(groups[r]);
  for (int64_t r : s.test) all.insert(r), g_test.insert(groups[r]);
  EXPECT_EQ(all.size(), groups.size());  // covering and (with the sizes) disjoint
  EXPECT_EQ(s.train.size() + s.validation.size() + s.test.size(), groups.size());
  EXPECT_EQ(g_val.size(), 10u);
  EXPECT_EQ(g_test.size(), 20u);
  EXPECT_EQ(g_train.size(), 70u);
  for (int32_t g : g_val) EXPECT_EQ(g_train.count(g) + g_test.count(g), 0u);
  for (int32_t g : g_test) EXPECT_EQ(g_train.count(g), 0u);
  EXPECT_TRUE(std::is_sorted(s.train.begin(), s.train.end()));

  ASSERT_OK_AND_ASSIGN(DatasetSplit again, SplitByGroup(ds, 0.1, 0.2, 42));
  EXPECT_EQ(again.train, s.train);
  EXPECT_EQ(again.validation, s.validation);
  EXPECT_EQ(again.test, s.test);
  ASSERT_OK_AND_ASSIGN(DatasetSplit other, SplitByGroup(ds, 0.1, 0.2, 43));
  EXPECT_NE(other.test, s.test);

  ASSERT_OK_AND_ASSIGN(DatasetSplit none, SplitByGroup(ds, 0.0, 0.0, 1));
  EXPECT_EQ(none.train.size(), groups.size());
  EXPECT_THAT(SplitByGroup(ds, 0.6, 0.5, 1).status(), StatusIs(kInvalid));
  EXPECT_THAT(SplitByGroup(ds, -0.1, 0.5, 1).status(), StatusIs(kInvalid));
}

TEST(LoadJudgeDatasetsTest, ConcatenatesWithDisjointGroups) {
  const std::string base = ::testing::TempDir() + "/merge_" + std::to_string(::getpid());
  std::filesystem::remove_all(base);
  DatasetSpec spec;
  spec.hidden_size = 2;
  spec.extra_feature_names = {"target_logprob"};
  spec.feature_dtype = engine::DType::kF32;
  spec.info = {{"target_fingerprint", "fp"}};
  for (int d = 0; d < 2; ++d) {
    ASSERT_OK_AND_ASSIGN(JudgeDatasetWriter w, JudgeDatasetWriter::Create(base + "/" + std::to_string(d), spec));
    for (int r = 0; r < 3; ++r) {
      RowInfo info;
      info.group = r % 2;
      info.example_id = "e";
      const float hidden[2] = {static_cast<float>(d), static_cast<float>(r)};
      const float extra[1] = {-1.0f};
      ASSERT_OK(w.Add(hidden, extra, r == 0, info));
    }
    ASSERT_OK(w.Finish());
  }
  ASSERT_OK_AND_ASSIGN(JudgeDataset merged, LoadJudgeDatasets({base + "/0", base + "/1"}));
  EXPECT_EQ(merged.rows, 6);
  EXPECT_EQ(merged.positives, 2);
  EXPECT_EQ(merged.groups, (std::vector<int32_t>{0, 1, 0, 2, 3, 2}));
  EXPECT_EQ(merged.hidden[6], 1.0f);  // the second dataset's first row
  EXPECT_EQ(merged.spec.info["sources"].size(), 2u);
  spec.info = {{"target_fingerprint", "other"}};
  ASSERT_OK_AND_ASSIGN(JudgeDatasetWriter w, JudgeDatasetWriter::Create(base + "/2", spec));
  ASSERT_OK(w.Finish());
  EXPECT_THAT(LoadJudgeDatasets({base + "/0", base + "/2"}),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("same target")));
  std::filesystem::remove_all(base);
}

}  // namespace
}  // namespace verdict::judge
