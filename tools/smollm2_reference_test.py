#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A real pretrained model, as users bring it: SmolLM2-135M-Instruct in its shipped Q4_1 GGUF
(Q4_1 projections, Q8_0 token embedding; fetched by scripts/setup.sh into models/smollm2/), run by
`verdict` against Hugging Face transformers on the same file (transformers reads the GGUF through
the `gguf` package and dequantizes it to f32; its tokenizer is converted from the GGUF metadata).

- tokenizer: token ids of hard strings (digits, which the `smollm` pre-tokenizer splits one by one,
  whitespace runs, contractions, accents, CJK, emoji, code) equal transformers';
- logits at every position of a ~300-token real text (`verdict score --dump-logits`) equal the
  f32 reference to 1e-4 of the largest logit magnitude, and the argmax agrees at every position;
- with a 16-bit KV cache (--kv-cache f16 / bf16) the logits stay within a stated tolerance;
- greedy generations are identical for a few prompts (the same text, hence the same tokens).

Exits 77 (skipped) when the model file is missing (scripts/setup.sh was not run).
Usage: smollm2_reference_test.py --verdict build/bin/verdict --model models/smollm2/...gguf
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HARD_STRINGS = [
    "The capital of France is",
    "Hello world! 123 4567 89,012.5 and 3.14159",
    "  multiple   spaces\tand\ttabs\n\nnew  lines\r\n",
    "I'm sure they'll say it's fine, won't they? He'd've known.",
    "Café déjà vu, naïve façade, Ærøskøbing, ÀÉÎÕÜ",
    "日本語のテキストと中文文本, 한국어 텍스트",
    "emoji 🎉🚀 and 👩‍💻 with skin tones 👍🏽",
    "def f(x):\n    return x**2 + 1  # comment\n",
    "<|im_start|>user\nliteral special-token text<|im_end|>",
    "2025-01-22T10:00:00Z, +1 (555) 123-4567, $1,000,000",
    "",
    " leading space",
    "trailing space ",
]

LOGITS_TEXT = (
    "Speculative decoding speeds up the generation of text by large language models. A small draft "
    "model proposes several tokens at once, and the large target model checks all of them in a single "
    "forward pass. Tokens that the target model agrees with are kept; at the first disagreement the "
    "target model's own token is used instead, and drafting starts again from there. Because the "
    "target model verifies every token, the output is exactly what it would have produced alone, "
    "while each expensive forward pass can commit several tokens. Judge decoding goes one step further: "
    "a small classifier on the target model's hidden states also accepts draft tokens that are correct "
    "even though the target model would have chosen a different word, which raises the number of "
    "tokens accepted per pass. In 2024, researchers reported speedups of up to nine times on very large "
    "models, with the quality of the answers kept. The method works best when the draft model is fast "
    "and often right, when the target model is much larger, and when the hardware has spare compute "
    "during each pass. Typical numbers: a draft of 8 billion parameters, a target of 405 billion, "
    "blocks of 16 tokens, and around 10 accepted tokens per pass on math and coding tasks."
)

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Three facts about the Moon:\n1."]
GREEDY_TOKENS = 24


def run(args, **kw):
    r = subprocess.run(args, capture_output=True, text=True, timeout=600, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr}")
    return r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--verdict", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--draft", help="the draft trained for this model (optional)")
    args = ap.parse_args()
    if not os.path.exists(args.model):
        print(f"skipped: {args.model} is missing (run scripts/setup.sh)")
        return 77
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.set_num_threads(2)
    directory, name = os.path.split(os.path.abspath(args.model))
    tok = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
    model.eval()
    failures = 0

    # Tokenizer.
    # Special-token text is parsed (transformers' default) or split as plain text.
    for text in HARD_STRINGS:
        for parse_special in (True, False):
            flags = ["--parse-special"] if parse_special else []
            got = json.loads(run([args.verdict, "tokenize", "--model", args.model, "--text", text, *flags]))["ids"]
            want = tok(text, add_special_tokens=False, split_special_tokens=not parse_special).input_ids
            if got != want:
                print(f"FAIL tokenizer {text!r} (parse special: {parse_special}): verdict {got} transformers {want}")
                failures += 1
    print(f"tokenizer: {len(HARD_STRINGS)} strings compared, special tokens parsed and not")

    # Logits at every position.
    with tempfile.TemporaryDirectory() as tmp:
        dump = os.path.join(tmp, "logits.npy")
        scored = json.loads(run([args.verdict, "score", "--model", args.model, "--text", LOGITS_TEXT,
                                 "--dump-logits", dump]))
        ids = [p["token"]["id"] for p in scored["positions"]]
        got = np.load(dump)
    with torch.no_grad():
        want = model(torch.tensor([ids])).logits[0].numpy()
    scale = float(np.abs(want).max())
    err = float(np.abs(got - want).max())
    argmax_agree = int((got.argmax(-1) == want.argmax(-1)).sum())
    print(f"logits: {len(ids)} positions, max |diff| {err:.3g} (largest logit {scale:.3g}, relative "
          f"{err / scale:.3g}), argmax agrees at {argmax_agree}/{len(ids)}")
    if got.shape != want.shape or err > 1e-4 * scale or argmax_agree != len(ids):
        print("FAIL logits")
        failures += 1

    # A 16-bit KV cache (--kv-cache): keys and values rounded when stored. Measured on this text:
    # f16 max |diff| 0.012 (3e-4 of the largest logit), argmax 251/251; bf16 0.10 (3e-3), 249/251.
    for kv, rel_tol, min_agree in (("f16", 2e-3, 1.0), ("bf16", 1e-2, 0.98)):
        with tempfile.TemporaryDirectory() as tmp:
            dump = os.path.join(tmp, "logits.npy")
            run([args.verdict, "score", "--model", args.model, "--text", LOGITS_TEXT, "--dump-logits", dump,
                 "--kv-cache", kv])
            got_kv = np.load(dump)
        kv_err = float(np.abs(got_kv - want).max())
        kv_agree = int((got_kv.argmax(-1) == want.argmax(-1)).sum())
        print(f"logits with a {kv} KV cache: max |diff| {kv_err:.3g} (relative {kv_err / scale:.3g}), argmax agrees "
              f"at {kv_agree}/{len(ids)}")
        if got_kv.shape != want.shape or kv_err > rel_tol * scale or kv_agree < min_agree * len(ids):
            print(f"FAIL logits with a {kv} KV cache")
            failures += 1

    # Greedy generations.
    greedy_text = {}
    for prompt in PROMPTS:
        out = run([args.verdict, "generate", "--model", args.model, "--prompt", prompt, "--temperature", "0",
                   "--max-tokens", str(GREEDY_TOKENS), "--quiet"])
        prompt_ids = tok(prompt, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.no_grad():
            ref = model.generate(prompt_ids, max_new_tokens=GREEDY_TOKENS, do_sample=False)
        want_text = tok.decode(ref[0], skip_special_tokens=True)  # an end token stops both
        greedy_text[prompt] = want_text
        out = out[:-1] if out.endswith("\n") else out  # `verdict generate` ends its output with a newline
        if out != want_text:
            print(f"FAIL greedy {prompt!r}:\n  verdict      {out!r}\n  transformers {want_text!r}")
            failures += 1
        else:
            print(f"greedy {prompt!r}: identical, {ref.shape[1] - prompt_ids.shape[1]} tokens")
    # Speculative decoding with the draft distilled for this target (assets/models/smollm2-draft): greedy
    # output identical to transformers' greedy continuation, and the draft earns its place: measured
    # 1.36 tokens per target pass on these prompts, where the same draft after one training step gets
    # 1.00.
    if args.draft:
        if not os.path.exists(args.draft):
            print(f"FAIL the draft {args.draft} is missing (it is part of the repository)")
            return 1
        tokens = passes = 0
        for prompt in PROMPTS:
            r = subprocess.run([args.verdict, "generate", "--model", args.model, "--draft", args.draft, "--k", "4",
                                "--prompt", prompt, "--temperature", "0", "--max-tokens", str(GREEDY_TOKENS), "--quiet",
                                "--stats-json"], capture_output=True, text=True, timeout=600)
            if r.returncode != 0:
                raise RuntimeError(r.stderr)
            stats = json.loads(r.stderr.strip().splitlines()[-1])
            tokens += stats["tokens"]
            passes += stats["target_passes"]
            out = r.stdout[:-1] if r.stdout.endswith("\n") else r.stdout
            if out != greedy_text[prompt]:
                print(f"FAIL speculative greedy {prompt!r}:\n  verdict      {out!r}\n  transformers {greedy_text[prompt]!r}")
                failures += 1
        print(f"speculative greedy with the draft (k = 4): identical, {tokens / passes:.2f} tokens per target pass")
        if tokens / passes < 1.15:
            print("FAIL the draft is accepted too rarely: is it the one trained for this target?")
            failures += 1
    print("smollm2 reference:", "FAIL" if failures else "ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
