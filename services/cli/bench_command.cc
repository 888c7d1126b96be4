// SPDX-License-Identifier: Apache-2.0
// verdict bench: prefill and decode throughput of a model on this machine, and the cost of one
// verification pass (k draft tokens + the last committed token, k + 1 positions in one forward)
// relative to a single-token decode step, next to the memory-bandwidth floor of decoding.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "engine/random_weights.h"
#include "nlohmann/json.hpp"
#include "services/cli/cli_util.h"
#include "services/cli/commands.h"

namespace verdict::cli {
namespace {

struct BenchFlags {
  std::string model;
  std::string random;
  std::string dtype = "bf16";
  int threads = 0;
  int64_t prompt_tokens = 128;
  int64_t decode_tokens = 32;
  int repeats = 5;
  std::vector<int64_t> ks = {1, 2, 4, 8, 16, 32};
  std::string json;
};

using Clock = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Bytes per second of memcpy over a buffer far larger than the caches, using `threads` threads
// (each copies its own part), best of a few runs. Counts the bytes copied (read once, written once).
double CopyBandwidth(int threads) {
  const size_t bytes = size_t{1} << 30;
  std::vector<char> src(bytes, 1), dst(bytes, 0);
  double best = 0;
  for (int run = 0; run < 4; ++run) {
    const auto start = Clock::now();
    std::vector<std::thread> workers;
    const size_t part = bytes / threads;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] { std::memcpy(dst.data() + t * part, src.data() + t * part, part); });
    }
    for (auto& w : workers) w.join();
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    best = std::max(best, bytes / s);
  }
  return best;
}

// XOR of every 64-bit word of [p, p + n): a read-only pass that vectorises on any ISA and is
// bounded by memory bandwidth, not arithmetic.
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx2", "default")))
#endif
uint64_t XorWords(const uint64_t* p, size_t n) {
  uint64_t acc[8] = {};
  for (size_t i = 0; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] ^= p[i + j];
  }
  uint64_t total = 0;
  for (uint64_t a : acc) total ^= a;
  return total;
}

// Bytes per second of reading a 1 GiB buffer with `threads` threads, best of a few runs: a
// stricter floor than copy bandwidth, since decoding only reads weights.
double ReadBandwidth(int threads) {
  const size_t count = (size_t{1} << 30) / sizeof(uint64_t);
  std::vector<uint64_t> data(count, 0x9e3779b97f4a7c15ull);
  double best = 0;
  std::vector<uint64_t> sums(threads);
  for (int run = 0; run < 5; ++run) {
    const auto start = Clock::now();
    std::vector<std::thread> workers;
    const size_t part = count / threads;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] { sums[t] = XorWords(data.data() + t * part, part); });
    }
    for (auto& w : workers) w.join();
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    best = std::max(best, count * sizeof(uint64_t) / s);
  }
  if (sums[0] == 42) std::fprintf(stderr, " ");  // keeps the reads observable
  return best;
}

absl::StatusOr<engine::DType> ParseDType(const std::string& name) {
  if (name == "f32") return engine::DType::kF32;
  if (name == "f16") return engine::DType::kF16;
  if (name == "bf16") return engine::DType::kBF16;
  if (name == "q8_0") return engine::DType::kQ8_0;
  return absl::InvalidArgumentError(absl::StrCat("unknown dtype '", name, "'; use f32, f16, bf16 or q8_0"));
}

absl::Status RunBench(const BenchFlags& flags) {
  if (flags.model.empty() == flags.random.empty()) {
    return absl::InvalidArgumentError("give exactly one of --model and --random");
  }
  if (flags.prompt_tokens < 1 || flags.decode_tokens < 1 || flags.repeats < 1) {
    return absl::InvalidArgumentError("--prompt-tokens, --decode-tokens and --repeats must be >= 1");
  }
  const int threads = flags.threads > 0 ? flags.threads
                                        : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::unique_ptr<engine::WeightSource> random_weights;
  engine::LlamaConfig config;
  std::string label;
  std::unique_ptr<engine::Backend> backend = engine::CreateCpuBackend({threads});
  std::unique_ptr<engine::ModelSlice> model;
  engine::LoadedModel loaded;
  if (!flags.random.empty()) {
    VERDICT_ASSIGN_OR_RETURN(config, engine::PresetConfig(flags.random));
    VERDICT_ASSIGN_OR_RETURN(engine::DType dtype, ParseDType(flags.dtype));
    std::fprintf(stderr, "[bench] creating random %s weights in %s...\n", flags.random.c_str(),
                 flags.dtype.c_str());
    VERDICT_ASSIGN_OR_RETURN(random_weights, engine::CreateRandomWeights(config, dtype, 1234));
    VERDICT_ASSIGN_OR_RETURN(model, engine::ModelSlice::Create(config, *random_weights, {}, backend.get()));
    label = absl::StrCat("random ", flags.random, " ", flags.dtype);
  } else {
    VERDICT_ASSIGN_OR_RETURN(loaded, engine::LoadModel(flags.model));
    config = loaded.config;
    VERDICT_ASSIGN_OR_RETURN(model, engine::ModelSlice::Create(config, *loaded.weights, {}, backend.get()));
    label = loaded.path;
  }
  const int64_t max_k = *std::max_element(flags.ks.begin(), flags.ks.end());
  const int64_t capacity = flags.prompt_tokens + flags.decode_tokens + max_k + 2;
  if (capacity > config.max_position_embeddings) {
    return absl::InvalidArgumentError("the benchmark does not fit the model's context length");
  }
  VERDICT_ASSIGN_OR_RETURN(auto cache, model->NewKvCache(capacity));
  std::mt19937 rng(7);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(config.vocab_size - 1));
  auto random_ids = [&](int64_t n) {
    std::vector<int32_t> ids(n);
    for (auto& id : ids) id = token(rng);
    return ids;
  };
  engine::ForwardResult result;
  auto forward = [&](const std::vector<int32_t>& ids, engine::ForwardBatch::Outputs outputs) -> absl::StatusOr<double> {
    engine::ForwardBatch batch;
    batch.sequences = {{cache.get(), static_cast<int64_t>(ids.size())}};
    batch.token_ids = ids;
    batch.outputs = outputs;
    const auto start = Clock::now();
    VERDICT_RETURN_IF_ERROR(model->Forward(batch, &result));
    return std::chrono::duration<double>(Clock::now() - start).count();
  };

  // Prefill (best of repeats; a warm-up run first).
  std::vector<double> prefill_times;
  for (int r = 0; r <= flags.repeats; ++r) {
    VERDICT_RETURN_IF_ERROR(cache->Truncate(0));
    VERDICT_ASSIGN_OR_RETURN(double s, forward(random_ids(flags.prompt_tokens),
                                               engine::ForwardBatch::Outputs::kLastOfEachSequence));
    if (r > 0) prefill_times.push_back(s);
  }
  // Decode steps after the prompt.
  std::vector<double> decode_times;
  for (int64_t i = 0; i < flags.decode_tokens; ++i) {
    VERDICT_ASSIGN_OR_RETURN(double s, forward(random_ids(1), engine::ForwardBatch::Outputs::kAll));
    decode_times.push_back(s);
  }
  const double decode_step = Median(decode_times);
  // Verification passes: k drafts + last committed token, then roll back (as speculation does).
  struct VerifyRow { int64_t k; double seconds; double ratio; };
  std::vector<VerifyRow> verify;
  const int64_t base = cache->length();
  for (int64_t k : flags.ks) {
    std::vector<double> times;
    for (int r = 0; r < flags.repeats; ++r) {
      VERDICT_ASSIGN_OR_RETURN(double s, forward(random_ids(k + 1), engine::ForwardBatch::Outputs::kAll));
      VERDICT_RETURN_IF_ERROR(cache->Truncate(base));
      times.push_back(s);
    }
    const double t = Median(times);
    verify.push_back({k, t, t / decode_step});
  }
  const double copy_bw = CopyBandwidth(threads);
  const double read_bw = ReadBandwidth(threads);
  const double streamed = static_cast<double>(model->streamed_weight_bytes());
  const double floor_tok_s = copy_bw / streamed;
  const double decode_tok_s = 1.0 / decode_step;
  const double prefill_tok_s = flags.prompt_tokens / Median(prefill_times);

  std::printf("model: %s, %d thread(s), %.3f B parameters, %.2f GB streamed per decode step\n",
              label.c_str(), threads, model->num_parameters() / 1e9, streamed / 1e9);
  std::printf("prefill (%lld tokens):  %9.1f tok/s\n", (long long)flags.prompt_tokens, prefill_tok_s);
  std::printf("decode:                %9.2f tok/s (%.2f ms/step, median of %lld)\n", decode_tok_s,
              decode_step * 1e3, (long long)flags.decode_tokens);
  std::printf("memory floor:          %9.2f tok/s (copy bandwidth %.2f GB/s); decode at %.0f%% of floor\n",
              floor_tok_s, copy_bw / 1e9, 100.0 * decode_tok_s / floor_tok_s);
  std::printf("read-only floor:       %9.2f tok/s (read bandwidth %.2f GB/s); decode at %.0f%%\n",
              read_bw / streamed, read_bw / 1e9, 100.0 * decode_tok_s / (read_bw / streamed));
  std::printf("verification pass (k drafts + 1 committed token per forward):\n");
  std::printf("  %4s %10s %12s\n", "k", "ms", "x decode");
  for (const VerifyRow& row : verify) {
    std::printf("  %4lld %10.2f %12.2f\n", (long long)row.k, row.seconds * 1e3, row.ratio);
  }
  if (!flags.json.empty()) {
    nlohmann::json j;
    j["model"] = label;
    j["threads"] = threads;
    j["parameters"] = model->num_parameters();
    j["streamed_weight_bytes"] = streamed;
    j["prefill_tokens"] = flags.prompt_tokens;
    j["prefill_tok_s"] = prefill_tok_s;
    j["decode_tok_s"] = decode_tok_s;
    j["decode_step_ms"] = decode_step * 1e3;
    j["copy_bandwidth_gb_s"] = copy_bw / 1e9;
    j["memory_floor_tok_s"] = floor_tok_s;
    j["read_bandwidth_gb_s"] = read_bw / 1e9;
    j["read_floor_tok_s"] = read_bw / streamed;
    j["decode_fraction_of_floor"] = decode_tok_s / floor_tok_s;
    for (const VerifyRow& row : verify) {
      j["verify"].push_back({{"k", row.k}, {"ms", row.seconds * 1e3}, {"ratio_to_decode", row.ratio}});
    }
    std::FILE* f = std::fopen(flags.json.c_str(), "w");
    if (f == nullptr) return absl::UnavailableError(absl::StrCat("cannot write ", flags.json));
    const std::string text = j.dump(2);
    std::fprintf(f, "%s\n", text.c_str());
    std::fclose(f);
  }
  return absl::OkStatus();
}

}  // namespace

void AddBenchCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<BenchFlags>();
  CLI::App* cmd = app.add_subcommand("bench", "Prefill/decode speed and verification-pass cost");
  cmd->add_option("--model", flags->model, "Hugging Face model directory or .gguf file");
  cmd->add_option("--random", flags->random,
                  "Random weights of a preset shape instead: llama-3.2-1b, llama-3.2-3b, llama-3.1-8b, tiny");
  cmd->add_option("--dtype", flags->dtype, "Weight dtype with --random: f32, f16, bf16, q8_0")->capture_default_str();
  cmd->add_option("--threads", flags->threads, "CPU threads (0 = all)");
  cmd->add_option("--prompt-tokens", flags->prompt_tokens, "Prefill length")->capture_default_str();
  cmd->add_option("--decode-tokens", flags->decode_tokens, "Decode steps to time")->capture_default_str();
  cmd->add_option("--repeats", flags->repeats, "Repeats per measurement")->capture_default_str();
  cmd->add_option("--k", flags->ks, "Draft lengths to time")->capture_default_str()->delimiter(',');
  cmd->add_option("--json", flags->json, "Also write the figures as JSON to this file");
  cmd->callback([flags, exit_code] {
    *exit_code = ExitCode(RunBench(*flags));
  });
}

}  // namespace verdict::cli
