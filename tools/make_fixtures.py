#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Generates the tiny Llama test checkpoints under tests/fixtures/models/.

Every model is a randomly initialised transformers `LlamaForCausalLM` (fixed seeds, f32) saved
as a Hugging Face directory (config.json, generation_config.json, tokenizer.json where the model
has one, model.safetensors) and as GGUF files laid out the way llama.cpp's convert_hf_to_gguf.py
lays out a llama model (f32, f16, bf16, q8_0). Reference outputs from transformers (eager
attention, f32, no_grad) are stored next to them in reference.safetensors, also for the weights
as stored by the lossy formats (bf16, f16, q8_0) upcast to f32.

Usage (from the repository root, with the project venv):
    .venv/bin/python tools/make_fixtures.py [--out tests/fixtures/models] [--check]

The output is deterministic: rerunning writes the same bytes (CPU, single thread). --check
regenerates into a temporary folder and fails if anything differs from the committed files.
See tests/fixtures/models/README.md for the file list, tensor names and tolerances.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import math
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import gguf
from safetensors.numpy import save_file as np_save_file
from safetensors.torch import save_file as torch_save_file
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hf_export import train_byte_level_bpe  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "tests" / "fixtures" / "models"

# The pre-tokenizer pattern of Llama 3 (tiktoken cl100k-style): contractions, letters with one
# optional leading non-letter, 1-3 digit groups, punctuation runs, newlines, whitespace.
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                   "<|end_header_id|>", "<|eot_id|>"]
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + "
    "message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)
SP = "\u2581"  # SentencePiece's word-boundary symbol

# ----------------------------------------------------------------------------------------------
# Synthetic training text (the repo has no corpus and nothing may be downloaded).

_WORDS = (
    "the of and to in is was for on that with as by at from it be this are or have an which "
    "not but had his they you were her she there been one all we their has would when if so "
    "what more can about said will no up out them some time two into other than then its only "
    "new also first these after people any could over just year may most well such made like "
    "model token layer weight judge draft target verify accept reject cache shard rope head "
    "attention hidden state batch prompt answer number value sample greedy kernel memory "
    "speed test check small large fast slow good bad right wrong true false hello world "
    "llama verdict python river mountain city house water light music paper window garden"
).split()
_CONTRACTIONS = ["don't", "it's", "we'll", "they're", "I've", "you'd", "I'm", "can't", "She's"]
_UNICODE = ["café", "naïve", "Größe", "façade", "東京", "日本語", "ñandú", "Zürich", "€5", "🙂"]
_CODE = [
    "def add(x, y):\n    return x + y\n",
    "for (int i = 0; i < n; ++i) {\n  sum += a[i];\n}\n",
    "if x == 3.14:\n    print(\"pi\")\n",
    "{\"key\": [1, 2, 3], \"ok\": true}\n",
]


def _sentence(rng: random.Random, ascii_only: bool) -> str:
    n = rng.randint(4, 14)
    words = []
    for _ in range(n):
        r = rng.random()
        if r < 0.06:
            words.append(rng.choice(_CONTRACTIONS))
        elif r < 0.10:
            words.append(str(rng.randint(0, 99999)))
        elif r < 0.12 and not ascii_only:
            words.append(rng.choice(_UNICODE))
        else:
            w = rng.choice(_WORDS)
            words.append(w.capitalize() if rng.random() < 0.1 else w)
    words[0] = words[0].capitalize()
    end = rng.choice([".", ".", ".", "!", "?", ",", ":", ";"])
    return " ".join(words) + end


def make_corpus(seed: int, n_lines: int, ascii_only: bool) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for i in range(n_lines):
        if not ascii_only and i % 25 == 0:
            lines.append(rng.choice(_CODE))
        sents = [_sentence(rng, ascii_only) for _ in range(rng.randint(1, 4))]
        sep = "  " if rng.random() < 0.05 else " "
        lines.append(sep.join(sents) + ("\n\n" if rng.random() < 0.2 else "\n"))
    return lines


# ----------------------------------------------------------------------------------------------
# Tokenizers


def make_llama3_tokenizer(vocab_size: int) -> Tokenizer:
    """Byte-level BPE with the Llama-3 pre-tokenizer; specials appended after the learned vocab."""
    tok = train_byte_level_bpe(
        make_corpus(seed=1234, n_lines=3000, ascii_only=False),
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        vocab_size - len(LLAMA3_SPECIALS), LLAMA3_SPECIALS)
    assert tok.get_vocab_size() == vocab_size
    return tok


def make_sp_vocab(vocab_size: int):
    """A SentencePiece-style (Llama-2 "llama" GGUF vocab) BPE vocabulary.

    Layout as in Llama 2: <unk>, <s>, </s>, the 256 byte tokens <0x00>..<0xFF>, learned merged
    pieces in merge order (score -rank), then the single characters. Returns (tokens, scores,
    token_types, merges) where merges are (left, right) pairs in rank order.
    """
    specials = ["<unk>", "<s>", "</s>"]
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    n_learned = vocab_size - len(specials) - len(byte_tokens)
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.Prepend(SP), normalizers.Replace(" ", SP)])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SP, prepend_scheme="never", split=True)
    trainer = trainers.BpeTrainer(vocab_size=n_learned, min_frequency=2, show_progress=False,
                                  limit_alphabet=60, special_tokens=[])
    tok.train_from_iterator(make_corpus(seed=4321, n_lines=1500, ascii_only=True), trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    vocab: dict[str, int] = model["vocab"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    assert len(vocab) == n_learned, (len(vocab), n_learned)
    merged = ["".join(m) for m in merges]
    merged_set = set(merged)
    chars = sorted((p for p in vocab if p not in merged_set), key=lambda p: vocab[p])
    pieces = merged + chars
    assert len(pieces) == n_learned and len(set(pieces)) == n_learned
    tokens = specials + byte_tokens + pieces
    scores = [0.0] * (len(specials) + len(byte_tokens)) + [-float(i) for i in range(len(pieces))]
    types = ([int(gguf.TokenType.UNKNOWN), int(gguf.TokenType.CONTROL), int(gguf.TokenType.CONTROL)]
             + [int(gguf.TokenType.BYTE)] * 256 + [int(gguf.TokenType.NORMAL)] * len(pieces))
    return tokens, scores, types, merges


def make_sp_hf_tokenizer(tokens, merges) -> Tokenizer:
    """The tokenizer.json equivalent of the SP vocab (as HF converts Llama-2's tokenizer.model)."""
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=list(merges), unk_token="<unk>",
                               byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend(SP), normalizers.Replace(" ", SP)])
    tok.decoder = decoders.Sequence([decoders.Replace(SP, " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in ("<unk>", "<s>", "</s>")])
    tok.post_processor = processors.TemplateProcessing(
        single="<s>:0 $A:0", pair="<s>:0 $A:0 <s>:1 $B:1", special_tokens=[("<s>", 1)])
    return tok


# ----------------------------------------------------------------------------------------------
# Models


def init_weights(model: LlamaForCausalLM, seed: int) -> None:
    """Deterministic init, larger than HF's default so logits have a useful spread and
    norm weights differ from 1 (a loader that skips them is caught)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.ndim == 1:  # RMSNorm weights
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                # Tied models also use it as the LM head: keep those logits moderate.
                std = 0.2 if model.config.tie_word_embeddings else 0.4
                p.copy_(std * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (0.8 / math.sqrt(p.shape[1])))


def build_model(cfg: dict, seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(**cfg)
    config._attn_implementation = "eager"
    model = LlamaForCausalLM(config).eval()
    init_weights(model, seed)
    if config.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    return model


def hf_state_dict(model: LlamaForCausalLM) -> dict[str, torch.Tensor]:
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        sd.pop("lm_head.weight")
    return dict(sorted(sd.items()))


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def save_safetensors(path: Path, sd: dict[str, torch.Tensor]) -> None:
    torch_save_file(sd, str(path), metadata={"format": "pt"})


def save_sharded(dirpath: Path, sd: dict[str, torch.Tensor], n_shards: int) -> None:
    names = list(sd)
    total = sum(t.numel() * t.element_size() for t in sd.values())
    # Greedy split by size in name order, as HF's shard_checkpoint does.
    shards: list[list[str]] = [[]]
    budget = total / n_shards
    acc = 0
    for n in names:
        size = sd[n].numel() * sd[n].element_size()
        if acc + size > budget * 1.05 and shards[-1] and len(shards) < n_shards:
            shards.append([])
            acc = 0
        shards[-1].append(n)
        acc += size
    assert len(shards) == n_shards
    weight_map = {}
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors"
        save_safetensors(dirpath / fname, {n: sd[n] for n in shard})
        for n in shard:
            weight_map[n] = fname
    write_json(dirpath / "model.safetensors.index.json",
               {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})


# ----------------------------------------------------------------------------------------------
# GGUF (layout of llama.cpp's convert_hf_to_gguf.py for LlamaForCausalLM)

HF_TO_GGUF = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
LAYER_MAP = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(hf: str) -> str:
    if hf in HF_TO_GGUF:
        return HF_TO_GGUF[hf]
    parts = hf.split(".")
    assert parts[0] == "model" and parts[1] == "layers", hf
    return f"blk.{int(parts[2])}.{LAYER_MAP['.'.join(parts[3:])]}"


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF half-split rotary layout -> GGML interleaved: row pairs (j, j+d/2) become (2j, 2j+1)."""
    rows = w.shape[0]
    d = rows // n_head
    return w.reshape(n_head, 2, d // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    rows = w.shape[0]
    d = rows // n_head
    return w.reshape(n_head, d // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_rope_freqs(cfg: dict) -> np.ndarray:
    """Per-frequency divisors of Llama-3.1 rope scaling (the converter's rope_freqs.weight)."""
    rs = cfg["rope_scaling"]
    base = cfg["rope_theta"]
    dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    freqs = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old_ctx = rs["original_max_position_embeddings"]
    lo_wavelen, hi_wavelen = old_ctx / lo, old_ctx / hi
    out = []
    for f in freqs:
        wavelen = 2 * math.pi / f
        if wavelen < hi_wavelen:
            out.append(1.0)
        elif wavelen > lo_wavelen:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - lo) / (hi - lo)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


GGUF_FTYPES = {
    "f32": (gguf.LlamaFileType.ALL_F32, gguf.GGMLQuantizationType.F32),
    "f16": (gguf.LlamaFileType.MOSTLY_F16, gguf.GGMLQuantizationType.F16),
    "bf16": (gguf.LlamaFileType.MOSTLY_BF16, gguf.GGMLQuantizationType.BF16),
    "q8_0": (gguf.LlamaFileType.MOSTLY_Q8_0, gguf.GGMLQuantizationType.Q8_0),
}


def gguf_tensors(cfg: dict, sd: dict[str, torch.Tensor], ftype: str):
    """[(name, stored numpy array, ggml type, dequantized HF-layout f32 array or None)] in the
    converter's order: extra tensors (rope_freqs) first, then the checkpoint's tensors."""
    qtype = GGUF_FTYPES[ftype][1]
    out = []
    if cfg.get("rope_scaling") and cfg["rope_scaling"].get("rope_type") == "llama3":
        out.append(("rope_freqs.weight", llama3_rope_freqs(cfg), gguf.GGMLQuantizationType.F32,
                    None))
    n_head = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads") or n_head
    for hf, t in sd.items():
        data = t.numpy().astype(np.float32)
        name = gguf_name(hf)
        if hf.endswith("q_proj.weight"):
            data = permute_qk(data, n_head)
        elif hf.endswith("k_proj.weight"):
            data = permute_qk(data, n_kv)
        t_type = qtype if data.ndim == 2 else gguf.GGMLQuantizationType.F32
        if t_type == gguf.GGMLQuantizationType.Q8_0 and data.shape[-1] % 32 != 0:
            t_type = gguf.GGMLQuantizationType.F16  # the converter's fallback
        stored = gguf.quants.quantize(data, t_type)
        deq = gguf.quants.dequantize(stored, t_type).astype(np.float32).reshape(data.shape)
        if hf.endswith("q_proj.weight"):
            deq = unpermute_qk(deq, n_head)
        elif hf.endswith("k_proj.weight"):
            deq = unpermute_qk(deq, n_kv)
        out.append((name, stored, t_type, (hf, deq)))
    return out


def write_gguf(path: Path, name: str, cfg: dict, tensors, vocab: dict | None,
               ftype: str) -> None:
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_type("model")
    w.add_name(name)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg.get("num_key_value_heads") or cfg["num_attention_heads"])
    w.add_rope_freq_base(cfg.get("rope_theta", 10000.0))
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    if cfg.get("head_dim") is not None:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_file_type(int(GGUF_FTYPES[ftype][0]))
    w.add_vocab_size(cfg["vocab_size"])
    w.add_rope_dimension_count(head_dim)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if vocab is not None:
        w.add_tokenizer_model(vocab["model"])
        w.add_tokenizer_pre(vocab["pre"])
        w.add_token_list(vocab["tokens"])
        if "scores" in vocab:
            w.add_token_scores(vocab["scores"])
        w.add_token_types(vocab["types"])
        if "merges" in vocab:
            w.add_token_merges(vocab["merges"])
        w.add_bos_token_id(vocab["bos"])
        w.add_eos_token_id(vocab["eos"])
        if "unk" in vocab:
            w.add_unk_token_id(vocab["unk"])
        if "eot" in vocab:
            w.add_eot_token_id(vocab["eot"])
        w.add_add_bos_token(True)
        w.add_add_eos_token(False)
        if "chat_template" in vocab:
            w.add_chat_template(vocab["chat_template"])
    for tname, stored, t_type, _ in tensors:
        w.add_tensor(tname, stored, raw_dtype=t_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# ----------------------------------------------------------------------------------------------
# Reference outputs


@torch.no_grad()
def run_reference(model: LlamaForCausalLM, seqs: list[np.ndarray]):
    outs = []
    for s in seqs:
        ids = torch.from_numpy(s.astype(np.int64))[None]
        r = model(input_ids=ids, output_hidden_states=True, use_cache=False)
        logits = r.logits[0].float()
        hidden = r.hidden_states[-1][0].float()
        # The last hidden state must be the final-norm output that the LM head reads.
        again = model.lm_head(hidden[None])[0]
        assert torch.allclose(again, logits, atol=1e-5, rtol=1e-5)
        outs.append((logits.numpy().copy(), hidden.numpy().copy()))
    return outs


def model_with_weights(base: LlamaForCausalLM, weights: dict[str, np.ndarray]) -> LlamaForCausalLM:
    m = LlamaForCausalLM(base.config).eval()
    m.load_state_dict(base.state_dict())
    params = dict(m.named_parameters())
    with torch.no_grad():
        for hf, arr in weights.items():
            params[hf].copy_(torch.from_numpy(np.ascontiguousarray(arr)))
    return m


# ----------------------------------------------------------------------------------------------
# FP8 checkpoints (E4M3 weights with separate scale tensors), quantized here with torch's own
# float8_e4m3fn cast: the engine's E4M3 conversions and scale handling are checked against it.

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def is_projection(name: str) -> bool:
    parts = name.split(".")
    return parts[-1] == "weight" and parts[-2] in PROJECTIONS


def to_e4m3(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(-448.0, 448.0).to(torch.float8_e4m3fn)


def fp8_checkpoint(sd: dict[str, torch.Tensor], quantize):
    """The projections as quantize(name, f32 weight) -> (E4M3 weight, {tensor name: scale...},
    dequantized f32 weight) makes them; everything else bf16. Returns (tensors, dequantized f32)."""
    out, deq = {}, {}
    for k, v in sd.items():
        if not is_projection(k):
            out[k] = v.to(torch.bfloat16)
            deq[k] = out[k].float().numpy()
            continue
        q, extra, dequantized = quantize(k, v.float())
        out[k] = q
        out.update(extra)
        deq[k] = dequantized.numpy()
    return out, deq


def fp8_compressed_tensors(sd: dict[str, torch.Tensor]):
    """llm-compressor's float-quantized layout: attention projections per tensor (a bf16
    weight_scale of shape [1] plus an input_scale the engine ignores), MLP projections per output
    channel (f32 weight_scale [out, 1])."""
    def quantize(k, w):
        extra = {}
        if ".self_attn." in k:
            scale = (w.abs().max() / 448.0).to(torch.bfloat16).reshape(1)
            extra[k.replace(".weight", ".input_scale")] = torch.ones(1, dtype=torch.bfloat16)
        else:
            scale = (w.abs().amax(dim=1, keepdim=True) / 448.0).float()
        q = to_e4m3(w / scale.float())
        extra[k + "_scale"] = scale
        return q, extra, q.float() * scale.float()
    return fp8_checkpoint(sd, quantize)


def fp8_blocks(sd: dict[str, torch.Tensor], block_rows: int, block_cols: int):
    """Hugging Face's "fp8" method (DeepSeek-V3 style): one f32 weight_scale_inv per
    block_rows x block_cols block of each projection, multiplied in on dequantization."""
    def quantize(k, w):
        rows, cols = w.shape
        gr, gc = -(-rows // block_rows), -(-cols // block_cols)
        padded = torch.zeros(gr * block_rows, gc * block_cols)
        padded[:rows, :cols] = w
        amax = padded.abs().reshape(gr, block_rows, gc, block_cols).amax(dim=(1, 3))
        scale = (amax / 448.0).float()
        full = scale.repeat_interleave(block_rows, 0).repeat_interleave(block_cols, 1)[:rows, :cols]
        q = to_e4m3(w / full)
        return q, {k + "_scale_inv": scale}, q.float() * full
    return fp8_checkpoint(sd, quantize)


def fp8_row_blocks(sd: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """What the engine does when asked to quantize a 16/32-bit checkpoint's projections: one scale
    per 128 values of a row, max |w| / 448, w / scale rounded to E4M3. Dequantized f32 weights."""
    deq = {}
    for k, v in sd.items():
        if not is_projection(k):
            continue
        w = v.float()
        out = torch.empty_like(w)
        for c in range(0, w.shape[1], 128):
            block = w[:, c:c + 128]
            scale = block.abs().amax(dim=1, keepdim=True) / 448.0
            out[:, c:c + 128] = to_e4m3(block / scale).float() * scale
        deq[k] = out.numpy()
    return deq


def e4m3_reference() -> dict[str, np.ndarray]:
    """torch's E4M3 decoding of all 256 codes, and its rounding of values chosen to hit every
    case: all finite values, the midpoints between neighbours (ties to even), subnormals, values
    past 448 (clamped first: the engine saturates) and random magnitudes."""
    codes = torch.arange(256, dtype=torch.uint8)
    decode = codes.view(torch.float8_e4m3fn).float()
    finite = decode[torch.isfinite(decode)].unique()
    mids = (finite[1:] + finite[:-1]) / 2
    rng = torch.Generator().manual_seed(4004)
    magnitudes = torch.exp2(torch.rand(4000, generator=rng) * 22.0 - 13.0)  # 2^-13 .. 2^9
    signs = torch.where(torch.rand(4000, generator=rng) < 0.5, -1.0, 1.0)
    extra = torch.tensor([0.0, -0.0, 448.0, -448.0, 449.0, 464.0, 470.0, 1e6, -1e6,
                          2.0 ** -9, 2.0 ** -10, 3 * 2.0 ** -11, 2.0 ** -6, 0.9 * 2.0 ** -6])
    x = torch.cat([finite, mids, magnitudes * signs, extra]).float()
    encoded = to_e4m3(x).view(torch.uint8).to(torch.int32)
    return {"decode": decode.numpy(), "encode_input": x.numpy(), "encode_output": encoded.numpy()}


# ----------------------------------------------------------------------------------------------
# Fixture definitions

LLAMA3_VOCAB = 448
MODELS = {
    "llama3_gqa": dict(
        seed=1001,
        cfg=dict(vocab_size=LLAMA3_VOCAB, hidden_size=64, intermediate_size=96,
                 num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                 rms_norm_eps=1e-5, rope_theta=500000.0,
                 rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                   high_freq_factor=4.0, original_max_position_embeddings=40),
                 max_position_embeddings=256, tie_word_embeddings=False,
                 bos_token_id=LLAMA3_VOCAB - 5,
                 eos_token_id=[LLAMA3_VOCAB - 4, LLAMA3_VOCAB - 1]),
        seq_lens=(7, 13, 44),
        legacy_config=True,
    ),
    "llama2_mha": dict(
        seed=2002,
        cfg=dict(vocab_size=384, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=4, head_dim=16, rms_norm_eps=1e-5,
                 rope_theta=10000.0, max_position_embeddings=128, tie_word_embeddings=False,
                 bos_token_id=1, eos_token_id=2),
        seq_lens=(7, 13, 24),
        legacy_config=False,
    ),
    "odd_tied": dict(
        seed=3003,
        cfg=dict(vocab_size=301, hidden_size=96, intermediate_size=160, num_hidden_layers=2,
                 num_attention_heads=6, num_key_value_heads=3, head_dim=16, rms_norm_eps=1e-6,
                 rope_theta=10000.0, max_position_embeddings=64, tie_word_embeddings=True,
                 bos_token_id=1, eos_token_id=2),
        seq_lens=(7, 13, 24),
        legacy_config=False,
    ),
}


def legacy_config_json(cfg: dict, dtype: str) -> dict:
    """config.json as Meta's Llama-3.1 checkpoints ship it (rope_theta + rope_scaling)."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": cfg["bos_token_id"],
        "eos_token_id": cfg["eos_token_id"],
        "head_dim": cfg["head_dim"],
        "hidden_act": "silu",
        "hidden_size": cfg["hidden_size"],
        "initializer_range": 0.02,
        "intermediate_size": cfg["intermediate_size"],
        "max_position_embeddings": cfg["max_position_embeddings"],
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": cfg["num_attention_heads"],
        "num_hidden_layers": cfg["num_hidden_layers"],
        "num_key_value_heads": cfg["num_key_value_heads"],
        "pretraining_tp": 1,
        "rms_norm_eps": cfg["rms_norm_eps"],
        "rope_scaling": cfg["rope_scaling"],
        "rope_theta": cfg["rope_theta"],
        "tie_word_embeddings": cfg["tie_word_embeddings"],
        "torch_dtype": dtype,
        "use_cache": True,
        "vocab_size": cfg["vocab_size"],
    }


def write_hf_config(dirpath: Path, model: LlamaForCausalLM, spec: dict, dtype: str) -> None:
    if spec["legacy_config"]:
        write_json(dirpath / "config.json", legacy_config_json(spec["cfg"], dtype))
    else:
        # What transformers 5's save_pretrained writes ("rope_parameters", "dtype").
        model.config.architectures = ["LlamaForCausalLM"]
        d = model.config.to_diff_dict()
        d["dtype"] = dtype
        write_json(dirpath / "config.json", dict(sorted(d.items())))


def generation_config(name: str, cfg: dict) -> dict:
    if name == "llama3_gqa":
        return {"bos_token_id": cfg["bos_token_id"], "do_sample": True,
                "eos_token_id": cfg["eos_token_id"], "temperature": 0.6, "top_p": 0.9}
    if name == "llama2_mha":
        return {"bos_token_id": 1, "do_sample": True, "eos_token_id": 2, "max_length": 128,
                "pad_token_id": 0, "temperature": 0.6, "top_k": 40, "top_p": 0.9}
    return {"bos_token_id": cfg["bos_token_id"], "eos_token_id": cfg["eos_token_id"]}


def token_sequences(seed: int, vocab: int, lens, bos: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    seqs = []
    for i, n in enumerate(lens):
        s = rng.integers(0, vocab, size=n).astype(np.int32)
        s[0] = bos
        if i == len(lens) - 1:
            s[n // 2] = vocab - 1  # the last row of an (odd) embedding table
        seqs.append(s)
    return seqs


def check_spread(name: str, logits: np.ndarray) -> None:
    std = float(logits.std(axis=-1).mean())
    top = logits.argmax(axis=-1)
    print(f"  {name}: logits std {std:.3f}, distinct argmax {len(set(top.tolist()))}/{len(top)}")
    assert std > 0.3, f"{name}: logits too flat ({std})"


def make_model_fixture(out: Path, name: str, spec: dict) -> None:
    print(f"{name}:")
    cfg = spec["cfg"]
    d = out / name
    d.mkdir(parents=True)
    model = build_model(cfg, spec["seed"])
    sd = hf_state_dict(model)

    # Tokenizer.
    gguf_vocab = None
    hf_tok = None
    tok_config = None
    if name == "llama3_gqa":
        hf_tok = make_llama3_tokenizer(cfg["vocab_size"])
        vocab = hf_tok.get_vocab(with_added_tokens=True)
        tokens = [None] * len(vocab)
        for t, i in vocab.items():
            tokens[i] = t
        merges = [" ".join(m) for m in json.loads(hf_tok.to_str())["model"]["merges"]]
        types = [int(gguf.TokenType.CONTROL) if t in LLAMA3_SPECIALS else
                 int(gguf.TokenType.NORMAL) for t in tokens]
        ids = {t: hf_tok.token_to_id(t) for t in LLAMA3_SPECIALS}
        gguf_vocab = dict(model="gpt2", pre="llama-bpe", tokens=tokens, types=types,
                          merges=merges, bos=ids["<|begin_of_text|>"],
                          eos=ids["<|end_of_text|>"], eot=ids["<|eot_id|>"],
                          chat_template=LLAMA3_CHAT_TEMPLATE)
        assert ids["<|begin_of_text|>"] == cfg["bos_token_id"]
        assert [ids["<|end_of_text|>"], ids["<|eot_id|>"]] == cfg["eos_token_id"]
        tok_config = {"add_bos_token": True, "add_eos_token": False,
                      "bos_token": "<|begin_of_text|>", "chat_template": LLAMA3_CHAT_TEMPLATE,
                      "clean_up_tokenization_spaces": False, "eos_token": "<|eot_id|>",
                      "model_max_length": cfg["max_position_embeddings"],
                      "tokenizer_class": "PreTrainedTokenizerFast"}
    elif name == "llama2_mha":
        tokens, scores, types, merges = make_sp_vocab(cfg["vocab_size"])
        gguf_vocab = dict(model="llama", pre="default", tokens=tokens, scores=scores,
                          types=types, bos=1, eos=2, unk=0)
        hf_tok = make_sp_hf_tokenizer(tokens, merges)
        assert hf_tok.get_vocab_size() == cfg["vocab_size"]
        tok_config = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>",
                      "clean_up_tokenization_spaces": False, "eos_token": "</s>",
                      "legacy": False, "model_max_length": cfg["max_position_embeddings"],
                      "pad_token": None, "tokenizer_class": "LlamaTokenizerFast",
                      "unk_token": "<unk>"}

    def write_hf_dir(dirpath: Path, weights: dict[str, torch.Tensor], dtype: str,
                     shards: int = 1) -> None:
        write_hf_config(dirpath, model, spec, dtype)
        write_json(dirpath / "generation_config.json", generation_config(name, cfg))
        if hf_tok is not None:
            hf_tok.save(str(dirpath / "tokenizer.json"))
            write_json(dirpath / "tokenizer_config.json", tok_config)
        if shards == 1:
            save_safetensors(dirpath / "model.safetensors", weights)
        else:
            save_sharded(dirpath, weights, shards)

    write_hf_dir(d, sd, "float32")

    # Reference from the directory as saved: also proves transformers reads our config.json.
    loaded = LlamaForCausalLM.from_pretrained(str(d), dtype=torch.float32,
                                              attn_implementation="eager").eval()
    seqs = token_sequences(spec["seed"] + 7, cfg["vocab_size"], spec["seq_lens"],
                           cfg["bos_token_id"])
    ref = {}
    base_out = run_reference(loaded, seqs)
    assert model.config._attn_implementation == "eager"
    direct = run_reference(model, seqs)
    for i, (s, (logits, hidden)) in enumerate(zip(seqs, base_out)):
        ref[f"tokens_{i}"] = s
        ref[f"logits_{i}"] = logits
        ref[f"hidden_{i}"] = hidden
        assert np.allclose(direct[i][0], logits, atol=1e-5), "config.json changed the model"
    check_spread(f"{name} f32", base_out[-1][0])

    if name == "llama3_gqa":
        sd_bf16 = {k: v.to(torch.bfloat16) for k, v in sd.items()}
        (d / "bf16").mkdir()
        write_hf_dir(d / "bf16", sd_bf16, "bfloat16")
        (d / "sharded").mkdir()
        write_hf_dir(d / "sharded", sd, "float32", shards=2)
        m = model_with_weights(loaded, {k: v.to(torch.float32).numpy() for k, v in sd_bf16.items()})
        for i, (logits, _) in enumerate(run_reference(m, seqs)):
            ref[f"logits_st_bf16_{i}"] = logits

        # FP8 checkpoints: the reference runs the dequantized weights in f32.
        fp8_variants = {
            "fp8": (fp8_compressed_tensors(sd),
                    {"config_groups": {"group_0": {
                        "targets": ["Linear"],
                        "weights": {"num_bits": 8, "type": "float", "strategy": "channel",
                                    "symmetric": True, "dynamic": False},
                        "input_activations": {"num_bits": 8, "type": "float",
                                              "strategy": "tensor", "symmetric": True,
                                              "dynamic": False}}},
                     "format": "float-quantized", "ignore": ["lm_head"],
                     "quant_method": "compressed-tensors", "quantization_status": "compressed"}),
            "fp8_block": (fp8_blocks(sd, 32, 128),
                          {"activation_scheme": "dynamic", "quant_method": "fp8",
                           "weight_block_size": [32, 128]}),
        }
        for variant, ((tensors, deq), quant_config) in fp8_variants.items():
            (d / variant).mkdir()
            write_hf_dir(d / variant, tensors, "bfloat16")
            config = json.loads((d / variant / "config.json").read_text())
            config["quantization_config"] = quant_config
            write_json(d / variant / "config.json", config)
            m = model_with_weights(loaded, deq)
            for i, (logits, _) in enumerate(run_reference(m, seqs)):
                ref[f"logits_st_{variant}_{i}"] = logits
            diff = np.abs(ref[f"logits_st_{variant}_2"] - ref["logits_2"]).max()
            print(f"  {variant}: max |logits - f32 logits| = {diff:.4f}")
        m = model_with_weights(loaded, fp8_row_blocks(sd))
        for i, (logits, _) in enumerate(run_reference(m, seqs)):
            ref[f"logits_fp8_quantized_{i}"] = logits
        np_save_file(e4m3_reference(), str(d / "fp8" / "e4m3_reference.safetensors"),
                     metadata={"generator": "make_fixtures"})

    for ftype in GGUF_FTYPES:
        tensors = gguf_tensors(cfg, sd, ftype)
        write_gguf(d / f"{name}-{ftype}.gguf", name, cfg, tensors, gguf_vocab, ftype)
        if ftype == "f32":
            for _, stored, _, hd in tensors:  # lossless: permutation round trip is exact
                if hd is not None:
                    assert np.array_equal(hd[1], sd[hd[0]].numpy())
            continue
        weights = {hd[0]: hd[1] for _, _, _, hd in tensors if hd is not None}
        m = model_with_weights(loaded, weights)
        for i, (logits, _) in enumerate(run_reference(m, seqs)):
            ref[f"logits_gguf_{ftype}_{i}"] = logits
        diff = np.abs(ref[f"logits_gguf_{ftype}_2"] - ref["logits_2"]).max()
        print(f"  gguf {ftype}: max |logits - f32 logits| = {diff:.4f}")

    np_save_file(ref, str(d / "reference.safetensors"), metadata={"generator": "make_fixtures"})


def generate(out: Path) -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    if out.exists():
        for name in MODELS:
            if (out / name).exists():
                shutil.rmtree(out / name)
    out.mkdir(parents=True, exist_ok=True)
    for name, spec in MODELS.items():
        make_model_fixture(out, name, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temp dir and compare with --out byte for byte")
    args = ap.parse_args()
    if not args.check:
        generate(args.out)
        total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
        print(f"wrote {args.out} ({total / 1e6:.2f} MB)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        bad = []
        for name in MODELS:
            cmp = filecmp.dircmp(Path(tmp) / name, args.out / name)
            stack = [cmp]
            while stack:
                c = stack.pop()
                bad += [os.path.join(c.left, f) for f in c.left_only + c.right_only]
                _, mismatch, errors = filecmp.cmpfiles(c.left, c.right, c.common_files,
                                                        shallow=False)
                bad += [os.path.join(c.right, f) for f in mismatch + errors]
                stack += list(c.subdirs.values())
        for b in bad:
            print("differs:", b)
        return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
