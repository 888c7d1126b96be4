// SPDX-License-Identifier: Apache-2.0
#include "judge/dataset/judge_dataset.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "engine/io/mapped_file.h"
#include "engine/io/safetensors.h"
#include "engine/io/safetensors_writer.h"

namespace verdict::judge {
namespace {

using Json = nlohmann::json;
using engine::DType;

constexpr char kFormatName[] = "verdict-judge-dataset";
constexpr char kManifest[] = "dataset.json";
constexpr char kIndexFile[] = "index.jsonl";

std::string JoinPath(const std::string& dir, const std::string& name) {
  return (std::filesystem::path(dir) / name).string();
}

std::string ShardName(size_t i) { return absl::StrFormat("shard-%05d.safetensors", i); }

// Serializes without exceptions: invalid UTF-8 (e.g. a partial byte-level token) is replaced
// by U+FFFD rather than throwing.
std::string Dump(const Json& j, int indent = -1) {
  return j.dump(indent, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace);
}

absl::Status FsError(const std::error_code& ec, absl::string_view what, const std::string& path) {
  std::string msg = absl::StrCat("cannot ", what, " '", path, "': ", ec.message());
  if (ec == std::errc::permission_denied || ec == std::errc::operation_not_permitted ||
      ec == std::errc::read_only_file_system) {
    return absl::PermissionDeniedError(msg);
  }
  if (ec == std::errc::no_such_file_or_directory) return absl::NotFoundError(msg);
  return absl::InternalError(msg);
}

absl::Status Invalid(const std::string& file, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(file, ": ", what));
}

// Writes `text` to `path` via path.tmp + rename.
absl::Status WriteFileAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.flush();
    if (!out.good()) {
      std::error_code ignored;
      std::filesystem::remove(tmp, ignored);
      return absl::InternalError(absl::StrCat("cannot write '", tmp, "'"));
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    return FsError(ec, "rename to", path);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> FeatureDTypeName(DType dtype) {
  if (dtype == DType::kBF16) return std::string("bf16");
  if (dtype == DType::kF32) return std::string("f32");
  return absl::InvalidArgumentError(absl::StrCat(
      "feature dtype must be bf16 or f32, not ", engine::DTypeName(dtype)));
}

absl::Status ValidateSpec(const DatasetSpec& spec) {
  if (spec.hidden_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("hidden_size must be positive, not ", spec.hidden_size));
  }
  if (spec.rows_per_shard <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("rows_per_shard must be positive, not ", spec.rows_per_shard));
  }
  VERDICT_RETURN_IF_ERROR(FeatureDTypeName(spec.feature_dtype).status());
  std::set<std::string> names;
  for (const std::string& name : spec.extra_feature_names) {
    if (name.empty()) return absl::InvalidArgumentError("an extra feature name is empty");
    if (!names.insert(name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("extra feature name '", name, "' appears twice"));
    }
  }
  if (!spec.info.is_object()) return absl::InvalidArgumentError("info must be a JSON object");
  return absl::OkStatus();
}

bool GetInt(const Json& j, const char* key, int64_t* out) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) return false;
  *out = it->get<int64_t>();
  return true;
}

bool GetString(const Json& j, const char* key, std::string* out) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return false;
  *out = it->get<std::string>();
  return true;
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    if (!std::filesystem::exists(path, ec)) {
      return absl::NotFoundError(absl::StrCat("no such file: '", path, "'"));
    }
    return absl::InvalidArgumentError(absl::StrCat("'", path, "' is not a regular file"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in.good()) return absl::PermissionDeniedError(absl::StrCat("cannot read '", path, "'"));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::InternalError(absl::StrCat("error reading '", path, "'"));
  return ss.str();
}

// The tensor `name` of `file`, checked to have `dtype` and `shape`.
absl::StatusOr<const engine::WeightTensor*> FindTensor(const engine::SafetensorsFile& file,
                                                       const std::string& path,
                                                       const std::string& name, DType dtype,
                                                       const std::vector<int64_t>& shape) {
  for (const engine::WeightTensor& t : file.tensors) {
    if (t.name != name) continue;
    if (t.dtype != dtype) {
      return Invalid(path, absl::StrCat("tensor '", name, "' has dtype ",
                                        engine::DTypeName(t.dtype), ", expected ",
                                        engine::DTypeName(dtype)));
    }
    if (t.shape != shape) {
      return Invalid(path, absl::StrCat("tensor '", name, "' has shape [",
                                        absl::StrJoin(t.shape, ","), "], expected [",
                                        absl::StrJoin(shape, ","), "]"));
    }
    return &t;
  }
  return Invalid(path, absl::StrCat("has no tensor '", name, "'"));
}

template <typename T>
T LoadLe(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

}  // namespace

// ---- Writer -----------------------------------------------------------------------------------

JudgeDatasetWriter::JudgeDatasetWriter(std::string dir, DatasetSpec spec)
    : dir_(std::move(dir)), spec_(std::move(spec)) {}

absl::StatusOr<JudgeDatasetWriter> JudgeDatasetWriter::Create(const std::string& dir,
                                                              DatasetSpec spec) {
  if (spec.info.is_null()) spec.info = Json::object();
  if (absl::Status s = ValidateSpec(spec); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(dir, ": ", s.message()));
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return FsError(ec, "create directory", dir);
  const std::string manifest = JoinPath(dir, kManifest);
  if (std::filesystem::exists(manifest, ec)) {
    if (!spec.overwrite) {
      return absl::AlreadyExistsError(
          absl::StrCat("'", dir, "' already holds a dataset (", kManifest, ")"));
    }
    // Remove the manifest first, so an interrupted overwrite never looks like a dataset.
    std::filesystem::remove(manifest, ec);
    if (ec) return FsError(ec, "remove", manifest);
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
      const std::string name = entry.path().filename().string();
      if (name.rfind("shard-", 0) == 0 && entry.path().extension() == ".safetensors") {
        std::filesystem::remove(entry.path(), ec);
        if (ec) return FsError(ec, "remove", entry.path().string());
      }
    }
    if (ec) return FsError(ec, "list", dir);
  }
  spec.overwrite = false;
  JudgeDatasetWriter writer(dir, std::move(spec));
  const std::string index_path = JoinPath(dir, kIndexFile);
  writer.index_.open(index_path, std::ios::binary | std::ios::trunc);
  if (!writer.index_.good()) {
    return absl::InternalError(absl::StrCat("cannot create '", index_path, "'"));
  }
  return writer;
}

absl::Status JudgeDatasetWriter::Add(absl::Span<const float> hidden,
                                     absl::Span<const float> extras, bool label,
                                     const RowInfo& info) {
  if (finished_) return absl::FailedPreconditionError("Add after Finish");
  if (failed_) return absl::FailedPreconditionError("Add after an I/O error");
  if (static_cast<int64_t>(hidden.size()) != spec_.hidden_size) {
    return absl::InvalidArgumentError(absl::StrCat("hidden has ", hidden.size(),
                                                   " values, expected ", spec_.hidden_size));
  }
  if (extras.size() != spec_.extra_feature_names.size()) {
    return absl::InvalidArgumentError(absl::StrCat("extras has ", extras.size(),
                                                   " values, expected ",
                                                   spec_.extra_feature_names.size()));
  }
  for (size_t i = 0; i < hidden.size(); ++i) {
    if (!std::isfinite(hidden[i])) {
      return absl::InvalidArgumentError(absl::StrCat("hidden[", i, "] is not finite"));
    }
  }
  for (size_t i = 0; i < extras.size(); ++i) {
    if (!std::isfinite(extras[i])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "extra feature '", spec_.extra_feature_names[i], "' is not finite"));
    }
  }
  if (info.group < 0 || info.position < 0 || info.token_id < 0) {
    return absl::InvalidArgumentError("group, position and token_id must be non-negative");
  }

  if (spec_.feature_dtype == DType::kF32) {
    const auto* p = reinterpret_cast<const uint8_t*>(hidden.data());
    hidden_bytes_.insert(hidden_bytes_.end(), p, p + hidden.size() * sizeof(float));
  } else {
    const size_t at = hidden_bytes_.size();
    hidden_bytes_.resize(at + hidden.size() * sizeof(uint16_t));
    for (size_t i = 0; i < hidden.size(); ++i) {
      const uint16_t v = engine::F32ToBf16(hidden[i]);
      std::memcpy(hidden_bytes_.data() + at + 2 * i, &v, sizeof(v));
    }
  }
  extras_.insert(extras_.end(), extras.begin(), extras.end());
  labels_.push_back(label ? 1 : 0);
  groups_.push_back(info.group);
  Json record = {{"row", total_rows_},          {"group", info.group},
                 {"example_id", info.example_id}, {"position", info.position},
                 {"token_id", info.token_id},   {"token_text", info.token_text},
                 {"label", label ? 1 : 0}};
  index_ << Dump(record) << '\n';
  ++shard_rows_;
  ++total_rows_;
  if (label) ++positives_;
  if (shard_rows_ == spec_.rows_per_shard) {
    if (absl::Status s = FlushShard(); !s.ok()) {
      failed_ = true;
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status JudgeDatasetWriter::FlushShard() {
  if (shard_rows_ == 0) return absl::OkStatus();
  const int64_t n_extra = static_cast<int64_t>(spec_.extra_feature_names.size());
  const auto bytes = [](const auto& v) {
    return absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(v.data()),
                                     v.size() * sizeof(v[0]));
  };
  const std::vector<engine::TensorToWrite> tensors = {
      {"hidden", spec_.feature_dtype, {shard_rows_, spec_.hidden_size}, bytes(hidden_bytes_)},
      {"extras", DType::kF32, {shard_rows_, n_extra}, bytes(extras_)},
      {"labels", DType::kI32, {shard_rows_}, bytes(labels_)},
      {"group", DType::kI32, {shard_rows_}, bytes(groups_)},
  };
  const std::string path = JoinPath(dir_, ShardName(shard_row_counts_.size()));
  VERDICT_RETURN_IF_ERROR(engine::WriteSafetensors(
      path, tensors, {{"format", kFormatName}, {"format_version", "1"}}));
  shard_row_counts_.push_back(shard_rows_);
  shard_rows_ = 0;
  hidden_bytes_.clear();
  extras_.clear();
  labels_.clear();
  groups_.clear();
  return absl::OkStatus();
}

absl::Status JudgeDatasetWriter::Finish() {
  if (finished_) return absl::FailedPreconditionError("Finish called twice");
  if (failed_) return absl::FailedPreconditionError("Finish after an I/O error");
  finished_ = true;
  if (absl::Status s = FlushShard(); !s.ok()) {
    failed_ = true;
    return s;
  }
  index_.flush();
  const bool index_ok = index_.good();
  index_.close();
  if (!index_ok) {
    failed_ = true;
    return absl::InternalError(
        absl::StrCat("cannot write '", JoinPath(dir_, kIndexFile), "'"));
  }
  Json shards = Json::array();
  for (size_t i = 0; i < shard_row_counts_.size(); ++i) {
    shards.push_back({{"file", ShardName(i)}, {"rows", shard_row_counts_[i]}});
  }
  Json manifest = {{"format", kFormatName},
                   {"format_version", kJudgeDatasetFormatVersion},
                   {"hidden_size", spec_.hidden_size},
                   {"extra_feature_names", spec_.extra_feature_names},
                   {"feature_dtype", *FeatureDTypeName(spec_.feature_dtype)},
                   {"rows_per_shard", spec_.rows_per_shard},
                   {"shards", std::move(shards)},
                   {"total_rows", total_rows_},
                   {"positive_count", positives_},
                   {"index_file", kIndexFile},
                   {"info", spec_.info}};
  if (absl::Status s = WriteFileAtomically(JoinPath(dir_, kManifest), Dump(manifest, 2) + "\n");
      !s.ok()) {
    failed_ = true;
    return s;
  }
  return absl::OkStatus();
}

// ---- Reader -----------------------------------------------------------------------------------

absl::StatusOr<JudgeDataset> LoadJudgeDataset(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat("no dataset directory '", dir, "'"));
  }
  const std::string manifest_path = JoinPath(dir, kManifest);
  VERDICT_ASSIGN_OR_RETURN(const std::string manifest_text, ReadWholeFile(manifest_path));
  const Json m = Json::parse(manifest_text, nullptr, /*allow_exceptions=*/false);
  const std::string& mp = manifest_path;
  if (m.is_discarded()) return Invalid(mp, "not valid JSON");
  if (!m.is_object()) return Invalid(mp, "not a JSON object");

  std::string format;
  if (!GetString(m, "format", &format) || format != kFormatName) {
    return Invalid(mp, absl::StrCat("\"format\" must be \"", kFormatName, "\""));
  }
  int64_t version = 0;
  if (!GetInt(m, "format_version", &version) || version != kJudgeDatasetFormatVersion) {
    return Invalid(mp, absl::StrCat("\"format_version\" must be ", kJudgeDatasetFormatVersion));
  }
  JudgeDataset ds;
  DatasetSpec& spec = ds.spec;
  if (!GetInt(m, "hidden_size", &spec.hidden_size) || spec.hidden_size <= 0) {
    return Invalid(mp, "\"hidden_size\" must be a positive integer");
  }
  if (!GetInt(m, "rows_per_shard", &spec.rows_per_shard) || spec.rows_per_shard <= 0) {
    return Invalid(mp, "\"rows_per_shard\" must be a positive integer");
  }
  auto names = m.find("extra_feature_names");
  if (names == m.end() || !names->is_array()) {
    return Invalid(mp, "\"extra_feature_names\" must be an array of strings");
  }
  for (const Json& n : *names) {
    if (!n.is_string()) return Invalid(mp, "\"extra_feature_names\" must be an array of strings");
    spec.extra_feature_names.push_back(n.get<std::string>());
  }
  std::string dtype;
  GetString(m, "feature_dtype", &dtype);
  if (dtype == "bf16") {
    spec.feature_dtype = DType::kBF16;
  } else if (dtype == "f32") {
    spec.feature_dtype = DType::kF32;
  } else {
    return Invalid(mp, "\"feature_dtype\" must be \"bf16\" or \"f32\"");
  }
  auto info = m.find("info");
  if (info == m.end() || !info->is_object()) return Invalid(mp, "\"info\" must be an object");
  spec.info = *info;
  if (absl::Status s = ValidateSpec(spec); !s.ok()) return Invalid(mp, s.message());
  int64_t total_rows = 0, positive_count = 0;
  if (!GetInt(m, "total_rows", &total_rows) || total_rows < 0) {
    return Invalid(mp, "\"total_rows\" must be a non-negative integer");
  }
  if (!GetInt(m, "positive_count", &positive_count) || positive_count < 0) {
    return Invalid(mp, "\"positive_count\" must be a non-negative integer");
  }
  std::string index_file;
  if (!GetString(m, "index_file", &index_file) || index_file.empty() ||
      index_file.find('/') != std::string::npos || index_file == "..") {
    return Invalid(mp, "\"index_file\" must be a file name");
  }
  auto shards = m.find("shards");
  if (shards == m.end() || !shards->is_array()) return Invalid(mp, "\"shards\" must be an array");

  // Counts first, so the buffers are sized once and a lying manifest cannot make us allocate
  // without bound (each shard's size is checked against its file).
  std::vector<std::pair<std::string, int64_t>> shard_list;
  int64_t rows_sum = 0;
  for (const Json& s : *shards) {
    std::string file;
    int64_t rows = 0;
    if (!s.is_object() || !GetString(s, "file", &file) || !GetInt(s, "rows", &rows) ||
        rows <= 0) {
      return Invalid(mp, "each shard must be {\"file\": name, \"rows\": positive integer}");
    }
    if (file.empty() || file.find('/') != std::string::npos || file == "." || file == "..") {
      return Invalid(mp, absl::StrCat("shard file '", file, "' is not a plain file name"));
    }
    if (rows > std::numeric_limits<int32_t>::max() || rows_sum > total_rows) {
      return Invalid(mp, "shard row counts are too large");
    }
    rows_sum += rows;
    shard_list.emplace_back(file, rows);
  }
  if (rows_sum != total_rows) {
    return Invalid(mp, absl::StrCat("shards hold ", rows_sum, " rows but \"total_rows\" is ",
                                    total_rows));
  }

  const int64_t hidden_size = spec.hidden_size;
  const int64_t n_extra = static_cast<int64_t>(spec.extra_feature_names.size());
  for (const auto& [file, rows] : shard_list) {
    const std::string path = JoinPath(dir, file);
    VERDICT_ASSIGN_OR_RETURN(std::unique_ptr<engine::MappedFile> mapped,
                             engine::MappedFile::Open(path));
    VERDICT_ASSIGN_OR_RETURN(
        engine::SafetensorsFile st,
        engine::ParseSafetensorsHeader(mapped->data(), mapped->size(), path));
    if (st.tensors.size() != 4) {
      return Invalid(path, absl::StrCat("has ", st.tensors.size(),
                                        " tensors, expected hidden, extras, labels, group"));
    }
    VERDICT_ASSIGN_OR_RETURN(
        const engine::WeightTensor* hidden,
        FindTensor(st, path, "hidden", spec.feature_dtype, {rows, hidden_size}));
    VERDICT_ASSIGN_OR_RETURN(const engine::WeightTensor* extras,
                             FindTensor(st, path, "extras", DType::kF32, {rows, n_extra}));
    VERDICT_ASSIGN_OR_RETURN(const engine::WeightTensor* labels,
                             FindTensor(st, path, "labels", DType::kI32, {rows}));
    VERDICT_ASSIGN_OR_RETURN(const engine::WeightTensor* group,
                             FindTensor(st, path, "group", DType::kI32, {rows}));

    const int64_t n_hidden = rows * hidden_size;
    ds.hidden.reserve(ds.hidden.size() + n_hidden);
    for (int64_t i = 0; i < n_hidden; ++i) {
      const float v = spec.feature_dtype == DType::kF32
                          ? LoadLe<float>(hidden->data + 4 * i)
                          : engine::Bf16ToF32(LoadLe<uint16_t>(hidden->data + 2 * i));
      if (!std::isfinite(v)) {
        return Invalid(path, absl::StrCat("hidden value ", i, " is not finite"));
      }
      ds.hidden.push_back(v);
    }
    for (int64_t i = 0; i < rows * n_extra; ++i) {
      const float v = LoadLe<float>(extras->data + 4 * i);
      if (!std::isfinite(v)) {
        return Invalid(path, absl::StrCat("extras value ", i, " is not finite"));
      }
      ds.extras.push_back(v);
    }
    for (int64_t i = 0; i < rows; ++i) {
      const int32_t label = LoadLe<int32_t>(labels->data + 4 * i);
      if (label != 0 && label != 1) {
        return Invalid(path, absl::StrCat("label of row ", i, " is ", label, ", not 0 or 1"));
      }
      const int32_t g = LoadLe<int32_t>(group->data + 4 * i);
      if (g < 0) return Invalid(path, absl::StrCat("group of row ", i, " is negative"));
      ds.labels.push_back(static_cast<uint8_t>(label));
      ds.groups.push_back(g);
      ds.positives += label;
    }
    ds.rows += rows;
  }
  if (ds.positives != positive_count) {
    return Invalid(mp, absl::StrCat("\"positive_count\" is ", positive_count,
                                    " but the shards hold ", ds.positives, " positive labels"));
  }

  const std::string index_path = JoinPath(dir, index_file);
  VERDICT_ASSIGN_OR_RETURN(const std::string index_text, ReadWholeFile(index_path));
  ds.index.reserve(ds.rows);
  size_t pos = 0;
  int64_t line_no = 0;
  while (pos < index_text.size()) {
    size_t end = index_text.find('\n', pos);
    if (end == std::string::npos) end = index_text.size();
    const std::string line = index_text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    const std::string where = absl::StrCat("line ", line_no, ": ");
    if (line_no > ds.rows) {
      return Invalid(index_path, absl::StrCat("has more than the ", ds.rows, " rows of ",
                                              kManifest));
    }
    const Json r = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (r.is_discarded() || !r.is_object()) {
      return Invalid(index_path, where + "not a JSON object");
    }
    const int64_t row = line_no - 1;
    int64_t r_row, group, position, token_id, label;
    RowInfo info;
    if (!GetInt(r, "row", &r_row) || !GetInt(r, "group", &group) ||
        !GetInt(r, "position", &position) || !GetInt(r, "token_id", &token_id) ||
        !GetInt(r, "label", &label) || !GetString(r, "example_id", &info.example_id) ||
        !GetString(r, "token_text", &info.token_text)) {
      return Invalid(index_path, where + "missing or mistyped field (row, group, example_id, "
                                         "position, token_id, token_text, label)");
    }
    if (r_row != row) {
      return Invalid(index_path, absl::StrCat(where, "\"row\" is ", r_row, ", expected ", row));
    }
    if (group != ds.groups[row] || label != ds.labels[row]) {
      return Invalid(index_path, where + "group or label disagrees with the shards");
    }
    if (position < 0 || position > std::numeric_limits<int32_t>::max() || token_id < 0 ||
        token_id > std::numeric_limits<int32_t>::max()) {
      return Invalid(index_path, where + "position or token_id out of range");
    }
    info.group = static_cast<int32_t>(group);
    info.position = static_cast<int32_t>(position);
    info.token_id = static_cast<int32_t>(token_id);
    ds.index.push_back(std::move(info));
  }
  if (static_cast<int64_t>(ds.index.size()) != ds.rows) {
    return Invalid(index_path, absl::StrCat("has ", ds.index.size(), " rows, expected ",
                                            ds.rows));
  }
  return ds;
}

// ---- Splits -----------------------------------------------------------------------------------

absl::StatusOr<DatasetSplit> SplitByGroup(const JudgeDataset& dataset,
                                          double validation_fraction, double test_fraction,
                                          uint64_t seed) {
  if (!(validation_fraction >= 0 && validation_fraction <= 1) ||
      !(test_fraction >= 0 && test_fraction <= 1) || validation_fraction + test_fraction > 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad split fractions: validation ", validation_fraction, ", test ", test_fraction));
  }
  std::vector<int32_t> groups(dataset.groups.begin(), dataset.groups.end());
  std::sort(groups.begin(), groups.end());
  groups.erase(std::unique(groups.begin(), groups.end()), groups.end());
  // Fisher-Yates with mt19937_64, whose output sequence the standard fixes (std::shuffle and
  // the distributions are implementation-defined).
  std::mt19937_64 rng(seed);
  for (size_t i = groups.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(rng() % i);
    std::swap(groups[i - 1], groups[j]);
  }
  const size_t n = groups.size();
  const size_t n_test = std::min(n, static_cast<size_t>(std::llround(test_fraction * n)));
  const size_t n_val =
      std::min(n - n_test, static_cast<size_t>(std::llround(validation_fraction * n)));
  // 0 = train, 1 = validation, 2 = test, keyed by position in the sorted group list.
  std::vector<int32_t> sorted(groups);
  std::sort(sorted.begin(), sorted.end());
  std::vector<uint8_t> which(n, 0);
  for (size_t i = 0; i < n; ++i) {
    const size_t k =
        std::lower_bound(sorted.begin(), sorted.end(), groups[i]) - sorted.begin();
    which[k] = i < n_test ? 2 : (i < n_test + n_val ? 1 : 0);
  }
  DatasetSplit split;
  for (int64_t row = 0; row < static_cast<int64_t>(dataset.groups.size()); ++row) {
    const size_t k = std::lower_bound(sorted.begin(), sorted.end(), dataset.groups[row]) -
                     sorted.begin();
    switch (which[k]) {
      case 0: split.train.push_back(row); break;
      case 1: split.validation.push_back(row); break;
      default: split.test.push_back(row); break;
    }
  }
  return split;
}

absl::StatusOr<JudgeDataset> LoadJudgeDatasets(const std::vector<std::string>& dirs) {
  if (dirs.empty()) return absl::InvalidArgumentError("no judge dataset given");
  VERDICT_ASSIGN_OR_RETURN(JudgeDataset merged, LoadJudgeDataset(dirs[0]));
  nlohmann::json sources = nlohmann::json::array({dirs[0]});
  auto fingerprint = [](const JudgeDataset& d) {
    return d.spec.info.is_object() && d.spec.info.contains("target_fingerprint")
               ? d.spec.info["target_fingerprint"].dump()
               : std::string("null");
  };
  for (size_t i = 1; i < dirs.size(); ++i) {
    VERDICT_ASSIGN_OR_RETURN(JudgeDataset next, LoadJudgeDataset(dirs[i]));
    if (next.spec.hidden_size != merged.spec.hidden_size ||
        next.spec.extra_feature_names != merged.spec.extra_feature_names ||
        fingerprint(next) != fingerprint(merged)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "judge datasets ", dirs[0], " and ", dirs[i],
          " do not describe the same target and features (hidden size, extra features or target "
          "fingerprint differ)"));
    }
    int32_t group_offset = 0;
    for (int32_t g : merged.groups) group_offset = std::max(group_offset, g + 1);
    for (int32_t& g : next.groups) g += group_offset;
    for (RowInfo& r : next.index) r.group += group_offset;
    merged.hidden.insert(merged.hidden.end(), next.hidden.begin(), next.hidden.end());
    merged.extras.insert(merged.extras.end(), next.extras.begin(), next.extras.end());
    merged.labels.insert(merged.labels.end(), next.labels.begin(), next.labels.end());
    merged.groups.insert(merged.groups.end(), next.groups.begin(), next.groups.end());
    merged.index.insert(merged.index.end(), next.index.begin(), next.index.end());
    merged.rows += next.rows;
    merged.positives += next.positives;
    sources.push_back(dirs[i]);
  }
  if (merged.spec.info.is_object()) merged.spec.info["sources"] = std::move(sources);
  return merged;
}

}  // namespace verdict::judge
