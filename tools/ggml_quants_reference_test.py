#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Verdict's dequantization of the GGML block formats (engine/ggml_quants.h) against the `gguf`
Python package's gguf.quants.dequantize, the independent reference.

For each of Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K:
- blocks with random bits (every quant, scale and high-bit pattern) and f16 scales/mins drawn over
  edge values: zero, -0, negative, f16 subnormals, the largest f16 (65504), ordinary values;
- where gguf can quantize (Q4_0..Q5_1): real data quantized by gguf, including constant rows, zeros,
  a single spike, very large and very small magnitudes.
The driver's values must equal the reference's to 1e-6 of the block's largest magnitude (the same
float32 formulas; exact in practice: the count of exactly equal values is printed).

Usage: ggml_quants_reference_test.py --driver build/bin/ggml_quants_driver [--workdir DIR]
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

TYPES = {"q4_0": T.Q4_0, "q4_1": T.Q4_1, "q5_0": T.Q5_0, "q5_1": T.Q5_1, "q4_k": T.Q4_K, "q5_k": T.Q5_K,
         "q6_k": T.Q6_K}
BLOCK = {"q4_0": (32, 18), "q4_1": (32, 20), "q5_0": (32, 22), "q5_1": (32, 24), "q4_k": (256, 144),
         "q5_k": (256, 176), "q6_k": (256, 210)}
# Where each format keeps its f16 scale (and min): byte offsets in the block.
F16_FIELDS = {"q4_0": [0], "q4_1": [0, 2], "q5_0": [0], "q5_1": [0, 2], "q4_k": [0, 2], "q5_k": [0, 2],
              "q6_k": [208]}
EDGE_F16 = np.array([0.0, -0.0, 1e-7, 6e-5, -0.01, 0.01, 0.5, -3.0, 65504.0, -65504.0, 1.0, 2.0 ** -14],
                    dtype=np.float16)


def random_blocks(name, count, rng):
    values, nbytes = BLOCK[name]
    raw = rng.integers(0, 256, size=(count, nbytes), dtype=np.uint8)
    for i in range(count):
        for off in F16_FIELDS[name]:
            scale = EDGE_F16[rng.integers(len(EDGE_F16))] if i % 3 == 0 else np.float16(rng.normal(0, 0.05))
            raw[i, off:off + 2] = np.frombuffer(np.float16(scale).tobytes(), dtype=np.uint8)
    return raw


def quantized_data(name, rng):
    values = BLOCK[name][0]
    rows = [rng.normal(0, 1, 4 * values), np.zeros(values), np.full(values, 3.5), np.full(values, -1e-3),
            np.concatenate([np.zeros(values - 1), [100.0]]), rng.normal(0, 1e4, values),
            rng.normal(0, 1e-6, values), rng.uniform(-1, 1, 8 * values)]
    data = np.concatenate(rows).astype(np.float32)
    return quantize(data.reshape(1, -1), TYPES[name]).reshape(-1, BLOCK[name][1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--driver", required=True)
    ap.add_argument("--workdir")
    args = ap.parse_args()
    work = args.workdir or tempfile.mkdtemp()
    os.makedirs(work, exist_ok=True)
    rng = np.random.default_rng(20261207)
    failures = 0
    for name, qtype in TYPES.items():
        sets = [("random bits", random_blocks(name, 600, rng))]
        if name in ("q4_0", "q4_1", "q5_0", "q5_1"):
            sets.append(("quantized by gguf", quantized_data(name, rng)))
        for label, blocks in sets:
            blocks = np.ascontiguousarray(blocks, dtype=np.uint8)
            path_in, path_out = os.path.join(work, f"{name}.bin"), os.path.join(work, f"{name}.f32")
            blocks.tofile(path_in)
            r = subprocess.run([args.driver, name, path_in, path_out], capture_output=True, text=True)
            if r.returncode != 0:
                print(f"FAIL {name} {label}: driver: {r.stderr.strip()}")
                failures += 1
                continue
            got = np.fromfile(path_out, dtype=np.float32).reshape(len(blocks), -1)
            want = dequantize(blocks, qtype).astype(np.float32).reshape(len(blocks), -1)
            scale = np.maximum(np.abs(want).max(axis=1, keepdims=True), 1e-30)
            bad = ~(np.abs(got - want) <= 1e-6 * scale)
            exact = int((got == want).sum())
            status = "ok" if not bad.any() else "FAIL"
            print(f"{status} {name:5s} {label:17s} {got.size:7d} values, {exact} exactly equal, "
                  f"max |diff| {float(np.abs(got - want).max()):.3g}")
            if bad.any():
                i, j = np.argwhere(bad)[0]
                print(f"  block {i} value {j}: got {got[i, j]!r}, want {want[i, j]!r}")
                failures += 1
    print("ggml quants reference:", "FAIL" if failures else "ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
