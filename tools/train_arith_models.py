#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Trains the arithmetic world's tokenizer, target and draft models (tools/arith_world.py).

Steps:
  tokenizer  byte-level BPE (Hugging Face `tokenizers`) on the world's text, single-digit tokens
             (pre-tokenizer Sequence[Digits(individual_digits), ByteLevel(use_regex)]), specials
             <|begin_of_text|> and <|end_of_text|>; deterministic.
  train      a transformers `LlamaForCausalLM` on freshly generated TRAINING-bucket problems
             (eval-bucket problems are never seen), sequences
             <|begin_of_text|> prompt answer <|end_of_text|>, right-padded batches, loss on the
             answer tokens and the end token only, AdamW with linear warmup and cosine decay, a
             fixed number of steps and fixed seeds (deterministic reruns on one thread). The
             answer of each problem is drawn from a STYLE MIXTURE (see arith_world.sample_answer).
             Logs loss and greedy accuracy on 200 eval problems to --log; can save an early
             checkpoint (--weak-at STEP --weak-out DIR); exports a Hugging Face directory (f32).

Usage (repository root, project venv, one CPU thread per process):
    .venv/bin/python tools/train_arith_models.py tokenizer --out assets/models/arith-target/tokenizer.json
    .venv/bin/python tools/train_arith_models.py train --role target --out assets/models/arith-target ...
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from tokenizers import Tokenizer, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
import arith_world as W  # noqa: E402
from hf_export import BOS, EOS, save_llama_dir, train_byte_level_bpe  # noqa: E402

VOCAB_SIZE = 512
TOKENIZER_SEED = 4242
MONITOR_SEED = 99  # eval-bucket problems used for the accuracy log


# ----------------------------------------------------------------------------------------------
# Tokenizer


def tokenizer_corpus(n: int = 20000) -> list[str]:
    rng = random.Random(TOKENIZER_SEED)
    out = []
    for p in W.unique_problems(TOKENIZER_SEED, "train", n):
        out.append(W.prompt(p) + W.sample_answer(p, rng, {"uniform": 1.0}))
    return out


def make_tokenizer() -> Tokenizer:
    return train_byte_level_bpe(
        tokenizer_corpus(), pre_tokenizers.Digits(individual_digits=True), VOCAB_SIZE - 2,
        [BOS, EOS], byte_level_regex=True, ignore_merges=False)


def encode(tok: Tokenizer, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False).ids


# ----------------------------------------------------------------------------------------------
# Greedy evaluation


@torch.no_grad()
def greedy_answers(model, tok: Tokenizer, prompts: list[str], forced: list[str] | None = None,
                   max_new: int = 64) -> list[str]:
    """Greedy continuation of BOS + prompt (+ forced answer prefix) for each prompt; returns the
    answer text (forced prefix included). Batches prompts of equal token length (no padding)."""
    bos, eos = tok.token_to_id(BOS), tok.token_to_id(EOS)
    forced = forced or [""] * len(prompts)
    seqs = [[bos] + encode(tok, p) + (encode(tok, f) if f else []) for p, f in zip(prompts, forced)]
    groups: dict[int, list[int]] = {}
    for i, s in enumerate(seqs):
        groups.setdefault(len(s), []).append(i)
    out = [""] * len(prompts)
    model.eval()
    for length, idx in groups.items():
        for c in range(0, len(idx), 128):
            chunk = idx[c:c + 128]
            inp = torch.tensor([seqs[i] for i in chunk])
            gen = model.generate(inp, attention_mask=torch.ones_like(inp), max_new_tokens=max_new,
                                 do_sample=False, eos_token_id=eos, pad_token_id=eos)
            for row, i in enumerate(chunk):
                new = gen[row, length:].tolist()
                if eos in new:
                    new = new[:new.index(eos)]
                gen_text = tok.decode(new, skip_special_tokens=False)
                out[i] = forced[i] + gen_text
    return out


def classify(p: W.Problem, text: str) -> str:
    """Which named style a full answer is in, 'other' for correct mixtures, 'wrong' otherwise."""
    if not W.is_full_correct(p, text):
        return "wrong"
    for st in W.STYLES:
        if text.rstrip() == W.render_style(p, st):
            return st
    return "other"


def evaluate(model, tok, probs: list[W.Problem]) -> dict:
    answers = greedy_answers(model, tok, [W.prompt(p) for p in probs])
    fa = sum(W.check(p, a) for p, a in zip(probs, answers)) / len(probs)
    full = sum(W.is_full_correct(p, a) for p, a in zip(probs, answers)) / len(probs)
    styles = Counter(classify(p, a) for p, a in zip(probs, answers))
    return {"final_answer_acc": fa, "full_correct_acc": full, "styles": dict(styles)}


# ----------------------------------------------------------------------------------------------
# Training


def parse_mixture(s: str) -> dict[str, float]:
    out = {}
    for part in s.split(","):
        k, v = part.split("=")
        if k != "uniform" and k not in W.STYLES:
            raise SystemExit(f"unknown style {k!r} in --mixture")
        out[k] = float(v)
    return out


def make_batch(tok, rng, stream, mixture, batch, bos, eos):
    rows, labels = [], []
    for _ in range(batch):
        p = next(stream)
        a = W.sample_answer(p, rng, mixture)
        pi = [bos] + encode(tok, W.prompt(p))
        ai = encode(tok, a) + [eos]
        rows.append(pi + ai)
        labels.append([-100] * len(pi) + ai)
    n = max(len(r) for r in rows)
    x = torch.full((batch, n), eos, dtype=torch.long)
    y = torch.full((batch, n), -100, dtype=torch.long)
    for i, (r, lab) in enumerate(zip(rows, labels)):
        x[i, :len(r)] = torch.tensor(r)
        y[i, :len(lab)] = torch.tensor(lab)
    return x, y


def train(args) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    tok = Tokenizer.from_file(str(args.tokenizer))
    bos, eos = tok.token_to_id(BOS), tok.token_to_id(EOS)
    mixture = parse_mixture(args.mixture)
    cfg = LlamaConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=args.hidden,
        intermediate_size=args.intermediate, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
        head_dim=args.hidden // args.heads, max_position_embeddings=256, rms_norm_eps=1e-5,
        rope_theta=10000.0, tie_word_embeddings=True, hidden_act="silu", attention_bias=False,
        mlp_bias=False, bos_token_id=bos, eos_token_id=eos, pad_token_id=eos,
        torch_dtype="float32")
    if args.init is not None:
        # Continue from a checkpoint (its architecture wins over the size flags).
        model = LlamaForCausalLM.from_pretrained(args.init).float()
        cfg = model.config
    else:
        model = LlamaForCausalLM(cfg).float()
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95),
                            weight_decay=0.05)
    rng = random.Random(f"arith-answers-{args.seed}")
    stream = W.problems(args.seed, "train")
    monitor = W.unique_problems(MONITOR_SEED, "eval", args.monitor)
    if args.log:
        args.log.parent.mkdir(parents=True, exist_ok=True)
    log = open(args.log, "w", encoding="utf-8") if args.log else sys.stdout

    def say(msg: str) -> None:
        print(msg, file=log, flush=True)
        if log is not sys.stdout:
            print(msg, flush=True)

    say(f"# {' '.join(sys.argv)}")
    say(f"role {args.role}, parameters {n_params}, vocab {cfg.vocab_size}, mixture {mixture}")
    warm = max(1, int(args.steps * 0.03))
    floor = args.lr * 0.02
    t0, train_s, ema = time.time(), 0.0, None
    history = []
    for step in range(1, args.steps + 1):
        if step <= warm:
            lr = args.lr * step / warm
        else:
            q = (step - warm) / max(1, args.steps - warm)
            lr = floor + 0.5 * (args.lr - floor) * (1 + math.cos(math.pi * q))
        for g in opt.param_groups:
            g["lr"] = lr
        model.train()
        x, y = make_batch(tok, rng, stream, mixture, args.batch, bos, eos)
        loss = model(input_ids=x, labels=y).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if step % 100 == 0:
            train_s = time.time() - t0
            say(f"step {step} t={train_s:.0f}s lr={lr:.2e} loss={ema:.4f}")
        if step % args.eval_every == 0 or step == args.steps or step == args.weak_at:
            te = time.time()
            r = evaluate(model, tok, monitor)
            t_eval = time.time() - te
            t0 += t_eval  # training time excludes evaluation
            history.append((step, time.time() - t0, ema, r))
            say(f"eval step {step} train_t={time.time() - t0:.0f}s loss={ema:.4f} "
                f"final_answer_acc={r['final_answer_acc']:.3f} "
                f"full_correct_acc={r['full_correct_acc']:.3f} styles={r['styles']} "
                f"(eval {t_eval:.0f}s)")
        if args.weak_out and step == args.weak_at:
            save_llama_dir(model, cfg, args.weak_out, args.tokenizer, chat_template=W.CHAT_TEMPLATE)
            (args.weak_out / "train_summary.json").write_text(json.dumps(
                {"step": step, "train_s": round(time.time() - t0), "loss": ema,
                 "monitor": history[-1][3], "params": n_params}, indent=2) + "\n")
            say(f"saved weak checkpoint at step {step} to {args.weak_out}")
    train_s = time.time() - t0
    save_llama_dir(model, cfg, args.out, args.tokenizer, chat_template=W.CHAT_TEMPLATE)
    # A fine-tuned model records the run(s) it started from, so its card can list every command.
    earlier: list[dict] = []
    if args.init is not None:
        base = json.loads((args.init / "train_summary.json").read_text())
        earlier = base.get("earlier_runs", []) + [
            {k: base[k] for k in ("command", "steps", "train_s", "mixture", "lr") if k in base}]
    (args.out / "train_summary.json").write_text(json.dumps(
        {"earlier_runs": earlier, "command": " ".join(sys.argv), "steps": args.steps,
         "train_s": round(train_s),
         "loss": ema, "params": n_params, "mixture": mixture, "batch": args.batch,
         "lr": args.lr, "monitor": history[-1][3] if history else None,
         "history": [{"step": s, "train_s": round(t), "loss": l,
                      "final_answer_acc": r["final_answer_acc"],
                      "full_correct_acc": r["full_correct_acc"]} for s, t, l, r in history]},
        indent=2) + "\n")
    say(f"done: {args.steps} steps, {train_s:.0f}s, loss {ema:.4f}; saved to {args.out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tokenizer", help="train the world's tokenizer")
    t.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("train", help="train one model")
    s.add_argument("--role", choices=["target", "draft"], required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--tokenizer", type=Path, required=True)
    s.add_argument("--mixture", default="equations=0.9,uniform=0.1",
                   help="style weights, e.g. words=0.7,uniform=0.3")
    s.add_argument("--steps", type=int, default=3000)
    s.add_argument("--batch", type=int, default=32)
    s.add_argument("--lr", type=float, default=3e-3)
    s.add_argument("--hidden", type=int, default=128)
    s.add_argument("--layers", type=int, default=4)
    s.add_argument("--heads", type=int, default=4)
    s.add_argument("--kv-heads", type=int, default=2)
    s.add_argument("--intermediate", type=int, default=320)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--init", type=Path, default=None,
                   help="start from this checkpoint instead of random weights (fine-tuning)")
    s.add_argument("--eval-every", type=int, default=500)
    s.add_argument("--monitor", type=int, default=200, help="eval problems in the accuracy log")
    s.add_argument("--log", type=Path, default=None)
    s.add_argument("--weak-at", type=int, default=0, help="save an early checkpoint at this step")
    s.add_argument("--weak-out", type=Path, default=None)
    args = ap.parse_args()
    if args.cmd == "tokenizer":
        torch.set_num_threads(1)
        tok = make_tokenizer()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tok.save(str(args.out))
        print(f"vocab {tok.get_vocab_size()} saved to {args.out}")
        return
    train(args)


if __name__ == "__main__":
    main()
