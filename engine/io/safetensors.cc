// SPDX-License-Identifier: Apache-2.0
#include "engine/io/safetensors.h"

#include <algorithm>
#include <filesystem>
#include <limits>
#include <set>
#include <system_error>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/io/mapped_file.h"
#include "nlohmann/json.hpp"

namespace verdict::engine {
namespace {

using Json = nlohmann::json;

absl::Status Invalid(absl::string_view source, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", what));
}

// Parses JSON without exceptions; reports duplicate keys of the top-level object (nlohmann
// would silently keep the last one).
absl::StatusOr<Json> ParseJsonObject(absl::string_view text, absl::string_view source,
                                     absl::string_view what) {
  std::set<std::string> top_keys;
  std::string duplicate;
  Json::parser_callback_t cb = [&](int depth, Json::parse_event_t event, Json& parsed) {
    if (depth == 1 && event == Json::parse_event_t::key && parsed.is_string()) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!top_keys.insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  Json json;
  try {
    json = Json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/false);
  } catch (const std::exception& e) {  // the parser should not throw; be safe
    return Invalid(source, absl::StrCat(what, " is not valid JSON: ", e.what()));
  }
  if (json.is_discarded()) return Invalid(source, absl::StrCat(what, " is not valid JSON"));
  if (!json.is_object()) return Invalid(source, absl::StrCat(what, " is not a JSON object"));
  if (!duplicate.empty()) {
    return Invalid(source, absl::StrCat(what, " has the key '", duplicate, "' twice"));
  }
  return json;
}

// A non-negative JSON integer.
bool GetU64(const Json& j, uint64_t* out) {
  if (j.is_number_unsigned()) {
    *out = j.get<uint64_t>();
    return true;
  }
  if (j.is_number_integer()) {
    const int64_t v = j.get<int64_t>();
    if (v < 0) return false;
    *out = static_cast<uint64_t>(v);
    return true;
  }
  return false;
}

absl::StatusOr<DType> ParseDType(const std::string& s, absl::string_view source,
                                 const std::string& name) {
  if (s == "F32") return DType::kF32;
  if (s == "F16") return DType::kF16;
  if (s == "BF16") return DType::kBF16;
  if (s == "I32") return DType::kI32;
  if (s == "F8_E4M3") return DType::kF8E4M3;
  return Invalid(source, absl::StrCat("tensor '", name, "' has dtype '", s,
                                      "', which is not supported (supported: F32, F16, BF16, "
                                      "F8_E4M3, I32)"));
}

struct Range {
  uint64_t begin;
  uint64_t end;
  size_t index;
};

}  // namespace

absl::StatusOr<SafetensorsFile> ParseSafetensorsHeader(const uint8_t* data, size_t size,
                                                       absl::string_view source) {
  if (size < 8 || data == nullptr) {
    return Invalid(source, absl::StrCat("file too small for a safetensors header (", size,
                                        " bytes, need at least 8)"));
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  if (header_len > kMaxSafetensorsHeaderBytes) {
    return Invalid(source, absl::StrCat("header length ", header_len, " exceeds the limit of ",
                                        kMaxSafetensorsHeaderBytes, " bytes"));
  }
  if (header_len > size - 8) {
    return Invalid(source, absl::StrCat("header length ", header_len,
                                        " runs past the end of the file (", size, " bytes)"));
  }
  if (header_len < 2) return Invalid(source, "header is empty");
  const absl::string_view header(reinterpret_cast<const char*>(data + 8), header_len);
  VERDICT_ASSIGN_OR_RETURN(Json json, ParseJsonObject(header, source, "header"));

  SafetensorsFile file;
  file.data_offset = 8 + static_cast<size_t>(header_len);
  const uint64_t data_size = size - file.data_offset;
  std::vector<Range> ranges;
  for (auto it = json.begin(); it != json.end(); ++it) {
    const std::string& name = it.key();
    const Json& entry = it.value();
    if (name == "__metadata__") {
      if (entry.is_null()) continue;
      if (!entry.is_object()) return Invalid(source, "__metadata__ is not a JSON object");
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (m.value().is_string()) file.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto bad = [&](absl::string_view what) {
      return Invalid(source, absl::StrCat("tensor '", name, "': ", what));
    };
    if (!entry.is_object()) return bad("entry is not a JSON object");
    const auto dtype_it = entry.find("dtype");
    const auto shape_it = entry.find("shape");
    const auto offsets_it = entry.find("data_offsets");
    if (dtype_it == entry.end() || !dtype_it->is_string()) return bad("missing string 'dtype'");
    if (shape_it == entry.end() || !shape_it->is_array()) return bad("missing array 'shape'");
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2) {
      return bad("'data_offsets' is not an array of two integers");
    }
    WeightTensor t;
    t.name = name;
    VERDICT_ASSIGN_OR_RETURN(t.dtype, ParseDType(dtype_it->get<std::string>(), source, name));
    uint64_t elements = 1;
    for (const Json& dim : *shape_it) {
      uint64_t d = 0;
      if (!GetU64(dim, &d) || d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return bad("shape has an entry that is not a non-negative integer");
      }
      if (d != 0 && elements > std::numeric_limits<uint64_t>::max() / d) {
        return bad("shape's element count overflows");
      }
      elements *= d;
      t.shape.push_back(static_cast<int64_t>(d));
    }
    uint64_t begin = 0;
    uint64_t end = 0;
    if (!GetU64((*offsets_it)[0], &begin) || !GetU64((*offsets_it)[1], &end)) {
      return bad("'data_offsets' is not an array of two non-negative integers");
    }
    if (begin > end) return bad(absl::StrCat("data_offsets [", begin, ", ", end, "] is reversed"));
    if (end > data_size) {
      return bad(absl::StrCat("data_offsets [", begin, ", ", end, "] run past the data section (",
                              data_size, " bytes)"));
    }
    // Every supported dtype takes at least one byte per element, so a count above the range
    // length is a mismatch, and checking it first keeps the byte count from overflowing.
    if (elements > end - begin) {
      return bad(absl::StrCat("shape has ", elements, " elements but data_offsets cover only ",
                              end - begin, " bytes"));
    }
    VERDICT_ASSIGN_OR_RETURN(const size_t nbytes,
                             DTypeByteSize(t.dtype, static_cast<int64_t>(elements)));
    if (nbytes != end - begin) {
      return bad(absl::StrCat("shape and dtype need ", nbytes, " bytes but data_offsets cover ",
                              end - begin));
    }
    t.data = data + file.data_offset + begin;
    t.nbytes = nbytes;
    ranges.push_back(Range{begin, end, file.tensors.size()});
    file.tensors.push_back(std::move(t));
  }

  // No two tensors may share bytes (empty tensors occupy none).
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const Range* prev = nullptr;
  for (const Range& r : ranges) {
    if (r.begin == r.end) continue;
    if (prev != nullptr && r.begin < prev->end) {
      return Invalid(source, absl::StrCat("tensors '", file.tensors[prev->index].name, "' and '",
                                          file.tensors[r.index].name, "' overlap"));
    }
    if (prev == nullptr || r.end > prev->end) prev = &r;
  }
  std::sort(file.tensors.begin(), file.tensors.end(),
            [](const WeightTensor& a, const WeightTensor& b) { return a.name < b.name; });
  return file;
}

namespace {

class SafetensorsSource : public WeightSource {
 public:
  // Adds the tensors of one mapped file. InvalidArgument if a name is already present.
  absl::Status AddFile(std::unique_ptr<MappedFile> file) {
    VERDICT_ASSIGN_OR_RETURN(SafetensorsFile parsed,
                             ParseSafetensorsHeader(file->data(), file->size(), file->path()));
    for (WeightTensor& t : parsed.tensors) {
      auto [it, inserted] = tensors_.try_emplace(t.name, t);
      if (!inserted) {
        return absl::InvalidArgumentError(absl::StrCat("tensor '", t.name, "' appears in both '",
                                                       origin_[t.name], "' and '", file->path(),
                                                       "'"));
      }
      origin_[t.name] = file->path();
    }
    files_.push_back(std::move(file));
    return absl::OkStatus();
  }

  const std::string* OriginOf(const std::string& name) const {
    auto it = origin_.find(name);
    return it == origin_.end() ? nullptr : &it->second;
  }

  void Finish() {
    names_.clear();
    names_.reserve(tensors_.size());
    for (const auto& [name, t] : tensors_) names_.push_back(name);
    std::sort(names_.begin(), names_.end());
  }

  const WeightTensor* Find(absl::string_view name) const override {
    auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second;
  }
  std::vector<std::string> Names() const override { return names_; }
  absl::string_view Format() const override { return "safetensors"; }

 private:
  std::vector<std::unique_ptr<MappedFile>> files_;
  absl::flat_hash_map<std::string, WeightTensor> tensors_;
  absl::flat_hash_map<std::string, std::string> origin_;  // tensor name -> file path
  std::vector<std::string> names_;
};

absl::StatusOr<std::unique_ptr<WeightSource>> OpenSingle(const std::string& path) {
  VERDICT_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(path));
  auto source = std::make_unique<SafetensorsSource>();
  VERDICT_RETURN_IF_ERROR(source->AddFile(std::move(file)));
  source->Finish();
  return std::unique_ptr<WeightSource>(std::move(source));
}

absl::StatusOr<std::unique_ptr<WeightSource>> OpenIndex(const std::string& index_path) {
  VERDICT_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> index_file, MappedFile::Open(index_path));
  const absl::string_view text(reinterpret_cast<const char*>(index_file->data()),
                               index_file->size());
  VERDICT_ASSIGN_OR_RETURN(Json index, ParseJsonObject(text, index_path, "index"));
  const auto map_it = index.find("weight_map");
  if (map_it == index.end() || !map_it->is_object()) {
    return Invalid(index_path, "index has no 'weight_map' object");
  }
  // Shard file -> tensor names the index puts there; std::map keeps the open order stable.
  std::map<std::string, std::vector<std::string>> shards;
  for (auto it = map_it->begin(); it != map_it->end(); ++it) {
    if (!it.value().is_string()) {
      return Invalid(index_path,
                     absl::StrCat("weight_map entry '", it.key(), "' is not a file name string"));
    }
    const std::string shard = it.value().get<std::string>();
    if (shard.empty() || shard == "." || shard == ".." ||
        shard.find_first_of("/\\") != std::string::npos || shard.find('\0') != std::string::npos) {
      return Invalid(index_path, absl::StrCat("weight_map entry '", it.key(), "' names shard '",
                                              shard, "', which is not a plain file name"));
    }
    shards[shard].push_back(it.key());
  }
  if (shards.empty()) return Invalid(index_path, "weight_map is empty");
  const std::filesystem::path dir = std::filesystem::path(index_path).parent_path();
  auto source = std::make_unique<SafetensorsSource>();
  for (const auto& [shard, names] : shards) {
    const std::string shard_path = (dir / shard).string();
    VERDICT_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(shard_path));
    VERDICT_RETURN_IF_ERROR(source->AddFile(std::move(file)));
  }
  for (const auto& [shard, names] : shards) {
    const std::string shard_path = (dir / shard).string();
    for (const std::string& name : names) {
      const std::string* origin = source->OriginOf(name);
      if (origin == nullptr || *origin != shard_path) {
        return Invalid(index_path, absl::StrCat("weight_map puts tensor '", name, "' in '", shard,
                                                "', which does not contain it"));
      }
    }
  }
  source->Finish();
  return std::unique_ptr<WeightSource>(std::move(source));
}

}  // namespace

absl::StatusOr<std::unique_ptr<WeightSource>> OpenSafetensors(const std::string& path) {
  std::error_code ec;
  const std::filesystem::file_status st = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(st)) {
    return absl::NotFoundError(absl::StrCat("no such file or directory: '", path, "'"));
  }
  if (std::filesystem::is_directory(st)) {
    const std::filesystem::path dir(path);
    const std::filesystem::path index = dir / "model.safetensors.index.json";
    const std::filesystem::path single = dir / "model.safetensors";
    if (std::filesystem::exists(index, ec)) return OpenIndex(index.string());
    if (std::filesystem::exists(single, ec)) return OpenSingle(single.string());
    return absl::NotFoundError(absl::StrCat(
        "directory '", path, "' has neither model.safetensors nor model.safetensors.index.json"));
  }
  if (absl::EndsWith(path, ".json")) return OpenIndex(path);
  return OpenSingle(path);
}

}  // namespace verdict::engine
