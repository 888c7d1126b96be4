#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Verdict against llama.cpp on the same GGUF files, on this CPU, with the same thread counts.

1. Builds llama.cpp as vendored by the PyPI `llama-cpp-python` sdist (pinned below; CPU only, built
   for this CPU with its AVX-512 / VNNI / BF16 paths): `llama-bench`, `llama-quantize` and
   bench/llamacpp/llamacpp_timing.cpp, which measures through llama.cpp's C API exactly what
   `verdict bench` measures (128-token prefill, single-token decode, a 9-token verification pass with
   logits for every row). Cached under --cache.
2. Makes the files: random Llama-3.2-1B-shape weights in BF16 (bench/llamacpp/random_llama_gguf.py),
   then F16, Q8_0 and Q4_K_M from it with llama-quantize (as users make them); plus the real
   SmolLM2-135M-Instruct Q4_1 file scripts/setup.sh installs.
3. Runs both engines on each file and thread count, interleaved (the order alternates every round),
   and prints medians over the rounds and the ratios Verdict / llama.cpp (above 1: Verdict faster).

Usage (repository root, after scripts/build.sh):
    .venv/bin/python bench/llamacpp_compare.py [--threads 1 2] [--rounds 3] [--only q4_k_m ...]
"""
import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SDIST = "llama_cpp_python-0.3.36.tar.gz"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
SMOLLM2 = ROOT / "models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
K = 8  # a 9-token verification pass


def sh(cmd, **kw):
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kw)


def build_llamacpp(cache: Path, jobs: int) -> Path:
    build = cache / "build"
    tools = [build / "bin/llama-bench", build / "bin/llama-quantize", build / "llamacpp_timing"]
    src_stamp = build / "source.txt"
    stamp = SDIST_SHA256 + " " + hashlib.sha256((ROOT / "bench/llamacpp/CMakeLists.txt").read_bytes()).hexdigest()
    if all(t.exists() for t in tools) and src_stamp.exists() and src_stamp.read_text() == stamp:
        # Rebuild only our timing program if it changed (cheap).
        sh(["cmake", "--build", build, "--target", "llamacpp_timing", "-j", jobs])
        return build
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / SDIST
    if not sdist.exists():
        sh([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--dest", cache,
            "llama-cpp-python==0.3.36"])
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        raise SystemExit(f"{sdist}: sha256 {digest}, expected {SDIST_SHA256}")
    src = cache / "src"
    if not (src / "vendor/llama.cpp/include/llama.h").exists():
        with tarfile.open(sdist) as tar:
            top = tar.getnames()[0].split("/")[0]
            tar.extractall(cache, filter="data")
        shutil.rmtree(src, ignore_errors=True)
        os.replace(cache / top, src)
    sh(["cmake", "-S", ROOT / "bench/llamacpp", "-B", build, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
        f"-DLLAMA_CPP_DIR={src / 'vendor/llama.cpp'}"])
    sh(["cmake", "--build", build, "--target", "llama-bench", "llama-quantize", "llamacpp_timing", "-j", jobs])
    src_stamp.write_text(stamp)
    return build


def make_files(cache: Path, build: Path, only):
    files = {}
    want = lambda name: not only or name in only  # noqa: E731
    bf16 = cache / "random-llama-3.2-1b.bf16.gguf"
    if any(want(n) for n in ("bf16", "f16", "q8_0", "q4_k_m")):
        if not bf16.exists():
            sh([sys.executable, ROOT / "bench/llamacpp/random_llama_gguf.py", bf16.with_suffix(".tmp"), "--dtype", "bf16"])
            os.replace(bf16.with_suffix(".tmp"), bf16)
        if want("bf16"):
            files["bf16"] = bf16
        for name, qtype in (("f16", "F16"), ("q8_0", "Q8_0"), ("q4_k_m", "Q4_K_M")):
            if not want(name):
                continue
            out = cache / f"random-llama-3.2-1b.{name}.gguf"
            if not out.exists():
                sh([build / "bin/llama-quantize", bf16, out.with_suffix(".tmp"), qtype, "2"],
                   stdout=subprocess.DEVNULL)
                os.replace(out.with_suffix(".tmp"), out)
            files[name] = out
    if want("smollm2-q4_1") and SMOLLM2.exists():
        files["smollm2-q4_1"] = SMOLLM2
    return files


def run_verdict(verdict: Path, model: Path, threads: int, repeats: int) -> dict:
    out = Path(f"/tmp/verdict-compare-{os.getpid()}.json")
    subprocess.run([str(verdict), "bench", "--model", str(model), "--threads", str(threads), "--k", str(K),
                    "--repeats", str(repeats), "--full-outputs", "--json", str(out)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    j = json.loads(out.read_text())
    out.unlink()
    return {"prefill_tok_s": j["prefill_tok_s"], "decode_tok_s": j["decode_tok_s"],
            "verify_ms": next(v["ms"] for v in j["verify"] if v["k"] == K)}


def run_llamacpp(build: Path, model: Path, threads: int, repeats: int) -> dict:
    r = subprocess.run([str(build / "llamacpp_timing"), "--model", str(model), "--threads", str(threads),
                        "--k", str(K), "--repeats", str(repeats)], check=True, capture_output=True, text=True)
    j = json.loads(r.stdout)
    return {"prefill_tok_s": j["prefill_tok_s"], "decode_tok_s": j["decode_tok_s"],
            "verify_ms": next(v["ms"] for v in j["verify"] if v["k"] == K)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache/verdict/llamacpp")
    ap.add_argument("--verdict", type=Path, default=ROOT / "build/bin/verdict")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", nargs="*", help="bf16 f16 q8_0 q4_k_m smollm2-q4_1")
    ap.add_argument("--llama-bench", action="store_true", help="also print llama-bench's own pp128/tg32 once")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--prepare-only", action="store_true", help="build llama.cpp and make the files, then stop")
    args = ap.parse_args()
    build = build_llamacpp(args.cache, args.jobs)
    files = make_files(args.cache, build, args.only)
    if args.prepare_only:
        for name, path in files.items():
            print(f"{name}: {path} ({path.stat().st_size / 1e9:.2f} GB)")
        return
    rows = []
    for name, path in files.items():
        for threads in args.threads:
            runs = {"verdict": [], "llama.cpp": []}
            for r in range(args.rounds):
                order = ["verdict", "llama.cpp"] if r % 2 == 0 else ["llama.cpp", "verdict"]
                for engine in order:
                    if engine == "verdict":
                        runs[engine].append(run_verdict(args.verdict, path, threads, args.repeats))
                    else:
                        runs[engine].append(run_llamacpp(build, path, threads, args.repeats))
            med = {e: {m: statistics.median(x[m] for x in v) for m in v[0]} for e, v in runs.items()}
            v, l = med["verdict"], med["llama.cpp"]
            row = {"file": name, "threads": threads, "verdict": v, "llama.cpp": l,
                   "ratio": {"prefill": v["prefill_tok_s"] / l["prefill_tok_s"],
                             "verify9": l["verify_ms"] / v["verify_ms"],
                             "decode": v["decode_tok_s"] / l["decode_tok_s"]}}
            rows.append(row)
            print(f"{name:14s} t={threads}  prefill {v['prefill_tok_s']:8.1f} vs {l['prefill_tok_s']:8.1f} tok/s "
                  f"({row['ratio']['prefill']:.2f}x)  9-token pass {v['verify_ms']:7.2f} vs {l['verify_ms']:7.2f} ms "
                  f"({row['ratio']['verify9']:.2f}x)  decode {v['decode_tok_s']:7.2f} vs {l['decode_tok_s']:7.2f} tok/s "
                  f"({row['ratio']['decode']:.2f}x)", flush=True)
            if args.llama_bench:
                sh([build / "bin/llama-bench", "-m", path, "-t", threads, "-p", "128", "-n", "32", "-r", "3"])
    print("\n| file | threads | prefill 128 (tok/s) Verdict / llama.cpp | ratio | 9-token pass (ms) Verdict / "
          "llama.cpp | ratio | decode (tok/s) Verdict / llama.cpp | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        v, l = r["verdict"], r["llama.cpp"]
        print(f"| {r['file']} | {r['threads']} | {v['prefill_tok_s']:.1f} / {l['prefill_tok_s']:.1f} | "
              f"{r['ratio']['prefill']:.2f}x | {v['verify_ms']:.2f} / {l['verify_ms']:.2f} | {r['ratio']['verify9']:.2f}x | "
              f"{v['decode_tok_s']:.2f} / {l['decode_tok_s']:.2f} | {r['ratio']['decode']:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "rounds": args.rounds, "time": time.ctime()}, indent=1))


if __name__ == "__main__":
    main()
