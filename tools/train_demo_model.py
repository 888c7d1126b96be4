#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Trains the small demo model that `scripts/demo.sh` generates text with.

The model is a tiny transformers `LlamaForCausalLM` trained for a few CPU minutes on a synthetic
corpus of short, simple stories produced by a small template grammar in this file ("Once upon a
time there was a little cat named Tom. Tom liked to play in the garden. ..."). It only has to
print readable English so the demo shows something sensible; it knows nothing beyond the grammar.

Steps: (a) generate the corpus (deterministic, seeded), (b) train a byte-level BPE tokenizer with
the Llama-3 pre-tokenizer and the <|begin_of_text|> / <|end_of_text|> specials, (c) train the
model on packed `<|begin_of_text|>story<|end_of_text|>` sequences with AdamW, linear warmup and a
cosine decay over the time budget, (d) save a Hugging Face directory (config.json,
generation_config.json, model.safetensors in f32, tokenizer.json, tokenizer_config.json and a
README.md describing how it was made).

Usage (from the repository root, with the project venv, one CPU thread):
    .venv/bin/python tools/train_demo_model.py --out assets/models/tiny-stories [--steps 1800]

A draft model for speculative decoding shares the target's tokenizer and shrinks the network:
    .venv/bin/python tools/train_demo_model.py --out assets/models/tiny-stories-draft \
        --tokenizer assets/models/tiny-stories/tokenizer.json --hidden 48 --layers 2 --heads 2 \
        --kv-heads 1 --intermediate 96 --steps 5000

Seeds are fixed, but training stops on wall time, so the number of steps (and thus the exact
weights) depends on the speed of the machine.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hf_export import BOS, EOS, save_llama_dir, train_byte_level_bpe  # noqa: E402

SEED = 1234
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
VOCAB_SIZE = 768
SEQ_LEN = 128
BATCH = 16

# ----------------------------------------------------------------------------------------------
# Synthetic corpus

NAMES = ["Tom", "Lily", "Max", "Anna", "Ben", "Mia", "Sam", "Lucy", "Jack", "Emma", "Leo",
         "Sara", "Tim", "Zoe", "Finn", "Ella", "Jake", "Rosa", "Dan", "Ivy"]
ANIMALS = ["cat", "dog", "bunny", "bird", "fox", "bear", "mouse", "duck", "frog", "pig",
           "lion", "puppy", "kitten", "owl", "horse", "sheep"]
SIZES = ["little", "small", "big", "happy", "kind", "shy", "brave", "funny", "sleepy", "curious"]
COLORS = ["red", "blue", "green", "yellow", "pink", "purple", "orange", "white", "brown"]
OBJECTS = ["ball", "kite", "hat", "box", "cake", "book", "flower", "stick", "shell", "toy",
           "cup", "rock", "apple", "drum", "boat", "key"]
PLACES = ["the garden", "the park", "the forest", "the house", "the river", "the field",
          "the school", "the beach", "the farm", "the hill", "the lake", "the yard"]
ACTIVITIES = ["play", "run", "jump", "sing", "dance", "read", "swim", "draw", "walk", "hide"]
FEELINGS = ["happy", "sad", "scared", "excited", "surprised", "tired", "proud", "glad"]
FRIENDS = ["mom", "dad", "friend", "sister", "brother", "grandma", "teacher"]


def a_an(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def make_story(rng: random.Random) -> str:
    """One story of 3 to 6 sentences about one character."""
    name = rng.choice(NAMES)
    animal = rng.choice(ANIMALS)
    size = rng.choice(SIZES)
    place = rng.choice(PLACES)
    color = rng.choice(COLORS)
    obj = rng.choice(OBJECTS)
    act = rng.choice(ACTIVITIES)
    feel = rng.choice(FEELINGS)
    friend = rng.choice(FRIENDS)
    pron = rng.choice(["He", "She"])
    poss = "his" if pron == "He" else "her"

    opening = rng.choice([
        f"Once upon a time there was {a_an(size)} {animal} named {name}.",
        f"Once upon a time, {a_an(size)} {animal} named {name} lived near {place}.",
        f"One day, {a_an(size)} {animal} named {name} went to {place}.",
        f"There was once {a_an(size)} {animal} called {name}.",
    ])
    middle = [
        f"{name} liked to {act} in {place}.",
        f"{pron} had {a_an(color)} {obj} that {pron.lower()} loved very much.",
        f"Every morning, {name} would {act} with {poss} {friend}.",
        f"{name} was very {feel} that day.",
        f"{pron} wanted to {act} all day long.",
    ]
    events = [
        f"One day {name} found {a_an(color)} {obj} in {place}.",
        f"Then {name} saw a {rng.choice(ANIMALS)} near the {obj}.",
        f"{name} lost {poss} {obj} and looked for it everywhere.",
        f"{name} gave the {color} {obj} to {poss} {friend}.",
        f"Suddenly, it started to rain, so {name} ran home.",
        f"{name} and {poss} {friend} went to {place} together.",
    ]
    ending = rng.choice([
        f"{name} was very {rng.choice(['happy', 'glad', 'proud'])} and smiled.",
        f"In the end, {name} and {poss} {friend} played together all day.",
        f"After that, {name} always took good care of the {obj}.",
        f"{pron} said, \"Thank you!\" and gave {poss} {friend} a big hug.",
        f"That night, {name} went to sleep with a big smile.",
        f"From that day on, {name} never felt {rng.choice(['sad', 'scared', 'alone'])} again.",
    ])
    n_mid = rng.randint(1, 4)  # 3..6 sentences: opening + n_mid + ending
    body = rng.sample(middle, k=min(n_mid, 2)) + rng.sample(events, k=max(0, n_mid - 2))
    if n_mid >= 2 and rng.random() < 0.5:
        body = body[:1] + [rng.choice(events)] + body[1:-1]
    return " ".join([opening] + body[:n_mid] + [ending])


def make_corpus(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [make_story(rng) for _ in range(n)]


# ----------------------------------------------------------------------------------------------
# Tokenizer


def make_tokenizer(corpus: list[str]) -> Tokenizer:
    return train_byte_level_bpe(corpus, pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated",
                                                             invert=False),
                                VOCAB_SIZE - 2, [BOS, EOS])


# ----------------------------------------------------------------------------------------------
# Training


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("assets/models/tiny-stories"))
    ap.add_argument("--steps", type=int, default=1800,
                    help="optimizer steps (about 5 minutes on one core); fixed so reruns are identical")
    ap.add_argument("--stories", type=int, default=30000, help="corpus size")
    ap.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    ap.add_argument("--batch", type=int, default=BATCH, help="sequences per step")
    ap.add_argument("--seq-len", type=int, default=SEQ_LEN, help="tokens per sequence")
    ap.add_argument("--hidden", type=int, default=128, help="hidden size")
    ap.add_argument("--layers", type=int, default=4, help="decoder layers")
    ap.add_argument("--heads", type=int, default=4, help="attention heads (head_dim = hidden/heads)")
    ap.add_argument("--kv-heads", type=int, default=2, help="key/value heads")
    ap.add_argument("--intermediate", type=int, default=256, help="MLP intermediate size")
    ap.add_argument("--tokenizer", type=Path, default=None,
                    help="reuse this tokenizer.json (copied byte for byte) instead of training "
                         "one; a draft model must share its target's tokenizer")
    args = ap.parse_args()
    if args.hidden % args.heads != 0 or args.heads % args.kv_heads != 0:
        ap.error("--hidden must be a multiple of --heads, --heads a multiple of --kv-heads")
    batch_size, seq_len = args.batch, args.seq_len

    random.seed(SEED)
    torch.manual_seed(SEED)
    torch.set_num_threads(1)

    corpus = make_corpus(args.stories, SEED)
    tok = Tokenizer.from_file(str(args.tokenizer)) if args.tokenizer else make_tokenizer(corpus)
    vocab = tok.get_vocab_size()
    bos, eos = tok.token_to_id(BOS), tok.token_to_id(EOS)

    ids: list[int] = []
    for enc in tok.encode_batch(corpus):  # post-processor prepends <|begin_of_text|>
        ids.extend(enc.ids + [eos])
    data = torch.tensor(ids, dtype=torch.long)
    n_seq = len(data) // seq_len
    data = data[: n_seq * seq_len].view(n_seq, seq_len)
    print(f"corpus: {len(corpus)} stories, {len(ids)} tokens, {n_seq} sequences, vocab {vocab}")

    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=args.hidden, intermediate_size=args.intermediate,
        num_hidden_layers=args.layers, num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads, head_dim=args.hidden // args.heads,
        max_position_embeddings=256,
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True, hidden_act="silu",
        attention_bias=False, mlp_bias=False, bos_token_id=bos, eos_token_id=eos,
        torch_dtype="float32")
    model = LlamaForCausalLM(cfg).float()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"parameters: {n_params}")

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.05)
    peak, floor, warm_frac = args.lr, 1e-4, 0.05
    gen = torch.Generator().manual_seed(SEED)
    model.train()
    t0 = time.time()
    step, ema = 0, None
    while step < args.steps:
        frac = step / args.steps
        if frac < warm_frac:
            lr = peak * max(frac / warm_frac, 0.02)
        else:
            p = (frac - warm_frac) / (1 - warm_frac)
            lr = floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * p))
        for g in opt.param_groups:
            g["lr"] = lr
        batch = data[torch.randint(0, n_seq, (batch_size,), generator=gen)]
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % 50 == 0:
            print(f"step {step} t={time.time() - t0:.0f}s lr={lr:.2e} loss={ema:.4f}", flush=True)
    train_s = time.time() - t0

    # Held-out loss on fresh stories.
    model.eval()
    held = make_corpus(200, SEED + 1)
    hids: list[int] = []
    for enc in tok.encode_batch(held):
        hids.extend(enc.ids + [eos])
    hn = len(hids) // seq_len
    hdata = torch.tensor(hids[: hn * seq_len]).view(hn, seq_len)
    with torch.no_grad():
        eval_loss = model(input_ids=hdata, labels=hdata).loss.item()
        prompt = torch.tensor([tok.encode("Once upon a time").ids])
        out = model.generate(prompt, max_new_tokens=80, do_sample=True, temperature=0.7,
                             top_p=0.9, eos_token_id=eos, pad_token_id=eos)
    sample = tok.decode(out[0].tolist(), skip_special_tokens=True)
    print(f"steps {step}, {train_s:.0f}s, train loss {ema:.4f}, held-out loss {eval_loss:.4f}")
    print(f"sample: {sample}")

    # Save.
    out_dir = args.out
    save_llama_dir(model, cfg, out_dir, args.tokenizer or tok,
                   generation={"do_sample": True, "temperature": 0.7, "top_p": 0.9})
    # Non-default options, in the order they are declared, so the default command stays as it was.
    extra = "".join(
        f" --{name.replace('_', '-')} {getattr(args, name)}"
        for name, default in (("stories", 30000), ("lr", 2e-3), ("batch", BATCH),
                              ("seq_len", SEQ_LEN), ("hidden", 128), ("layers", 4),
                              ("heads", 4), ("kv_heads", 2), ("intermediate", 256),
                              ("tokenizer", None))
        if getattr(args, name) != default)
    if args.tokenizer:
        title = f"{out_dir.name} (draft model for the {args.tokenizer.parent.name} demo model)"
        about = (f"""A tiny Llama-architecture model ({n_params:,} parameters, f32) trained on the same
synthetic stories as `{args.tokenizer.parent}`, with the same tokenizer (its `tokenizer.json`,
copied byte for byte), to serve as its draft model in speculative decoding demos and tests. It
is not useful for anything else and knows nothing beyond its synthetic training data.""")
        tok_line = (f"""- Tokenizer: `{args.tokenizer}` reused unchanged (byte-level BPE, Llama-3
  pre-tokenizer), vocabulary {vocab} including `<|begin_of_text|>` (id {bos}) and
  `<|end_of_text|>` (id {eos}).""")
    else:
        title = f"{out_dir.name} (demo model only)"
        about = (f"""A tiny Llama-architecture model ({n_params:,} parameters, f32) that writes short, simple
stories. It exists only so that `scripts/demo.sh` prints readable English; it is not useful
for anything else and knows nothing beyond its synthetic training data.""")
        tok_line = (f"""- Tokenizer: byte-level BPE (Hugging Face `tokenizers`), Llama-3 pre-tokenizer, vocabulary
  {vocab} including `<|begin_of_text|>` (id {bos}) and `<|end_of_text|>` (id {eos}).""")
    heads = (f"{args.heads} heads ({args.kv_heads} KV heads)" if args.kv_heads != 1
             else f"{args.heads} heads (1 KV head)")
    (out_dir / "README.md").write_text(f"""# {title}

{about}

Made with (from the repository root, project venv, one CPU thread):

    .venv/bin/python tools/train_demo_model.py --out {out_dir} --steps {args.steps}{extra}

- Data: {len(corpus):,} synthetic stories (3 to 6 sentences each) from the template grammar in
  `tools/train_demo_model.py`, seed {SEED}; {len(ids):,} tokens.
{tok_line}
- Model: `LlamaForCausalLM`, hidden {args.hidden}, {args.layers} layers, {heads}, intermediate {args.intermediate},
  tied embeddings, rope_theta 10000, context 256.
- Training: AdamW (peak lr {args.lr:g}, warmup then cosine decay), batches of {batch_size} packed
  sequences of {seq_len} tokens, {step} steps in {train_s:.0f} s on CPU.
- Loss reached: {ema:.3f} (training, smoothed), {eval_loss:.3f} (held-out stories).

Training runs a fixed number of steps on one thread with fixed seeds, so a rerun reproduces
these weights (up to PyTorch version differences in CPU kernels).
""")
    print(f"saved to {out_dir}")


if __name__ == "__main__":
    main()
