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
#include "engine/cuda/cuda_backend.h"
#include "engine/random_weights.h"
#include "nlohmann/json.hpp"
#include "engine/ready_model.h"
#include "services/cli/cli_util.h"
#include "services/cli/commands.h"
#include "services/cli/decode_bench.h"

namespace verdict::cli {
namespace {

struct BenchFlags {
  std::string model;
  std::string random;
  std::string dtype = "bf16";
  PlacementFlags placement;
  int64_t prompt_tokens = 128;
  int64_t decode_tokens = 32;
  int repeats = 5;
  std::vector<int64_t> ks = {1, 2, 4, 8, 16, 32};
  std::vector<int64_t> batches = {1};
  int64_t layers = 0;
  bool cuda_graphs = true;
  bool full_outputs = false;
  engine::SamplingParams sampling;
  bool fuse_projections = true;
  bool own_gemv = true;
  bool programmatic_launch = false;
  bool tensor_core_prefill = false;
  bool unverified_paths = false;
  std::string json;
};

using Clock = std::chrono::steady_clock;

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
  if (name == "fp8") return engine::DType::kF8E4M3Block;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown dtype '", name, "'; use f32, f16, bf16, q8_0 or fp8"));
}

absl::Status RunBench(const BenchFlags& flags) {
  if (flags.model.empty() == flags.random.empty()) {
    return absl::InvalidArgumentError("give exactly one of --model and --random");
  }
  const int threads = flags.placement.threads > 0 ? flags.placement.threads
                                        : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  VERDICT_ASSIGN_OR_RETURN(const engine::DeviceName device, engine::ParseDeviceName(flags.placement.device));
  const bool on_cpu = !device.cuda;
  engine::CudaBackendOptions cuda_options;
  cuda_options.cuda_graphs = flags.cuda_graphs;
  cuda_options.fuse_projections = flags.fuse_projections;
  cuda_options.own_gemv = flags.own_gemv ? engine::OwnGemv::kTimed : engine::OwnGemv::kNever;
  cuda_options.programmatic_launch = flags.programmatic_launch;
  cuda_options.tensor_core_prefill = flags.tensor_core_prefill;
  if (flags.unverified_paths) cuda_options = cuda_options.UnverifiedPaths();
  VERDICT_ASSIGN_OR_RETURN(const engine::KvCacheType kv_cache, engine::ParseKvCacheType(flags.placement.kv_cache));
  VERDICT_ASSIGN_OR_RETURN(std::unique_ptr<engine::Backend> backend,
                           engine::CreateBackendForDevice(flags.placement.device, threads, cuda_options,
                                                          flags.placement.fp8, kv_cache));
  std::unique_ptr<engine::WeightSource> random_weights;
  engine::LlamaConfig config;
  std::string label;
  std::unique_ptr<engine::ModelSlice> model;
  engine::LoadedModel loaded;
  if (!flags.random.empty()) {
    VERDICT_ASSIGN_OR_RETURN(config, engine::PresetConfig(flags.random));
    if (flags.layers > 0) config.num_layers = std::min(config.num_layers, flags.layers);
    VERDICT_ASSIGN_OR_RETURN(engine::DType dtype, ParseDType(flags.dtype));
    std::fprintf(stderr, "[bench] creating random %s weights (%lld layers) in %s...\n",
                 flags.random.c_str(), (long long)config.num_layers, flags.dtype.c_str());
    VERDICT_ASSIGN_OR_RETURN(random_weights, engine::CreateRandomWeights(config, dtype, 1234));
    label = absl::StrCat("random ", flags.random, flags.layers > 0 ? absl::StrCat(" (", config.num_layers, " layers)") : "",
                         " ", flags.dtype);
  } else {
    VERDICT_ASSIGN_OR_RETURN(loaded, engine::LoadModel(flags.model));
    config = loaded.config;
    label = loaded.path;
  }
  std::fprintf(stderr, "[bench] loading onto %s...\n", flags.placement.device.c_str());
  VERDICT_ASSIGN_OR_RETURN(model, engine::ModelSlice::Create(
                                      config, random_weights ? *random_weights : *loaded.weights, {}, backend.get()));
  // The GPU holds its own copy of the weights; the CPU backend reads the host tensors in place.
  if (!on_cpu) random_weights.reset();
  DecodeBenchOptions options;
  options.prompt_tokens = flags.prompt_tokens;
  options.decode_tokens = flags.decode_tokens;
  options.repeats = flags.repeats;
  options.batches = flags.batches;
  options.ks = flags.ks;
  options.full_outputs = flags.full_outputs;
  options.sampling = flags.sampling;
  VERDICT_RETURN_IF_ERROR(engine::ValidateSamplingParams(flags.sampling));
  if (flags.full_outputs && !flags.sampling.greedy()) {
    return absl::InvalidArgumentError("--temperature samples on the backend; it cannot go with --full-outputs");
  }
  VERDICT_ASSIGN_OR_RETURN(DecodeBenchResult r, RunDecodeBench(*model, options));

  std::string bandwidth_label;
  double bandwidth = 0;
  if (on_cpu) {
    bandwidth = CopyBandwidth(threads);
    bandwidth_label = "memcpy";
  } else {
    VERDICT_ASSIGN_OR_RETURN(bandwidth, engine::MeasureCudaCopyBandwidth(device.index));
    bandwidth_label = "device-to-device copy, bytes read + written";
  }
  const double streamed = static_cast<double>(model->streamed_weight_bytes());
  const double floor_tok_s = bandwidth / streamed;
  std::string device_label = flags.placement.device;
  if (!on_cpu) {
    device_label = engine::CudaDeviceDescription(device.index)
                       .value_or(flags.placement.device);
  } else {
    device_label = absl::StrCat("cpu, ", threads, " thread(s)");
  }
  std::printf("model: %s on %s, KV cache %s\n", label.c_str(), device_label.c_str(), flags.placement.kv_cache.c_str());
  std::printf("%.3f B parameters, %.2f GB of weights streamed per decode step\n",
              model->num_parameters() / 1e9, streamed / 1e9);
  std::printf("prefill (%lld tokens):  %9.1f tok/s\n", (long long)flags.prompt_tokens, r.prefill_tok_s);
  std::printf("memory floor:          %9.2f steps/s (%s %.2f GB/s / weight bytes per step)\n",
              floor_tok_s, bandwidth_label.c_str(), bandwidth / 1e9);
  std::printf("q|k|v and gate|up: %s%s\n", model->stacked_projections() ? "stacked products" : "separate products",
              flags.placement.fp8 ? ", quantized to FP8 at load" : "");
  std::printf("outputs: %s\n", flags.full_outputs
                                  ? "full logits rows and hidden states to the host"
                                  : flags.sampling.greedy()
                                        ? "logits summaries + judge probe on the backend (--full-outputs for rows)"
                                        : "logits summaries + judge probe + sampled rule on the backend");
  std::printf("decode (median of %lld steps):\n", (long long)flags.decode_tokens);
  std::printf("  %6s %10s %12s %14s\n", "batch", "ms/step", "tok/s", "% of floor");
  for (const auto& row : r.decode) {
    std::printf("  %6lld %10.3f %12.1f %13.0f%%\n", (long long)row.batch, row.step_ms, row.tok_s,
                100.0 * (1e3 / row.step_ms) / floor_tok_s);
  }
  if (!r.verify.empty()) {
    std::printf("verification pass, batch 1 (k drafts + 1 committed token per forward):\n");
    std::printf("  %4s %10s %12s\n", "k", "ms", "x decode");
    for (const auto& row : r.verify) {
      std::printf("  %4lld %10.3f %12.2f\n", (long long)row.k, row.ms, row.ratio);
    }
  }
  if (!on_cpu) {
    const engine::CudaBackendStats stats = engine::GetCudaBackendStats(*backend);
    std::printf("steps: %lld op by op, %lld as CUDA graph replays (%lld shapes captured); "
                "%lld matmul shapes tuned (%lld on our own skinny-product kernel); device memory "
                "%.2f GB reserved\n",
                (long long)stats.eager_steps, (long long)stats.graph_replays,
                (long long)stats.graphs_captured, (long long)stats.matmul_shapes_tuned,
                (long long)stats.matmul_shapes_on_own_gemv, stats.device_bytes_reserved / 1e9);
  }
  double read_bw = 0;
  if (on_cpu) {
    read_bw = ReadBandwidth(threads);
    std::printf("read-only floor:       %9.2f steps/s (read bandwidth %.2f GB/s)\n", read_bw / streamed,
                read_bw / 1e9);
  }
  if (!flags.json.empty()) {
    nlohmann::json j;
    j["model"] = label;
    j["device"] = device_label;
    j["threads"] = threads;
    j["parameters"] = model->num_parameters();
    j["streamed_weight_bytes"] = streamed;
    j["outputs"] = flags.full_outputs ? "full" : "summaries";
    j["temperature"] = flags.sampling.temperature;
    j["top_k"] = flags.sampling.top_k;
    j["top_p"] = flags.sampling.top_p;
    j["fp8_projections"] = flags.placement.fp8;
    j["kv_cache"] = flags.placement.kv_cache;
    j["stacked_projections"] = model->stacked_projections();
    j["prefill_tokens"] = flags.prompt_tokens;
    j["prefill_tok_s"] = r.prefill_tok_s;
    j["bandwidth_gb_s"] = bandwidth / 1e9;
    j["memory_floor_steps_s"] = floor_tok_s;
    j["memory_floor_tok_s"] = floor_tok_s;  // batch 1 (one token per step)
    if (on_cpu) {
      j["copy_bandwidth_gb_s"] = bandwidth / 1e9;
      j["read_bandwidth_gb_s"] = read_bw / 1e9;
      j["read_floor_tok_s"] = read_bw / streamed;
    }
    for (const auto& row : r.decode) {
      j["decode"].push_back({{"batch", row.batch}, {"step_ms", row.step_ms}, {"tok_s", row.tok_s},
                             {"fraction_of_floor", (1e3 / row.step_ms) / floor_tok_s}});
    }
    if (!r.decode.empty() && r.decode.front().batch == 1) {
      j["decode_tok_s"] = r.decode.front().tok_s;
      j["decode_step_ms"] = r.decode.front().step_ms;
      j["decode_fraction_of_floor"] = r.decode.front().tok_s / floor_tok_s;
    }
    for (const auto& row : r.verify) {
      j["verify"].push_back({{"k", row.k}, {"ms", row.ms}, {"ratio_to_decode", row.ratio}});
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
                  "Random weights of a preset shape instead: llama-3.2-1b, llama-3.2-3b, llama-3.1-8b, llama-3.1-70b, tiny");
  cmd->add_option("--dtype", flags->dtype, "Weight dtype with --random: f32, f16, bf16, q8_0, fp8 (E4M3, a scale per 128 values)")->capture_default_str();
  AddPlacementFlags(cmd, &flags->placement);
  cmd->add_option("--prompt-tokens", flags->prompt_tokens, "Prefill length")->capture_default_str();
  cmd->add_option("--decode-tokens", flags->decode_tokens, "Decode steps to time")->capture_default_str();
  cmd->add_option("--repeats", flags->repeats, "Repeats per measurement")->capture_default_str();
  cmd->add_option("--k", flags->ks, "Draft lengths to time")->capture_default_str()->delimiter(',');
  cmd->add_option("--batch", flags->batches, "Concurrent sequences per decode step")
      ->capture_default_str()->delimiter(',');
  cmd->add_option("--layers", flags->layers,
                  "With --random: keep only the first N layers (e.g. a 70B layer slice that fits one GPU)");
  cmd->add_flag("!--no-cuda-graphs", flags->cuda_graphs, "CUDA: launch every step op by op");
  cmd->add_flag("!--no-fused-projections", flags->fuse_projections,
                "CUDA: separate q/k/v and gate/up products instead of stacked ones");
  cmd->add_flag("!--no-own-gemv", flags->own_gemv,
                "CUDA: skinny products on cuBLASLt only (not our own kernel where it times faster)");
  cmd->add_flag("--pdl", flags->programmatic_launch,
                "CUDA: launch our kernels with programmatic dependent launch (not yet measured)");
  cmd->add_flag("--tc-prefill", flags->tensor_core_prefill,
                "CUDA: prefill attention on the tensor cores (not yet measured)");
  cmd->add_flag("--unverified-paths", flags->unverified_paths,
                "CUDA: the paths prepared since the last GPU run (one-launch attention, the sampled "
                "rule on the device, fused add+RMSNorm; docs/gpu-notes.md)");
  cmd->add_flag("--full-outputs", flags->full_outputs,
                "Copy every logits row and hidden state to the host (as sampling and scoring do) "
                "instead of the backend's summaries and judge probe");
  cmd->add_option("--temperature", flags->sampling.temperature,
                  "> 0: also sample every output row on the backend (sampled generation and the "
                  "sampled verification rule) with this temperature")
      ->capture_default_str();
  cmd->add_option("--top-k", flags->sampling.top_k, "With --temperature: top-k (0 = off)")->capture_default_str();
  cmd->add_option("--top-p", flags->sampling.top_p, "With --temperature: top-p (1 = off)")->capture_default_str();
  cmd->add_option("--json", flags->json, "Also write the figures as JSON to this file");
  cmd->callback([flags, exit_code] {
    *exit_code = ExitCode(RunBench(*flags));
  });
}

}  // namespace verdict::cli
