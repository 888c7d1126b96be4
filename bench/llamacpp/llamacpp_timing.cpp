// SPDX-License-Identifier: Apache-2.0
// The figures `verdict bench` prints, measured the same way through llama.cpp's C API, so that the
// two engines are compared on the same GGUF file with the same method (bench/llamacpp_compare.py):
//   prefill   best of `repeats` forwards of `prompt` random tokens from an empty cache (after one
//             warm-up), output for the last row only;
//   decode    median of `decode` single-token steps after the prompt (one warm-up step first);
//   verify    median of `repeats` forwards of k + 1 tokens at the end of that context with logits
//             for EVERY row (a speculative verification pass; `llama-bench -p 9` keeps only the last
//             row), each removed from the cache again before the next.
// Prints one JSON object. Built against the llama.cpp that llama-cpp-python vendors; not part of the
// Verdict build.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "llama.h"

namespace {

using Clock = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Options {
  std::string model;
  int threads = 1;
  int prompt = 128;
  int decode = 32;
  int repeats = 5;
  std::vector<int> ks = {8};
  ggml_type kv_type = GGML_TYPE_F16;
};

[[noreturn]] void Usage(const char* why) {
  std::fprintf(stderr,
               "%s\nusage: llamacpp_timing --model FILE [--threads N] [--prompt N] [--decode N] "
               "[--repeats N] [--k N]... [--kv f16|f32]\n",
               why);
  std::exit(2);
}

Options Parse(int argc, char** argv) {
  Options o;
  bool ks_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) Usage(("missing value after " + a).c_str());
    const std::string v = argv[++i];
    if (a == "--model") {
      o.model = v;
    } else if (a == "--threads") {
      o.threads = std::atoi(v.c_str());
    } else if (a == "--prompt") {
      o.prompt = std::atoi(v.c_str());
    } else if (a == "--decode") {
      o.decode = std::atoi(v.c_str());
    } else if (a == "--repeats") {
      o.repeats = std::atoi(v.c_str());
    } else if (a == "--k") {
      if (!ks_given) o.ks.clear();
      ks_given = true;
      o.ks.push_back(std::atoi(v.c_str()));
    } else if (a == "--kv") {
      if (v == "f16") {
        o.kv_type = GGML_TYPE_F16;
      } else if (v == "f32") {
        o.kv_type = GGML_TYPE_F32;
      } else {
        Usage("--kv is f16 or f32");
      }
    } else {
      Usage(("unknown flag " + a).c_str());
    }
  }
  if (o.model.empty() || o.threads < 1 || o.prompt < 1 || o.decode < 1 || o.repeats < 1) {
    Usage("--model is required and every count must be >= 1");
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = Parse(argc, argv);
  llama_log_set([](ggml_log_level, const char*, void*) {}, nullptr);
  llama_backend_init();
  llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = 0;
  llama_model* model = llama_model_load_from_file(o.model.c_str(), mp);
  if (model == nullptr) {
    std::fprintf(stderr, "cannot load %s\n", o.model.c_str());
    return 1;
  }
  const int max_k = *std::max_element(o.ks.begin(), o.ks.end());
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = o.prompt + o.decode + max_k + 8;
  cp.n_batch = std::max(o.prompt, max_k + 1);
  cp.n_ubatch = cp.n_batch;
  cp.n_seq_max = 1;
  cp.n_threads = o.threads;
  cp.n_threads_batch = o.threads;
  cp.type_k = o.kv_type;
  cp.type_v = o.kv_type;
  cp.no_perf = true;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (ctx == nullptr) {
    std::fprintf(stderr, "cannot create a context\n");
    return 1;
  }
  const int vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> token(0, vocab - 1);
  llama_memory_t memory = llama_get_memory(ctx);
  llama_batch batch = llama_batch_init(cp.n_batch, 0, 1);

  // One forward of n tokens at positions [pos, pos + n); returns seconds.
  auto forward = [&](int pos, int n, bool all_rows) {
    batch.n_tokens = n;
    for (int i = 0; i < n; ++i) {
      batch.token[i] = token(rng);
      batch.pos[i] = pos + i;
      batch.n_seq_id[i] = 1;
      batch.seq_id[i][0] = 0;
      batch.logits[i] = all_rows || i == n - 1;
    }
    const auto start = Clock::now();
    if (llama_decode(ctx, batch) != 0) {
      std::fprintf(stderr, "llama_decode failed\n");
      std::exit(1);
    }
    llama_synchronize(ctx);
    // Touch the outputs as a caller would (they are already on the host on the CPU backend).
    volatile float sink = llama_get_logits(ctx)[0];
    (void)sink;
    return std::chrono::duration<double>(Clock::now() - start).count();
  };

  std::vector<double> prefill;
  for (int r = 0; r <= o.repeats; ++r) {
    llama_memory_clear(memory, true);
    const double s = forward(0, o.prompt, false);
    if (r > 0) prefill.push_back(s);
  }
  llama_memory_clear(memory, true);
  forward(0, o.prompt, false);
  int pos = o.prompt;
  forward(pos++, 1, true);  // warm-up
  std::vector<double> steps;
  for (int i = 0; i < o.decode; ++i) steps.push_back(forward(pos++, 1, true));
  const double step = Median(steps);
  std::printf("{\"prefill_tok_s\": %.3f, \"decode_step_ms\": %.4f, \"decode_tok_s\": %.3f, \"verify\": [",
              o.prompt / *std::min_element(prefill.begin(), prefill.end()), step * 1e3, 1.0 / step);
  for (size_t j = 0; j < o.ks.size(); ++j) {
    const int k = o.ks[j];
    std::vector<double> times;
    for (int r = 0; r <= o.repeats; ++r) {
      const double s = forward(pos, k + 1, true);
      llama_memory_seq_rm(memory, 0, pos, -1);
      if (r > 0) times.push_back(s);
    }
    std::printf("%s{\"k\": %d, \"ms\": %.4f}", j ? ", " : "", k, Median(times) * 1e3);
  }
  std::printf("], \"threads\": %d, \"kv\": \"%s\"}\n", o.threads, o.kv_type == GGML_TYPE_F16 ? "f16" : "f32");
  llama_batch_free(batch);
  llama_free(ctx);
  llama_model_free(model);
  llama_backend_free();
  return 0;
}
