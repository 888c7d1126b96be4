// SPDX-License-Identifier: Apache-2.0
// verdict selftest --gpu: validates every GPU of a node before it serves. For each device: the
// CUDA backend against the CPU backend op by op (bf16 and exact f32 modes, fresh random inputs,
// poisoned outputs; the measured paths and the unverified ones, CudaBackendOptions), a whole random model through prefill/decode/verification/rollback and greedy
// generation, then a short decode benchmark next to the device's memory floor; then tensor
// parallelism across the node's GPUs over NCCL against the unsplit model. Exit status 0 when
// everything passed, 1 when a check failed, 2 when there is no usable GPU.
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/testing/backend_checks.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/random_weights.h"
#include "nlohmann/json.hpp"
#include "services/cli/cli_util.h"
#include "services/cli/commands.h"
#include "services/cli/decode_bench.h"

namespace verdict::cli {
namespace {

struct SelftestFlags {
  bool gpu = false;
  int device = -1;  // -1: every device
  std::string bench_model = "llama-3.2-1b";
  bool bench = true;
  std::string json;
};

void PrintResults(const std::vector<engine::CheckResult>& results, int* failures,
                  nlohmann::json* out) {
  for (const engine::CheckResult& r : results) {
    std::printf("  %-4s %-62s rel.err %9.3g  tol %.0e  %s\n", r.passed ? "ok" : "FAIL",
                r.name.c_str(), r.relative_error, r.tolerance, r.detail.c_str());
    if (!r.passed) ++*failures;
    out->push_back({{"name", r.name}, {"passed", r.passed}, {"relative_error", r.relative_error},
                    {"tolerance", r.tolerance}, {"detail", r.detail}});
  }
}

absl::Status SelftestDevice(int device, const SelftestFlags& flags, int* failures, nlohmann::json* report) {
  VERDICT_ASSIGN_OR_RETURN(std::string description, engine::CudaDeviceDescription(device));
  std::printf("== %s\n", description.c_str());
  (*report)["device"] = description;
  auto cpu = engine::CreateCpuBackend({0});
  const uint64_t seed = std::random_device{}();
  std::printf("random seed %llu\n", static_cast<unsigned long long>(seed));
  (*report)["seed"] = seed;
  struct Mode {
    engine::DType weights;
    double tolerance;
  };
  VERDICT_ASSIGN_OR_RETURN(engine::LlamaConfig tiny, engine::PresetConfig("tiny"));
  VERDICT_ASSIGN_OR_RETURN(auto tiny_weights, engine::CreateRandomWeights(tiny, engine::DType::kBF16, seed));
  // Every check twice: the paths last measured on a GPU (the defaults) and those prepared since
  // (CudaBackendOptions::UnverifiedPaths), so the first GPU run verifies them all.
  for (const bool unverified : {false, true}) {
    const char* paths = unverified ? "unverified paths" : "measured paths";
    engine::CudaBackendOptions base;
    base.device = device;
    if (unverified) base = base.UnverifiedPaths();
    for (const Mode& mode : {Mode{engine::DType::kBF16, 1e-2}, Mode{engine::DType::kF32, 1e-4}}) {
      engine::CudaBackendOptions options = base;
      options.weight_dtype = mode.weights;
      VERDICT_ASSIGN_OR_RETURN(auto cuda, engine::CreateCudaBackend(options));
      engine::CheckOptions check;
      check.seed = seed;
      check.tolerance = mode.tolerance;
      const std::string dtype(engine::DTypeName(mode.weights));
      std::printf("ops, %s weights, %s:\n", dtype.c_str(), paths);
      PrintResults(engine::CheckBackendOps(*cpu, *cuda, check), failures, &(*report)["checks"]);
      std::printf("random 'tiny' model, %s weights, %s:\n", dtype.c_str(), paths);
      PrintResults(engine::CheckModel(*cpu, *cuda, tiny, *tiny_weights, check), failures,
                   &(*report)["checks"]);
    }
    // Projections quantized to FP8 at load (--fp8), against the CPU backend quantizing alike.
    auto cpu_fp8 = engine::CreateCpuBackend({.num_threads = 0, .fp8_projections = true});
    engine::CudaBackendOptions options = base;
    options.weight_dtype = engine::DType::kF8E4M3Block;
    VERDICT_ASSIGN_OR_RETURN(auto cuda, engine::CreateCudaBackend(options));
    engine::CheckOptions check;
    check.seed = seed;
    check.tolerance = 1e-2;
    std::printf("random 'tiny' model, projections in fp8, %s:\n", paths);
    PrintResults(engine::CheckModel(*cpu_fp8, *cuda, tiny, *tiny_weights, check), failures,
                 &(*report)["checks"]);
  }
  if (!flags.bench) return absl::OkStatus();

  VERDICT_ASSIGN_OR_RETURN(engine::LlamaConfig config, engine::PresetConfig(flags.bench_model));
  std::printf("benchmark: random %s, bf16\n", flags.bench_model.c_str());
  VERDICT_ASSIGN_OR_RETURN(auto weights, engine::CreateRandomWeights(config, engine::DType::kBF16, 1));
  VERDICT_ASSIGN_OR_RETURN(double bandwidth, engine::MeasureCudaCopyBandwidth(device));
  (*report)["bench"]["bandwidth_gb_s"] = bandwidth / 1e9;
  (*report)["bench"]["model"] = flags.bench_model;
  for (const bool unverified : {false, true}) {
    const char* paths = unverified ? "unverified" : "measured";
    engine::CudaBackendOptions options;
    options.device = device;
    if (unverified) options = options.UnverifiedPaths();
    VERDICT_ASSIGN_OR_RETURN(auto cuda, engine::CreateCudaBackend(options));
    VERDICT_ASSIGN_OR_RETURN(auto model, engine::ModelSlice::Create(config, *weights, {}, cuda.get()));
    DecodeBenchOptions bench;
    bench.batches = {1, 8};
    bench.ks = {16};
    bench.decode_tokens = 32;
    VERDICT_ASSIGN_OR_RETURN(DecodeBenchResult r, RunDecodeBench(*model, bench));
    const double floor = bandwidth / static_cast<double>(model->streamed_weight_bytes());
    std::printf("  %s paths: device copy bandwidth %.0f GB/s -> memory floor %.1f steps/s\n", paths,
                bandwidth / 1e9, floor);
    nlohmann::json& out = (*report)["bench"][paths];
    for (const auto& row : r.decode) {
      std::printf("  decode batch %-3lld %8.3f ms/step %9.1f tok/s  (%.0f%% of floor)\n",
                  (long long)row.batch, row.step_ms, row.tok_s, 100.0 * (1e3 / row.step_ms) / floor);
      out["decode"].push_back({{"batch", row.batch}, {"step_ms", row.step_ms}, {"tok_s", row.tok_s}});
    }
    for (const auto& row : r.verify) {
      std::printf("  verification k=%lld   %8.3f ms (%.2fx a decode step)\n", (long long)row.k, row.ms, row.ratio);
      out["verify"].push_back({{"k", row.k}, {"ms", row.ms}, {"ratio", row.ratio}});
    }
  }
  return absl::OkStatus();
}

// Tensor parallelism across the node's GPUs over NCCL (the largest power of two of them, up to 8),
// in exact f32 mode, against the unsplit model on GPU 0. A node without NCCL is reported, not
// failed: it can still serve without tensor parallelism.
absl::Status SelftestTensorParallel(int count, int* failures, nlohmann::json* report) {
  int world = 1;
  while (world * 2 <= count && world * 2 <= 8) world *= 2;
  std::vector<int> devices(world);
  for (int d = 0; d < world; ++d) devices[d] = d;
  std::printf("== tensor parallelism over %d GPU(s) with NCCL\n", world);
  (*report)["tensor_parallel_ranks"] = world;
  {
    auto probe = engine::CreateNcclCommunicators(devices);
    if (!probe.ok()) {
      std::printf("  skipped: %s\n", std::string(probe.status().message()).c_str());
      (*report)["skipped"] = std::string(probe.status().message());
      return absl::OkStatus();
    }
  }
  const engine::LlamaConfig config = engine::TensorParallelCheckConfig();
  VERDICT_ASSIGN_OR_RETURN(auto weights, engine::CreateRandomWeights(config, engine::DType::kF32, 5));
  for (const bool unverified : {false, true}) {  // as in SelftestDevice
    std::printf("%s paths:\n", unverified ? "unverified" : "measured");
    engine::CudaBackendOptions options;
    options.weight_dtype = engine::DType::kF32;
    if (unverified) options = options.UnverifiedPaths();
    VERDICT_ASSIGN_OR_RETURN(auto reference, engine::CreateCudaBackend(options));
    engine::CheckOptions check;
    check.tolerance = 1e-4;
    PrintResults(engine::CheckTensorParallel(
                     *reference,
                     [options](int rank) {
                       engine::CudaBackendOptions o = options;
                       o.device = rank;
                       return engine::CreateCudaBackend(o);
                     },
                     [devices](int) { return engine::CreateNcclCommunicators(devices); }, world,
                     config, *weights, check),
                 failures, &(*report)["checks"]);
  }
  return absl::OkStatus();
}

int RunSelftest(const SelftestFlags& flags) {
  if (!flags.gpu) {
    std::fprintf(stderr, "verdict selftest: nothing to test; pass --gpu to validate this node's GPUs\n");
    return 2;
  }
  std::string why;
  const int count = engine::CudaDeviceCount(&why);
  if (count == 0) {
    std::fprintf(stderr, "verdict selftest: no usable CUDA GPU (%s)\n", why.c_str());
    return 2;
  }
  std::vector<int> devices;
  if (flags.device >= 0) {
    if (flags.device >= count) {
      std::fprintf(stderr, "verdict selftest: device %d does not exist (%d device(s))\n", flags.device, count);
      return 2;
    }
    devices.push_back(flags.device);
  } else {
    for (int d = 0; d < count; ++d) devices.push_back(d);
  }
  int failures = 0;
  nlohmann::json report = nlohmann::json::array();
  for (int d : devices) {
    nlohmann::json device_report;
    if (absl::Status s = SelftestDevice(d, flags, &failures, &device_report); !s.ok()) {
      std::printf("  FAIL device %d: %s\n", d, std::string(s.message()).c_str());
      device_report["error"] = std::string(s.message());
      ++failures;
    }
    report.push_back(device_report);
  }
  if (flags.device < 0) {
    nlohmann::json tp_report;
    if (absl::Status s = SelftestTensorParallel(count, &failures, &tp_report); !s.ok()) {
      std::printf("  FAIL tensor parallelism: %s\n", std::string(s.message()).c_str());
      tp_report["error"] = std::string(s.message());
      ++failures;
    }
    report.push_back(tp_report);
  }
  std::printf("%s: %d failure(s) on %zu device(s)\n", failures == 0 ? "PASSED" : "FAILED", failures,
              devices.size());
  if (!flags.json.empty()) {
    if (std::FILE* f = std::fopen(flags.json.c_str(), "w")) {
      std::fprintf(f, "%s\n", report.dump(2).c_str());
      std::fclose(f);
    }
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace

void AddSelftestCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<SelftestFlags>();
  CLI::App* cmd = app.add_subcommand("selftest", "Validate this node's GPUs against the CPU reference");
  cmd->add_flag("--gpu", flags->gpu, "Check every CUDA GPU (op by op, a whole model, a short benchmark)");
  cmd->add_option("--device", flags->device, "Only this CUDA device index");
  cmd->add_option("--bench-model", flags->bench_model,
                  "Preset shape of the benchmark model (llama-3.2-1b, llama-3.1-8b, ...)")
      ->capture_default_str();
  cmd->add_flag("!--no-bench", flags->bench, "Skip the benchmark");
  cmd->add_option("--json", flags->json, "Also write the report as JSON to this file");
  cmd->callback([flags, exit_code] { *exit_code = RunSelftest(*flags); });
}

}  // namespace verdict::cli
