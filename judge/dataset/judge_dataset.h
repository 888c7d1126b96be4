// SPDX-License-Identifier: Apache-2.0
// On-disk store of judge training data: for every labeled draft token, the judge's input
// features (the target model's final hidden state, after the final norm, plus a fixed list of
// named scalar "extra" features), a 0/1 label, and an index record saying where the token came
// from. Written once by JudgeDatasetWriter, read whole by LoadJudgeDataset.
//
// Format (version 1): a directory holding
//   dataset.json            written last (atomically), so a directory without it is an
//                           unfinished dataset:
//     {"format": "verdict-judge-dataset", "format_version": 1,
//      "hidden_size": H, "extra_feature_names": ["name", ...] (E names),
//      "feature_dtype": "bf16" | "f32", "rows_per_shard": R,
//      "shards": [{"file": "shard-00000.safetensors", "rows": n0}, ...],
//      "total_rows": N, "positive_count": P, "index_file": "index.jsonl",
//      "info": {...free-form object from the writer: target model path, fingerprint, ...}}
//   shard-00000.safetensors, shard-00001.safetensors, ...  rows in order, R rows each (the
//                           last one fewer), each holding:
//     hidden  [rows, H]  BF16 or F32 (feature_dtype)
//     extras  [rows, E]  F32
//     labels  [rows]     I32, 0 or 1
//     group   [rows]     I32, the example (prompt) the row belongs to; rows of one prompt
//                        share a group, so splits by group do not leak a prompt across splits
//   index.jsonl             one JSON object per row, in row order:
//     {"row": i, "group": g, "example_id": "...", "position": p (index of the draft token in
//      the generated answer), "token_id": t, "token_text": "...", "label": 0|1}
//
// JudgeDatasetWriter is not thread-safe (one thread per writer); LoadJudgeDataset and
// SplitByGroup are thread-safe.
#ifndef VERDICT_JUDGE_DATASET_JUDGE_DATASET_H_
#define VERDICT_JUDGE_DATASET_JUDGE_DATASET_H_

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/dtype.h"
#include "nlohmann/json.hpp"

namespace verdict::judge {

inline constexpr int kJudgeDatasetFormatVersion = 1;

// What a dataset stores; fixed for the whole dataset.
struct DatasetSpec {
  int64_t hidden_size = 0;                       // > 0
  std::vector<std::string> extra_feature_names;  // unique, non-empty; may be empty
  engine::DType feature_dtype = engine::DType::kBF16;  // of `hidden`: kBF16 or kF32
  int64_t rows_per_shard = 65536;                // > 0
  nlohmann::json info = nlohmann::json::object();  // free-form object, stored as-is
  bool overwrite = false;  // Create: replace an existing dataset in the directory
};

// Where a row's draft token came from.
struct RowInfo {
  int32_t group = 0;        // example index (>= 0); rows of one prompt share it
  std::string example_id;   // the example's own id (e.g. from the task file)
  int32_t position = 0;     // index of the draft token in the generated answer (>= 0)
  int32_t token_id = 0;     // >= 0
  std::string token_text;   // decoded token (may be a partial UTF-8 sequence)
};

// Writes one dataset directory. Rows are buffered and written a shard at a time; Finish
// writes the last shard and dataset.json. Movable, not copyable. Destroying a writer without
// Finish leaves an unfinished directory (no dataset.json) that LoadJudgeDataset rejects.
class JudgeDatasetWriter {
 public:
  // Creates `dir` (and parents) if needed and opens index.jsonl.
  // Errors: InvalidArgument (bad spec: hidden_size or rows_per_shard <= 0, feature dtype not
  // BF16/F32, empty or duplicate extra feature names, `info` not an object);
  // AlreadyExists (`dir` already holds a dataset.json and spec.overwrite is false; with
  // overwrite the old dataset.json, shards and index are removed first); Internal or
  // PermissionDenied (the directory or files cannot be created). Messages name the path.
  static absl::StatusOr<JudgeDatasetWriter> Create(const std::string& dir, DatasetSpec spec);

  JudgeDatasetWriter(JudgeDatasetWriter&&) = default;
  JudgeDatasetWriter& operator=(JudgeDatasetWriter&&) = default;
  JudgeDatasetWriter(const JudgeDatasetWriter&) = delete;
  JudgeDatasetWriter& operator=(const JudgeDatasetWriter&) = delete;

  // Appends one row. `hidden` has hidden_size values, `extras` one per extra feature name.
  // Errors: InvalidArgument (wrong sizes, a non-finite value, negative group, position or
  // token id; the writer is unchanged and stays usable); FailedPrecondition (after Finish or
  // after an I/O error); Internal/PermissionDenied (writing a full shard failed; the writer is
  // then unusable).
  absl::Status Add(absl::Span<const float> hidden, absl::Span<const float> extras, bool label,
                   const RowInfo& info);

  // Writes the buffered rows as the last shard, flushes index.jsonl and writes dataset.json
  // (via a temporary file and a rename). A dataset may have zero rows (and then no shards).
  // Errors: FailedPrecondition (called twice, or after an I/O error); Internal or
  // PermissionDenied (a write failed; no dataset.json is left behind).
  absl::Status Finish();

  int64_t rows() const { return total_rows_; }
  int64_t positives() const { return positives_; }

 private:
  JudgeDatasetWriter(std::string dir, DatasetSpec spec);
  absl::Status FlushShard();

  std::string dir_;
  DatasetSpec spec_;
  std::ofstream index_;
  // The current shard's rows.
  std::vector<uint8_t> hidden_bytes_;
  std::vector<float> extras_;
  std::vector<int32_t> labels_;
  std::vector<int32_t> groups_;
  int64_t shard_rows_ = 0;
  std::vector<int64_t> shard_row_counts_;  // of shards already written
  int64_t total_rows_ = 0;
  int64_t positives_ = 0;
  bool finished_ = false;
  bool failed_ = false;
};

// A whole dataset in memory, features converted to f32.
struct JudgeDataset {
  DatasetSpec spec;  // as stored (overwrite is false); spec.info is the writer's info
  int64_t rows = 0;
  int64_t positives = 0;
  std::vector<float> hidden;      // [rows, spec.hidden_size]
  std::vector<float> extras;      // [rows, spec.extra_feature_names.size()]
  std::vector<uint8_t> labels;    // [rows], 0 or 1
  std::vector<int32_t> groups;    // [rows]
  std::vector<RowInfo> index;     // [rows], from index.jsonl
};

// Loads and validates the dataset in `dir`: dataset.json's fields and types, each shard's
// tensors (names, dtypes, shapes agreeing with dataset.json; labels 0/1; groups >= 0), the
// row and positive counts, and index.jsonl (one valid record per row, row numbers in order,
// group and label agreeing with the shards).
// Errors: NotFound (no such directory, or dataset.json, a shard or index.jsonl missing);
// InvalidArgument (malformed or inconsistent content; the message names the file);
// PermissionDenied/Internal (a file cannot be read).
absl::StatusOr<JudgeDataset> LoadJudgeDataset(const std::string& dir);

// Loads several datasets of the same target (e.g. proposals of two drafts) as one: rows
// concatenated in order, groups renumbered so that no group spans two datasets, info taken from the
// first with "sources" listing every directory. Errors: those of LoadJudgeDataset; kInvalidArgument
// for an empty list or datasets whose hidden size, extra features or target fingerprint differ.
absl::StatusOr<JudgeDataset> LoadJudgeDatasets(const std::vector<std::string>& dirs);

// Row indices of a train / validation / test split (each ascending).
struct DatasetSplit {
  std::vector<int64_t> train;
  std::vector<int64_t> validation;
  std::vector<int64_t> test;
};

// Splits `dataset`'s rows by whole groups: the distinct groups are shuffled with a
// deterministic PRNG seeded by `seed` (same result on every platform), the first
// round(test_fraction * groups) go to test, the next round(validation_fraction * groups) to
// validation, the rest to train. Fractions are of groups, not rows.
// Errors: InvalidArgument (a fraction outside [0, 1] or their sum over 1).
absl::StatusOr<DatasetSplit> SplitByGroup(const JudgeDataset& dataset,
                                          double validation_fraction, double test_fraction,
                                          uint64_t seed);

}  // namespace verdict::judge

#endif  // VERDICT_JUDGE_DATASET_JUDGE_DATASET_H_
