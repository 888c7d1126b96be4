#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""End-to-end checks of speculative decoding and the judge pipeline through the `verdict` CLI, on the
demo pair (assets/models/tiny-stories as target, tiny-stories-draft as draft).

The task is built so that "correct but not what the target would say" exists by construction: each
story opening has two reference continuations, the target's own greedy continuation and the draft's,
both computed here with transformers (an independent implementation). Then:
- `verdict generate --draft` (greedy) equals transformers' greedy output of the target;
- `verdict judge data` -> `judge train` -> `judge eval` runs end to end; the lossless rows reproduce
  the target exactly (100% reference accuracy) and the judge row accepts draft tokens the exact rule
  rejects;
- a head used with another target is refused (and allowed with --judge-skip-fingerprint);
- bad input (vocabulary mismatch, k out of range, malformed task files) gives one-line errors.

Usage: judge_cli_test.py BUILD_BIN_DIR
"""
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer
from transformers import LlamaForCausalLM

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.path.join(REPO, "assets", "models", "tiny-stories")
DRAFT = os.path.join(REPO, "assets", "models", "tiny-stories-draft")
sys.path.insert(0, os.path.join(REPO, "tools"))
import train_demo_model as stories  # noqa: E402  (the demo grammar's word lists)

VERDICT = None
EOS = 698
MAX_TOKENS = 120


def run(*args, timeout=300):
    return subprocess.run([VERDICT, *args], capture_output=True, timeout=timeout)


def one_line_error(test, p, needle):
    test.assertEqual(p.returncode, 1, p.stdout.decode() + p.stderr.decode())
    err = p.stderr.decode()
    lines = [line for line in err.splitlines() if line.strip()]
    test.assertEqual(len(lines), 1, err)
    test.assertIn("verdict: error:", lines[0])
    test.assertIn(needle, lines[0])


def greedy_continuations(model_dir, tokenizer, prompts):
    """transformers' greedy continuation (text, without the stop token) of every prompt, or None when
    it does not stop within MAX_TOKENS."""
    torch.manual_seed(0)
    model = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    model.eval()
    out = []
    for prompt in prompts:
        ids = [tokenizer.token_to_id("<|begin_of_text|>")] + tokenizer.encode(prompt, add_special_tokens=False).ids
        with torch.no_grad():
            gen = model.generate(torch.tensor([ids]), max_new_tokens=MAX_TOKENS, do_sample=False,
                                 eos_token_id=EOS, pad_token_id=EOS)[0, len(ids):].tolist()
        if not gen or gen[-1] != EOS:
            out.append(None)
            continue
        out.append((gen[:-1], tokenizer.decode(gen[:-1], skip_special_tokens=False)))
    return out


class JudgePipelineTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="judge_cli_test_")
        tokenizer = Tokenizer.from_file(os.path.join(TARGET, "tokenizer.json"))
        rng = random.Random(7)
        prompts = []
        while len(prompts) < 48:
            p = (f"Once upon a time there was {stories.a_an(rng.choice(stories.SIZES))} "
                 f"{rng.choice(stories.ANIMALS)} named {rng.choice(stories.NAMES)}.")
            if p not in prompts:
                prompts.append(p)
        cls.target_out = greedy_continuations(TARGET, tokenizer, prompts)
        cls.draft_out = greedy_continuations(DRAFT, tokenizer, prompts)
        cls.examples = []
        for i, p in enumerate(prompts):
            if cls.target_out[i] is None or cls.draft_out[i] is None:
                continue
            cls.examples.append({"id": i, "prompt": p, "answers": [cls.target_out[i][1], cls.draft_out[i][1]]})
        assert len(cls.examples) >= 24, len(cls.examples)
        cls.train = os.path.join(cls.tmp, "train.jsonl")
        cls.eval = os.path.join(cls.tmp, "eval.jsonl")
        with open(cls.train, "w") as f:
            for e in cls.examples[:-8]:
                f.write(json.dumps(e) + "\n")
            f.write("{not json\n")  # skipped with a warning
        with open(cls.eval, "w") as f:
            for e in cls.examples[-8:]:
                f.write(json.dumps(e) + "\n")
        cls.prompts = prompts
        cls.dataset = os.path.join(cls.tmp, "data")
        cls.head = os.path.join(cls.tmp, "head.safetensors")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_1_greedy_speculative_equals_transformers_greedy(self):
        for i in range(3):
            if self.target_out[i] is None:
                continue
            for k in ("1", "8", "auto"):
                p = run("generate", "--model", TARGET, "--draft", DRAFT, "--prompt", self.prompts[i],
                        "--temperature", "0", "--max-tokens", str(MAX_TOKENS), "--k", k, "--stats-json")
                self.assertEqual(p.returncode, 0, p.stderr.decode())
                self.assertEqual(p.stdout.decode(), self.prompts[i] + self.target_out[i][1] + "\n")
                stats = json.loads(p.stderr.decode().strip().splitlines()[-1])
                self.assertEqual(stats["accepted"]["judge"], 0)
                self.assertEqual(stats["tokens"], len(self.target_out[i][0]) + 1)  # + the stop token
                self.assertEqual(sum(stats["accepted_length_histogram"]), stats["target_passes"])

    def test_2_data_train_eval(self):
        p = run("judge", "data", "--model", TARGET, "--draft", DRAFT, "--tasks", self.train, "--out",
                self.dataset, "--k", "8", "--max-tokens", str(MAX_TOKENS), "--quiet",
                # Greedy proposals would follow the draft's own (reference) answer and never be wrong.
                "--draft-temperature", "1.0", "--seed", "3")
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertIn("skipped 1 malformed line", p.stderr.decode())
        out = p.stdout.decode()
        self.assertIn("labeled draft tokens", out)
        with open(os.path.join(self.dataset, "dataset.json")) as f:
            info = json.load(f)
        self.assertEqual(info["hidden_size"], 128)
        fingerprint = info["info"]["target_fingerprint"]

        p = run("judge", "train", "--data", self.dataset, "--out", self.head, "--features", "auto",
                "--max-far", "0.05")
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        print(p.stdout.decode(), file=sys.stderr)
        head = load_file(self.head)
        self.assertEqual(head["weight"].shape, (128,))
        with open(self.head, "rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            meta = json.loads(f.read(header_len))["__metadata__"]
        self.assertEqual(meta["format"], "verdict-judge-head/1")
        self.assertEqual(meta["hidden_state"], "final_norm_output")
        self.assertEqual(meta["target_fingerprint"], fingerprint)

        p = run("judge", "eval", "--model", TARGET, "--draft", DRAFT, "--tasks", self.eval, "--judge",
                self.head, "--check", "reference", "--k", "8", "--max-tokens", str(MAX_TOKENS),
                "--policies", "target,greedy,judge-shadow,judge,lossy-prob", "--json", "-", "--threads", "1")
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        rows = {r["name"]: r for r in json.loads(p.stdout.decode())["policies"]}
        self.assertEqual(rows["target"]["accuracy"], 1.0)
        self.assertEqual(rows["greedy"]["accuracy"], 1.0)
        self.assertEqual(rows["judge-shadow"]["accuracy"], 1.0)
        self.assertGreater(rows["greedy"]["tokens_per_target_pass"], 1.0)
        self.assertEqual(rows["greedy"]["tokens"], rows["target"]["tokens"])
        self.assertGreaterEqual(rows["judge"]["tokens_per_target_pass"], rows["greedy"]["tokens_per_target_pass"])
        self.assertGreater(rows["judge"]["accepted"]["judge"], 0)
        self.assertEqual(rows["greedy"]["accepted"]["judge"], 0)
        # The human table for the log.
        p = run("judge", "eval", "--model", TARGET, "--draft", DRAFT, "--tasks", self.eval, "--judge",
                self.head, "--check", "reference", "--k", "8", "--max-tokens", str(MAX_TOKENS), "--threads", "1")
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        print(p.stdout.decode(), file=sys.stderr)

        # The head drives `verdict generate` too.
        p = run("generate", "--model", TARGET, "--draft", DRAFT, "--judge", self.head, "--prompt",
                self.prompts[0], "--temperature", "0", "--max-tokens", "60")
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertIn("policy greedy+judge", p.stderr.decode())

        # A copy of the target with a different final norm is another model: the head is refused.
        other = os.path.join(self.tmp, "other-target")
        shutil.copytree(TARGET, other)
        weights = load_file(os.path.join(other, "model.safetensors"))
        weights["model.norm.weight"] = (weights["model.norm.weight"] * 1.05).astype(np.float32)
        save_file(weights, os.path.join(other, "model.safetensors"), metadata={"format": "pt"})
        args = ["generate", "--model", other, "--draft", DRAFT, "--judge", self.head, "--prompt", "Once",
                "--max-tokens", "5"]
        one_line_error(self, run(*args), "another target")
        p = run(*args, "--judge-skip-fingerprint")
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertIn("warning", p.stderr.decode())

    def test_3_bad_input(self):
        gqa = os.path.join(REPO, "tests", "fixtures", "models", "llama3_gqa")
        one_line_error(self, run("generate", "--model", TARGET, "--draft", gqa, "--prompt", "x"),
                       "share a vocabulary")
        for k in ("0", "300"):
            one_line_error(self, run("generate", "--model", TARGET, "--draft", DRAFT, "--prompt", "x", "--k", k),
                           "draft window")
        one_line_error(self, run("generate", "--model", TARGET, "--draft", DRAFT, "--prompt", "x", "--k", "lots"),
                       "--k must be")
        one_line_error(self, run("generate", "--model", TARGET, "--judge", self.head, "--prompt", "x"),
                       "need a draft model")
        one_line_error(self, run("generate", "--model", TARGET, "--draft", DRAFT, "--prompt", "x", "--policy",
                                 "fastest"), "unknown verification policy")
        bad = os.path.join(self.tmp, "bad.jsonl")
        with open(bad, "w") as f:
            f.write('{"answers": ["no prompt"]}\n[1, 2]\n{"prompt": 5, "answer": "x"}\n')
        one_line_error(self, run("judge", "data", "--model", TARGET, "--draft", DRAFT, "--tasks", bad, "--out",
                                 os.path.join(self.tmp, "bad-data")), "usable")
        one_line_error(self, run("judge", "eval", "--model", TARGET, "--draft", DRAFT, "--tasks",
                                 os.path.join(self.tmp, "missing.jsonl")), "missing.jsonl")
        one_line_error(self, run("judge", "train", "--data", os.path.join(self.tmp, "no-such-dataset"), "--out",
                                 os.path.join(self.tmp, "h.safetensors")), "no-such-dataset")
        with open(os.path.join(self.tmp, "garbage.safetensors"), "wb") as f:
            f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}xx")
        one_line_error(self, run("generate", "--model", TARGET, "--draft", DRAFT, "--judge",
                                 os.path.join(self.tmp, "garbage.safetensors"), "--prompt", "x"), "garbage")


if __name__ == "__main__":
    VERDICT = os.path.join(sys.argv.pop(1), "verdict")
    unittest.main(verbosity=2)
