// SPDX-License-Identifier: Apache-2.0
// The CI form of a fuzz target (docs/fuzzing.md): the same LLVMFuzzerTestOneInput (and custom
// mutator) linked with this small driver instead of libFuzzer, so any compiler builds it and
// CTest runs it. It replays the target's in-code seeds and the kept corpus (regression inputs
// included), then runs a bounded number of mutated inputs from a seed it prints.
//
//   <target>_fuzz_ci [--iterations N] [--seconds S] [--max-len BYTES] [--write-seeds DIR] PATH...
//
// PATH: corpus directories or single input files (a file alone reproduces a crash). The seed comes
// from VERDICT_FUZZ_SEED or the clock. A crash, sanitizer report or FUZZ_CHECK failure aborts; the
// input that did it is written first to crash-<target>-<seed>-<n> in VERDICT_FUZZ_ARTIFACTS (or
// the working directory) and the command to replay it is printed. Without coverage feedback the
// mutations are blind, but stacked: a mutated input that the target did not reject (return -1)
// sometimes joins the pool it draws from.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_util.h"

extern "C" __attribute__((weak)) size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                                                unsigned int seed);
// Valid inputs a target builds in code (the first corpus entries); optional.
__attribute__((weak)) std::vector<std::string> VerdictFuzzSeeds();

namespace {

std::mt19937_64 g_rng;
// The input being run, for the crash handler (written before each run; one thread).
const uint8_t* g_current = nullptr;
size_t g_current_size = 0;
char g_crash_path[4096] = "";
char g_reproduce[16384] = "";

// Copies `text` into a fixed buffer the crash handler reads (truncating).
template <size_t N>
void SetText(char (&buffer)[N], const std::string& text) {
  const size_t n = std::min(text.size(), N - 1);
  std::memcpy(buffer, text.data(), n);
  buffer[n] = '\0';
}

void OnCrash(int sig) {
  if (g_current != nullptr && g_crash_path[0] != '\0') {
    const int fd = open(g_crash_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      size_t done = 0;
      while (done < g_current_size) {
        const ssize_t n = write(fd, g_current + done, g_current_size - done);
        if (n <= 0) break;
        done += static_cast<size_t>(n);
      }
      close(fd);
    }
    const ssize_t ignored = write(2, g_reproduce, strlen(g_reproduce));
    (void)ignored;
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

uint64_t Below(uint64_t n) { return n == 0 ? 0 : g_rng() % n; }

// Writes `v`'s low `bytes` bytes, little-endian, at `at`.
void PutLittleEndian(uint8_t* data, size_t at, uint64_t v, size_t bytes) {
  for (size_t i = 0; i < bytes; ++i) data[at + i] = static_cast<uint8_t>(v >> (8 * i));
}

}  // namespace

// libFuzzer's byte-level mutator, re-implemented small: erase, insert, overwrite, bit flips,
// interesting integers, copied chunks and ASCII numbers replaced by edge values.
extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size) {
  if (max_size == 0) return 0;
  size = std::min(size, max_size);
  static constexpr uint64_t kInteresting[] = {0, 1, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000,
                                              0x7fffffff, 0x80000000, 0xffffffff, 0x7fffffffffffffff,
                                              0xffffffffffffffff};
  static const char* const kNumbers[] = {"0", "-1", "1", "2147483647", "2147483648", "-2147483649", "4294967296",
                                         "9223372036854775807", "18446744073709551615", "1e308", "-0", "0.5",
                                         "1e-320", "257", "NaN", "inf"};
  switch (size == 0 ? 1 : Below(9)) {
    case 0: {  // erase a range
      const size_t at = Below(size);
      const size_t n = 1 + Below(std::min<size_t>(size - at, 16));
      std::memmove(data + at, data + at + n, size - at - n);
      return size - n;
    }
    case 1: {  // insert random bytes
      const size_t n = std::min<size_t>(1 + Below(8), max_size - size);
      if (n == 0) break;
      std::vector<uint8_t> bytes(data, data + size);
      std::vector<uint8_t> added(n);
      for (uint8_t& b : added) b = static_cast<uint8_t>(g_rng());
      bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(Below(size + 1)), added.begin(), added.end());
      std::memcpy(data, bytes.data(), bytes.size());
      return bytes.size();
    }
    case 2: data[Below(size)] = static_cast<uint8_t>(g_rng()); return size;
    case 3: data[Below(size)] ^= static_cast<uint8_t>(1u << Below(8)); return size;
    case 4: {  // an interesting integer of 1, 2, 4 or 8 bytes
      static constexpr size_t kWidths[] = {1, 2, 4, 8};
      const size_t width = kWidths[Below(4)];
      if (size < width) break;
      PutLittleEndian(data, Below(size - width + 1), kInteresting[Below(std::size(kInteresting))], width);
      return size;
    }
    case 5: {  // copy a chunk over another place
      const size_t from = Below(size);
      const size_t to = Below(size);
      const size_t n = 1 + Below(std::min(size - from, size - to));
      std::memmove(data + to, data + from, n);
      return size;
    }
    case 6: {  // replace an ASCII number by an edge value
      std::vector<size_t> starts;
      for (size_t i = 0; i < size; ++i) {
        if ((data[i] >= '0' && data[i] <= '9') && (i == 0 || !(data[i - 1] >= '0' && data[i - 1] <= '9'))) {
          starts.push_back(i);
        }
      }
      if (starts.empty()) break;
      const size_t at = starts[Below(starts.size())];
      size_t end = at;
      while (end < size && ((data[end] >= '0' && data[end] <= '9') || data[end] == '.')) ++end;
      const std::string number = kNumbers[Below(std::size(kNumbers))];
      if (size - (end - at) + number.size() > max_size) break;
      std::string rewritten(reinterpret_cast<const char*>(data), at);
      rewritten += number;
      rewritten.append(reinterpret_cast<const char*>(data + end), size - end);
      std::memcpy(data, rewritten.data(), rewritten.size());
      return rewritten.size();
    }
    case 7: {  // truncate
      return Below(size + 1);
    }
    default: {  // duplicate a chunk (grows the input)
      const size_t from = Below(size);
      const size_t n = std::min<size_t>(1 + Below(std::min<size_t>(size - from, 64)), max_size - size);
      if (n == 0) break;
      std::vector<uint8_t> bytes(data, data + size);
      const std::vector<uint8_t> chunk(data + from, data + from + n);
      bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(Below(size + 1)), chunk.begin(), chunk.end());
      std::memcpy(data, bytes.data(), bytes.size());
      return bytes.size();
    }
  }
  if (size > 0) data[Below(size)] = static_cast<uint8_t>(g_rng());
  return size;
}

namespace {

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The target's verdict: 0, or -1 for an input it rejected early (libFuzzer's "do not add it to
// the corpus"), which this driver does not mutate further either.
int Run(const std::string& input) {
  g_current = reinterpret_cast<const uint8_t*>(input.data());
  g_current_size = input.size();
  const int result = LLVMFuzzerTestOneInput(g_current, g_current_size);
  g_current = nullptr;
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string name = std::filesystem::path(argv[0]).filename().string();
  uint64_t iterations = 10000;
  double seconds = 30;
  size_t max_len = 8192;
  std::string write_seeds;
  std::vector<std::string> paths;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s: %s needs a value\n", name.c_str(), a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--iterations") {
      iterations = std::stoull(value());
    } else if (a == "--seconds") {
      seconds = std::stod(value());
    } else if (a == "--max-len") {
      max_len = std::stoull(value());
    } else if (a == "--write-seeds") {
      write_seeds = value();
    } else {
      paths.push_back(a);
    }
  }
  uint64_t seed = static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  if (const char* env = std::getenv("VERDICT_FUZZ_SEED"); env != nullptr && *env != '\0') {
    seed = std::stoull(env);
  }
  g_rng.seed(seed);

  std::vector<std::string> pool;
  if (VerdictFuzzSeeds != nullptr) pool = VerdictFuzzSeeds();
  if (!write_seeds.empty()) {
    std::filesystem::create_directories(write_seeds);
    for (size_t i = 0; i < pool.size(); ++i) {
      std::ofstream(std::filesystem::path(write_seeds) / ("seed-" + std::to_string(i)), std::ios::binary) << pool[i];
    }
    std::printf("%s: wrote %zu seeds to %s\n", name.c_str(), pool.size(), write_seeds.c_str());
    return 0;
  }
  size_t files = 0;
  for (const std::string& p : paths) {
    std::vector<std::filesystem::path> inputs;
    if (std::filesystem::is_directory(p)) {
      for (const auto& e : std::filesystem::directory_iterator(p)) {
        if (e.is_regular_file()) inputs.push_back(e.path());
      }
      std::sort(inputs.begin(), inputs.end());
    } else {
      inputs.push_back(p);
    }
    for (const auto& in : inputs) {
      pool.push_back(ReadFile(in));
      ++files;
    }
  }
  const char* artifacts = std::getenv("VERDICT_FUZZ_ARTIFACTS");
  const std::string dir = artifacts != nullptr && *artifacts != '\0' ? artifacts : ".";
  std::printf("%s: seed %llu (VERDICT_FUZZ_SEED=%llu reproduces this run): %zu inputs (%zu files), then up to %llu "
              "mutated inputs in %.0f s\n",
              name.c_str(), static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed), pool.size(),
              files, static_cast<unsigned long long>(iterations), seconds);
  std::fflush(stdout);
  for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) std::signal(sig, OnCrash);

  // Replay: every kept input must still pass.
  for (size_t i = 0; i < pool.size(); ++i) {
    const std::string path = dir + "/crash-" + name + "-replay-" + std::to_string(i);
    SetText(g_crash_path, path);
    SetText(g_reproduce, name + ": crashed on kept input " + std::to_string(i) + "; a copy is in " + path + "\n");
    Run(pool[i]);
  }
  if (pool.empty()) pool.emplace_back();

  const auto start = std::chrono::steady_clock::now();
  std::vector<uint8_t> buffer(max_len);
  uint64_t ran = 0;
  for (; ran < iterations; ++ran) {
    if ((ran & 63) == 0 &&
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > seconds) {
      break;
    }
    const std::string& base = pool[Below(pool.size())];
    size_t size = std::min(base.size(), max_len);
    std::memcpy(buffer.data(), base.data(), size);
    // Mostly one mutation at a time (most mutated inputs are rejected early), sometimes a stack.
    for (uint64_t n = Below(4) == 0 ? 2 + Below(4) : 1; n > 0; --n) {
      size = LLVMFuzzerCustomMutator != nullptr && Below(16) != 0
                 ? LLVMFuzzerCustomMutator(buffer.data(), size, max_len, static_cast<unsigned int>(g_rng()))
                 : LLVMFuzzerMutate(buffer.data(), size, max_len);
    }
    const std::string input(reinterpret_cast<const char*>(buffer.data()), size);
    const std::string path = dir + "/crash-" + name + "-" + std::to_string(seed) + "-" + std::to_string(ran);
    SetText(g_crash_path, path);
    SetText(g_reproduce, name + ": crashed on mutated input " + std::to_string(ran) + " of seed " +
                             std::to_string(seed) + "; the input is in " + path + "; replay it with: " + argv[0] +
                             " " + path + "\n");
    if (Run(input) == 0 && Below(4) == 0) {
      if (pool.size() < 4096) {
        pool.push_back(input);
      } else {
        pool[Below(pool.size())] = input;
      }
    }
  }
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%s: ok: replayed %zu kept inputs, ran %llu mutated inputs in %.1f s (seed %llu)\n", name.c_str(),
              files, static_cast<unsigned long long>(ran), took, static_cast<unsigned long long>(seed));
  return 0;
}
