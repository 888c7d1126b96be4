// SPDX-License-Identifier: Apache-2.0
// Micro-benchmarks of the CPU kernels on Llama-3.2-1B shapes (hidden 2048, intermediate 8192,
// 32 heads / 8 KV heads of 64, vocab 128256): MatMul for every weight dtype, M (tokens) and thread
// count, a whole decoder layer's seven matrix products, ThreadPool::ParallelFor overhead, and the
// memory bandwidth that defines the decode floor (memcpy and read of 1 GiB).
//
// Weights are replicated so that one sweep touches at least kMinWeightBytes (more than the L3
// cache), so M = 1 numbers are DRAM numbers, not cache numbers. They sit in 4 KiB pages like the
// memory-mapped checkpoint the loader provides; VERDICT_BENCH_HUGEPAGES=1 puts them in 2 MiB
// transparent huge pages instead (fewer TLB misses: a 4 KiB page is one bf16 row of K = 2048).
//
//   build-kern/bench/kernels_bench --benchmark_filter='Layer/bf16'
//   build-kern/bench/kernels_bench --benchmark_filter='MatMul/bf16/.*/M:1/'
//   --benchmark_min_time=0.3
#include <benchmark/benchmark.h>
#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/dtype.h"
#include "engine/ggml_quants.h"
#include "engine/kernels/matmul.h"
#include "engine/kernels/matmul_internal.h"
#include "engine/kernels/thread_pool.h"

namespace verdict::engine {
namespace {

using matmul_internal::Algo;

constexpr int64_t kMinWeightBytes = int64_t{256} << 20;

struct Shape {
  const char* name;
  int64_t n;
  int64_t k;
};
constexpr Shape kShapes[] = {
    {"q_o", 2048, 2048},        // q_proj, o_proj
    {"k_v", 512, 2048},         // k_proj, v_proj (8 KV heads x 64)
    {"gate_up", 8192, 2048},    // gate_proj, up_proj
    {"down", 2048, 8192},       // down_proj
    {"lm_head", 128256, 2048},  // tied embedding as the LM head
};
// One decoder layer, in execution order.
constexpr Shape kLayer[] = {{"q", 2048, 2048},   {"k", 512, 2048},     {"v", 512, 2048},
                            {"o", 2048, 2048},   {"gate", 8192, 2048}, {"up", 8192, 2048},
                            {"down", 2048, 8192}};

const char* Name(DType d) {
  switch (d) {
    case DType::kF32:
      return "f32";
    case DType::kF16:
      return "f16";
    case DType::kBF16:
      return "bf16";
    case DType::kQ8_0:
      return "q8_0";
    default:
      return DTypeName(d).data();  // names are literals
  }
}
const char* Name(Algo a) {
  switch (a) {
    case Algo::kAuto:
      return "auto";
    case Algo::kDirect:
      return "direct";
    case Algo::kPanel:
      return "panel";
    case Algo::kBlas:
      return "blas";
  }
  return "?";
}

// A weight buffer, 2 MiB aligned so that it can use transparent huge pages.
struct Buffer {
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint8_t, Free> bytes;
  size_t size = 0;
  uint8_t* data() const { return bytes.get(); }
};

Buffer AllocateWeights(size_t size) {
  constexpr size_t kHugePage = size_t{2} << 20;
  const size_t rounded = (size + kHugePage - 1) / kHugePage * kHugePage;
  Buffer b{std::unique_ptr<uint8_t, Buffer::Free>(
               static_cast<uint8_t*>(std::aligned_alloc(kHugePage, rounded))),
           size};
  const char* huge = std::getenv("VERDICT_BENCH_HUGEPAGES");
  if (huge != nullptr && std::strcmp(huge, "1") == 0) {
    madvise(b.data(), rounded, MADV_HUGEPAGE);
  } else {
    madvise(b.data(), rounded, MADV_NOHUGEPAGE);
  }
  return b;
}

// Random weights in `dtype`, [n, k] (values in [-1, 1); q8_0 with random scales near 1/127).
Buffer RandomWeights(DType dtype, int64_t n, int64_t k, uint32_t seed) {
  const size_t row_bytes = matmul_internal::WeightRowBytes(dtype, k);
  Buffer bytes = AllocateWeights(row_bytes * n);
  uint8_t* out = bytes.data();
  std::mt19937 rng(seed);
  if (IsGgmlBlockQuant(dtype)) {  // random bits, small positive f16 scales (and mins)
    const size_t block = GgmlBlockBytes(dtype);
    for (size_t i = 0; i < bytes.size; ++i) out[i] = static_cast<uint8_t>(rng());
    const uint16_t scale = F32ToF16(0.01f);
    for (size_t b = 0; b + block <= bytes.size; b += block) {
      const size_t at = dtype == DType::kQ6_K ? 208 : 0;
      std::memcpy(out + b + at, &scale, 2);
      if (dtype != DType::kQ4_0 && dtype != DType::kQ5_0 && dtype != DType::kQ6_K) std::memcpy(out + b + 2, &scale, 2);
    }
    return bytes;
  }
  if (dtype == DType::kQ8_0) {
    for (size_t i = 0; i < bytes.size; i += sizeof(BlockQ8_0)) {
      const uint16_t scale = F32ToF16(1.0f / 127.0f);
      std::memcpy(out + i, &scale, 2);
      for (size_t j = 2; j < sizeof(BlockQ8_0); ++j) out[i + j] = static_cast<uint8_t>(rng());
    }
    return bytes;
  }
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  const int64_t count = n * k;
  for (int64_t i = 0; i < count; ++i) {
    const float v = dist(rng);
    if (dtype == DType::kF32) {
      std::memcpy(out + i * 4, &v, 4);
    } else {
      const uint16_t h = dtype == DType::kBF16 ? F32ToBf16(v) : F32ToF16(v);
      std::memcpy(out + i * 2, &h, 2);
    }
  }
  return bytes;
}

// Copies of the same matrices, enough of them to exceed kMinWeightBytes; cached across benchmarks
// with the same key (generation is slow). Copies are made by memcpy of the first.
struct WeightSet {
  std::string key;
  std::vector<std::vector<Buffer>> copies;  // [copy][matrix]
};
WeightSet& CachedWeights(DType dtype, const std::vector<Shape>& shapes) {
  static WeightSet set;
  std::string key = Name(dtype);
  int64_t bytes_per_copy = 0;
  for (const Shape& s : shapes) {
    absl::StrAppend(&key, "/", s.n, "x", s.k);
    bytes_per_copy += static_cast<int64_t>(matmul_internal::WeightRowBytes(dtype, s.k)) * s.n;
  }
  if (set.key == key) return set;
  set.copies.clear();
  set.key = key;
  const int64_t num_copies = (kMinWeightBytes + bytes_per_copy - 1) / bytes_per_copy;
  set.copies.resize(num_copies);
  for (size_t i = 0; i < shapes.size(); ++i) {
    set.copies[0].push_back(
        RandomWeights(dtype, shapes[i].n, shapes[i].k, 17 + static_cast<uint32_t>(i)));
    for (int64_t c = 1; c < num_copies; ++c) {
      const Buffer& first = set.copies[0][i];
      Buffer copy = AllocateWeights(first.size);
      std::memcpy(copy.data(), first.data(), first.size);
      set.copies[c].push_back(std::move(copy));
    }
  }
  return set;
}

std::vector<float> RandomActivations(int64_t count) {
  std::vector<float> x(count);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (float& v : x) v = dist(rng);
  return x;
}

void SetCounters(benchmark::State& state, double weight_bytes, double flops) {
  state.counters["GB/s"] =
      benchmark::Counter(weight_bytes * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
  state.counters["GFLOP/s"] = benchmark::Counter(
      flops * static_cast<double>(state.iterations()) * 1e-9, benchmark::Counter::kIsRate);
}

void BM_MatMul(benchmark::State& state, Shape shape, DType dtype, int64_t m, int threads,
               Algo algo) {
  WeightSet& ws = CachedWeights(dtype, {shape});
  ThreadPool pool(threads);
  const std::vector<float> x = RandomActivations(m * shape.k);
  std::vector<float> y(m * shape.n);
  size_t copy = 0;
  for (auto _ : state) {
    const MatMulWeight w = {ws.copies[copy][0].data(), dtype, shape.n, shape.k};
    matmul_internal::MatMulWithAlgo(algo, x.data(), m, shape.k, w, y.data(), shape.n, &pool);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
    copy = (copy + 1) % ws.copies.size();
  }
  const double bytes =
      static_cast<double>(matmul_internal::WeightRowBytes(dtype, shape.k)) * shape.n;
  SetCounters(state, bytes, 2.0 * m * shape.n * shape.k);
}

// The seven matrix products of one decoder layer for M tokens (what a decode or verification step
// spends per layer outside attention).
void BM_Layer(benchmark::State& state, DType dtype, int64_t m, int threads) {
  const std::vector<Shape> shapes(std::begin(kLayer), std::end(kLayer));
  WeightSet& ws = CachedWeights(dtype, shapes);
  ThreadPool pool(threads);
  const std::vector<float> x = RandomActivations(m * 8192);
  std::vector<float> y(m * 8192);
  size_t copy = 0;
  double bytes = 0, flops = 0;
  for (const Shape& s : shapes) {
    bytes += static_cast<double>(matmul_internal::WeightRowBytes(dtype, s.k)) * s.n;
    flops += 2.0 * m * s.n * s.k;
  }
  for (auto _ : state) {
    for (size_t i = 0; i < shapes.size(); ++i) {
      const MatMulWeight w = {ws.copies[copy][i].data(), dtype, shapes[i].n, shapes[i].k};
      MatMul(x.data(), m, shapes[i].k, w, y.data(), shapes[i].n, &pool);
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
    copy = (copy + 1) % ws.copies.size();
  }
  SetCounters(state, bytes, flops);
}

// memcpy of a 1 GiB buffer: bytes_per_second counts the bytes copied (DRAM traffic is twice that).
void BM_MemcpyBandwidth(benchmark::State& state) {
  const size_t n = size_t{1} << 30;
  std::unique_ptr<char[]> src(new char[n]), dst(new char[n]);
  std::memset(src.get(), 1, n);
  std::memset(dst.get(), 2, n);
  for (auto _ : state) {
    std::memcpy(dst.get(), src.get(), n);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(n));
}

// XOR of a 1 GiB buffer on `threads` threads: the read bandwidth a GEMV can hope for. (Integer XOR
// is associative, so the compiler vectorizes it even in this portable, SSE2-only file.)
void BM_ReadBandwidth(benchmark::State& state, int threads) {
  const int64_t n = int64_t{1} << 27;  // uint64 words
  std::unique_ptr<uint64_t[]> buf(new uint64_t[n]);
  for (int64_t i = 0; i < n; ++i) buf[i] = static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ull;
  ThreadPool pool(threads);
  uint64_t sums[64] = {};
  for (auto _ : state) {
    pool.ParallelFor(n, 1 << 16, [&](int64_t begin, int64_t end) {
      uint64_t s = 0;
      for (int64_t i = begin; i < end; ++i) s ^= buf[i];
      sums[(begin >> 16) % 64] = s;
    });
    benchmark::DoNotOptimize(sums);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * n * 8);
}

// Cost of one ParallelFor with a trivial body (a decode step makes ~100-200 of them).
void BM_ParallelForOverhead(benchmark::State& state, int threads) {
  ThreadPool pool(threads);
  int64_t sink[8] = {};
  for (auto _ : state) {
    pool.ParallelFor(threads, 1, [&](int64_t begin, int64_t end) { sink[begin] += end; });
    benchmark::DoNotOptimize(sink);
  }
}

void RegisterAll() {
  benchmark::RegisterBenchmark("Bandwidth/memcpy_1GiB", BM_MemcpyBandwidth)->UseRealTime();
  for (int t : {1, 2}) {
    benchmark::RegisterBenchmark(absl::StrCat("Bandwidth/read_1GiB/T:", t).c_str(),
                                 BM_ReadBandwidth, t)
        ->UseRealTime();
    benchmark::RegisterBenchmark(absl::StrCat("ParallelFor/T:", t).c_str(), BM_ParallelForOverhead,
                                 t)
        ->UseRealTime();
  }
  const DType dtypes[] = {DType::kBF16, DType::kF16, DType::kQ8_0, DType::kF32, DType::kQ4_0,
                          DType::kQ4_1, DType::kQ5_K, DType::kQ4_K, DType::kQ6_K};
  const int64_t ms[] = {1, 2, 4, 8, 9, 16, 33, 64, 512};
  for (DType d : dtypes) {
    for (int64_t m : ms) {
      for (int t : {1, 2}) {
        benchmark::RegisterBenchmark(absl::StrCat("Layer/", Name(d), "/M:", m, "/T:", t).c_str(),
                                     BM_Layer, d, m, t)
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
      }
    }
  }
  for (DType d : dtypes) {
    for (const Shape& s : kShapes) {
      for (int64_t m : ms) {
        if (s.n > 100000 && m > 64) continue;  // LM head: only the last token's logits at prefill
        for (int t : {1, 2}) {
          std::vector<Algo> algos = {Algo::kAuto};
          if (m >= 16) algos = {Algo::kAuto, Algo::kPanel, Algo::kBlas};
          // The block quantizations' direct kernel against unpacking into the panel.
          if (IsGgmlBlockQuant(d) && m <= 4) algos = {Algo::kDirect, Algo::kPanel};
          for (Algo a : algos) {
            benchmark::RegisterBenchmark(
                absl::StrCat("MatMul/", Name(d), "/", s.name, "/M:", m, "/T:", t, "/", Name(a))
                    .c_str(),
                BM_MatMul, s, d, m, t, a)
                ->UseRealTime()
                ->Unit(benchmark::kMicrosecond);
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace verdict::engine

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  verdict::engine::RegisterAll();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
