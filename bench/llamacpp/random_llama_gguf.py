#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes a random-weight Llama GGUF file of a real model's shape, readable by llama.cpp and Verdict.

The shape is Llama-3.2-1B's (16 layers, hidden 2048, 32 heads / 8 kv heads, FFN 8192, vocab 128256,
tied embeddings, RoPE theta 5e5 with Llama-3.1 frequency scaling: rope_freqs.weight) unless --layers
keeps fewer. Weights are N(0, 0.02) from a fixed seed, stored as BF16 (or F32); the other types of the
comparison come from llama.cpp's own llama-quantize, as users make them. The vocabulary is synthetic
(256 byte tokens, then 2- and 3-character merges, then 256 control tokens) because the benchmark
feeds token ids, not text; llama.cpp requires a BPE vocabulary with merges to load a file at all.

Usage: random_llama_gguf.py OUT.gguf [--dtype bf16|f32] [--layers N] [--seed S]
"""
import argparse
import sys
from pathlib import Path

import numpy as np

import gguf
from tokenizers import pre_tokenizers

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from make_fixtures import llama3_rope_freqs  # noqa: E402  (the converter's rope_freqs.weight)

SHAPE = dict(hidden=2048, layers=16, heads=32, kv_heads=8, ffn=8192, vocab=128256, rope_theta=500000.0,
             context=131072, eps=1e-5, rope_factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
             original_context=8192)


def synthetic_vocab(size: int, n_special: int = 256):
    tokens = sorted(pre_tokenizers.ByteLevel.alphabet())  # GPT-2's 256 byte characters
    merges = []
    alphabet = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    pairs = [a + b for a in alphabet for b in alphabet]
    for p in pairs:
        tokens.append(p)
        merges.append(f"{p[0]} {p[1]}")
    for p in pairs:
        for c in alphabet:
            if len(tokens) >= size - n_special:
                break
            tokens.append(p + c)
            merges.append(f"{p} {c}")
    while len(tokens) < size - n_special:  # not reached for Llama-3's vocabulary
        tokens.append(f"<unused_{len(tokens)}>")
    types = [gguf.TokenType.NORMAL] * len(tokens)
    for i in range(n_special):
        tokens.append(f"<|reserved_special_token_{i}|>")
        types.append(gguf.TokenType.CONTROL)
    return tokens, [int(t) for t in types], merges


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    ap.add_argument("--layers", type=int, default=SHAPE["layers"])
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    s = SHAPE
    rng = np.random.default_rng(args.seed)
    head_dim = s["hidden"] // s["heads"]
    qtype = gguf.GGMLQuantizationType.BF16 if args.dtype == "bf16" else gguf.GGMLQuantizationType.F32
    w = gguf.GGUFWriter(args.out, "llama")
    w.add_type("model")
    w.add_name(f"random Llama-3.2-1B shape ({args.layers} layers, seed {args.seed})")
    w.add_block_count(args.layers)
    w.add_context_length(s["context"])
    w.add_embedding_length(s["hidden"])
    w.add_feed_forward_length(s["ffn"])
    w.add_head_count(s["heads"])
    w.add_head_count_kv(s["kv_heads"])
    w.add_rope_freq_base(s["rope_theta"])
    w.add_layer_norm_rms_eps(s["eps"])
    w.add_file_type(int(gguf.LlamaFileType.MOSTLY_BF16 if args.dtype == "bf16" else gguf.LlamaFileType.ALL_F32))
    w.add_vocab_size(s["vocab"])
    w.add_rope_dimension_count(head_dim)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    tokens, types, merges = synthetic_vocab(s["vocab"])
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("llama-bpe")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(s["vocab"] - 256)
    w.add_eos_token_id(s["vocab"] - 255)
    w.add_add_bos_token(True)

    def add(name, shape, norm=False):
        if norm:
            w.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32))
            return
        data = (0.02 * rng.standard_normal(shape, dtype=np.float32))
        w.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)

    w.add_tensor("rope_freqs.weight", llama3_rope_freqs({
        "rope_theta": s["rope_theta"], "hidden_size": s["hidden"], "num_attention_heads": s["heads"],
        "rope_scaling": {"factor": s["rope_factor"], "low_freq_factor": s["low_freq_factor"],
                         "high_freq_factor": s["high_freq_factor"],
                         "original_max_position_embeddings": s["original_context"]}}))
    add("token_embd.weight", (s["vocab"], s["hidden"]))
    add("output_norm.weight", (s["hidden"],), norm=True)
    kv = s["kv_heads"] * head_dim
    for i in range(args.layers):
        add(f"blk.{i}.attn_norm.weight", (s["hidden"],), norm=True)
        add(f"blk.{i}.attn_q.weight", (s["hidden"], s["hidden"]))
        add(f"blk.{i}.attn_k.weight", (kv, s["hidden"]))
        add(f"blk.{i}.attn_v.weight", (kv, s["hidden"]))
        add(f"blk.{i}.attn_output.weight", (s["hidden"], s["hidden"]))
        add(f"blk.{i}.ffn_norm.weight", (s["hidden"],), norm=True)
        add(f"blk.{i}.ffn_gate.weight", (s["ffn"], s["hidden"]))
        add(f"blk.{i}.ffn_up.weight", (s["ffn"], s["hidden"]))
        add(f"blk.{i}.ffn_down.weight", (s["hidden"], s["ffn"]))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
