#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The shipped arithmetic-world models (assets/models/arith-*) in `verdict`, against PyTorch:

- `verdict score --dump-logits` reproduces transformers' LlamaForCausalLM logits on a few held-out
  problems with their answers, for the target and the draft (same tolerance as the engine tests);
- a short `verdict judge eval` smoke run with the shipped judge head on a few held-out problems:
  standard speculative decoding reproduces the target alone exactly, the judge row runs, and the
  oracle row lets no wrong token through. (The full table is a benchmark: see docs/arith-world.md.)

Usage: arith_models_test.py BUILD_BIN_DIR
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import torch
from tokenizers import Tokenizer
from transformers import LlamaForCausalLM

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(REPO, "assets", "models")
TARGET = os.path.join(MODELS, "arith-target")
DRAFT = os.path.join(MODELS, "arith-draft")
HEAD = os.path.join(MODELS, "arith-judge", "judge-head.safetensors")
sys.path.insert(0, os.path.join(REPO, "tools"))
import arith_world  # noqa: E402

VERDICT = None


def run(*args, timeout=300):
    return subprocess.run([VERDICT, *args], capture_output=True, timeout=timeout)


class ArithModelsTest(unittest.TestCase):
    def test_logits_match_pytorch(self):
        problems = arith_world.unique_problems(seed=11, split="eval", count=3)
        for model_dir in (TARGET, DRAFT):
            tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
            model = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
            bos = tokenizer.token_to_id("<|begin_of_text|>")
            for p in problems:
                text = arith_world.prompt(p) + arith_world.renderings(p)[0]
                ids = [bos] + tokenizer.encode(text, add_special_tokens=False).ids
                with torch.no_grad():
                    expected = model(torch.tensor([ids])).logits[0].numpy()
                with tempfile.TemporaryDirectory() as tmp:
                    npy = os.path.join(tmp, "logits.npy")
                    r = run("score", "--model", model_dir, "--token-ids", ",".join(map(str, ids)),
                            "--dump-logits", npy)
                    self.assertEqual(r.returncode, 0, r.stderr.decode())
                    got = np.load(npy)
                self.assertEqual(got.shape, expected.shape)
                err = np.abs(got - expected).max() / np.abs(expected).max()
                self.assertLessEqual(err, 1e-4, f"{model_dir}: {text!r}")

    def test_judge_eval_smoke(self):
        with tempfile.TemporaryDirectory() as tmp:
            tasks = os.path.join(tmp, "eval.jsonl")
            arith_world.write_tasks(tasks, seed=5, split="eval", count=6)
            r = run("judge", "eval", "--model", TARGET, "--draft", DRAFT, "--judge", HEAD, "--tasks", tasks,
                    "--check", "final-answer", "--k", "8", "--max-tokens", "96", "--threads", "1",
                    "--policies", "target,greedy,judge,oracle", "--json", "-")
            self.assertEqual(r.returncode, 0, r.stderr.decode())
            rows = {row["name"]: row for row in json.loads(r.stdout.decode())["policies"]}
        self.assertEqual(rows["greedy"]["correct"], rows["target"]["correct"])
        self.assertEqual(rows["greedy"]["tokens"], rows["target"]["tokens"])
        self.assertLess(rows["greedy"]["target_passes"], rows["target"]["target_passes"])
        self.assertEqual(rows["oracle"]["wrong_let_through"], 0)
        self.assertGreaterEqual(rows["judge"]["examples"], 6)


if __name__ == "__main__":
    VERDICT = os.path.join(sys.argv.pop(1), "verdict")
    unittest.main(verbosity=2)
