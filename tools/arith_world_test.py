#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Tests of tools/arith_world.py (the arithmetic world and its oracle) and of the shipped arith
tokenizer: HF `tokenizers` and the C++ `verdict tokenize` must agree on the world's text.

Usage: .venv/bin/python tools/arith_world_test.py [BIN_DIR]   (BIN_DIR holds `verdict`; the
tokenizer comparison is skipped when it is missing, default build/bin)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import arith_world as W  # noqa: E402

BIN_DIR = Path(os.environ.get("VERDICT_BIN_DIR", ROOT / "build" / "bin"))
MODEL_DIR = ROOT / "assets" / "models" / "arith-target"

ANN = W.Problem("Ann", "apples", 23, (("buys", 14), ("gives away", 9)))
BEN = W.Problem("Ben", "coins", 50, (("eats", 20),))


class OracleTest(unittest.TestCase):
    def test_prompt(self):
        self.assertEqual(
            W.prompt(ANN),
            "Q: Ann has 23 apples. She buys 14 more and gives away 9. "
            "How many apples does Ann have?\nA:")
        self.assertEqual(W.prompt(BEN),
                         "Q: Ben has 50 coins. He eats 20. How many coins does Ben have?\nA:")

    def test_styles(self):
        self.assertEqual(W.render_style(ANN, "equations"),
                         " 23 + 14 = 37. 37 - 9 = 28. The answer is 28.")
        self.assertEqual(W.render_style(ANN, "commuted"),
                         " 14 + 23 = 37. 37 - 9 = 28. The answer is 28.")
        self.assertEqual(W.render_style(ANN, "result-first"),
                         " 37 = 23 + 14. 28 = 37 - 9. The answer is 28.")
        self.assertEqual(
            W.render_style(ANN, "words"),
            " Ann starts with 23. After buying 14 she has 37. After giving away 9 she has 28. "
            "Answer: 28.")
        self.assertEqual(
            W.render_style(ANN, "words-so"),
            " Ann starts with 23. She buys 14, so she has 37. She gives away 9, so she has 28. "
            "So Ann has 28 apples.")
        self.assertEqual(W.render_style(BEN, "words"),
                         " Ben starts with 50. After eating 20 he has 30. Answer: 30.")

    def test_correct_set(self):
        rs = W.renderings(ANN)
        self.assertEqual(len(rs), 5 * 4 * 3)  # + step: 5 forms, - step: 4 forms, 3 finals
        self.assertEqual(len(set(rs)), len(rs))
        self.assertIn(" 23 + 14 = 37. After giving away 9 she has 28. So Ann has 28 apples.", rs)
        self.assertIn(" Ann starts with 23. She buys 14, so she has 37. 28 = 37 - 9. Answer: 28.",
                      rs)
        self.assertEqual(len(W.renderings(BEN)), 4 * 3)
        for r in rs:
            self.assertTrue(r.startswith(" ") and not r.startswith("  "))

    def test_correct_prefixes(self):
        for text in ["", " ", " 2", " 23", " 23 +", " 23 + 14 = 3", " 14", " 14 + 23 = 37.",
                     " 37 = 23 + 14. 37 - 9 = 28.", " Ann starts", " Ann starts with 23. She",
                     " Ann starts with 23. After buying 14 she has 37. 28 = 37",
                     " 23 + 14 = 37. 37 - 9 = 28. The answer is 28.",
                     " 23 + 14 = 37. 37 - 9 = 28. So Ann has 28 apples."]:
            self.assertTrue(W.is_correct_prefix(ANN, text), text)

    def test_wrong_prefixes(self):
        for text in [" 23 + 14 = 38",            # wrong digit
                     " 23 + 15",                  # wrong operand
                     " 23 - 14",                  # wrong sign
                     " 9 - 37",                   # commuted minus
                     " Ben starts",               # wrong name
                     " Ann starts with 23. He",   # wrong pronoun
                     " Ann starts with 23. After buying 14 he",
                     " Ann starts with 23. After selling 14",   # wrong verb
                     " Ann starts with 23. She gives away 14",  # wrong verb
                     " 23 + 14 = 37. The answer is",            # ending early
                     " 23 + 14 = 37. 37 - 9 = 28. The answer is 37",
                     " 23 + 14 = 37. 37 - 9 = 28. So Ann has 28 coins",
                     "23 + 14 = 37.",             # missing leading space
                     "  23"]:                     # two spaces
            self.assertFalse(W.is_correct_prefix(ANN, text), text)

    def test_final_answer(self):
        self.assertEqual(W.final_answer(" 23 + 14 = 37. 37 - 9 = 28. The answer is 28."), 28)
        self.assertEqual(W.final_answer(" So Ann has 28 apples."), 28)
        self.assertIsNone(W.final_answer(" The answer is"))
        self.assertTrue(W.check(ANN, " 23 + 14 = 37. 37 - 9 = 28. The answer is 28."))
        self.assertFalse(W.check(ANN, " 23 + 14 = 37. The answer is 37."))
        self.assertTrue(W.is_full_correct(ANN, " 23 + 14 = 37. 37 - 9 = 28. Answer: 28.\n"))
        self.assertFalse(W.is_full_correct(ANN, " 23 + 14 = 37. 37 - 9 = 28. Answer: 28. 28"))

    def test_every_rendering_passes(self):
        rng = random.Random(5)
        for p in W.unique_problems(3, "train", 300):
            for r in W.renderings(p):
                self.assertTrue(W.is_correct_prefix(p, r))
                self.assertTrue(W.is_full_correct(p, r))
                self.assertEqual(W.final_answer(r), p.answer)
                self.assertTrue(W.check(p, r))
            for mix in ({"uniform": 1.0}, {"equations": 0.9, "uniform": 0.1},
                        {"words": 0.7, "uniform": 0.3}):
                self.assertIn(W.sample_answer(p, rng, mix), W.renderings(p))


class GeneratorTest(unittest.TestCase):
    def test_values_in_range(self):
        for split in ("train", "eval"):
            for p in W.unique_problems(11, split, 3000):
                self.assertIn(len(p.ops), (1, 2))
                self.assertTrue(all(0 <= v <= W.MAX_VALUE for v in p.values()), p)
                self.assertTrue(all(a >= 1 for _, a in p.ops))
                self.assertIn(p.name, W.PRONOUN)

    def test_determinism(self):
        self.assertEqual(W.unique_problems(7, "eval", 200), W.unique_problems(7, "eval", 200))
        self.assertEqual(W.unique_problems(7, "train", 200), W.unique_problems(7, "train", 200))
        self.assertNotEqual(W.unique_problems(7, "eval", 50), W.unique_problems(8, "eval", 50))
        with tempfile.TemporaryDirectory() as d:
            a, b = Path(d) / "a.jsonl", Path(d) / "b.jsonl"
            W.main(["eval", "--seed", "3", "--count", "40", "--out", str(a)])
            W.main(["eval", "--seed", "3", "--count", "40", "--out", str(b)])
            self.assertEqual(a.read_bytes(), b.read_bytes())
            lines = [json.loads(x) for x in a.read_text().splitlines()]
            self.assertEqual(len(lines), 40)
            for ln in lines:
                self.assertTrue(ln["prompt"].endswith("\nA:"))
                self.assertTrue(all(x.startswith(" ") for x in ln["answers"]))
                self.assertEqual(W.final_answer(ln["answers"][0]), int(ln["final_answer"]))

    def test_train_eval_disjoint(self):
        ev = set(W.unique_problems(1, "eval", 3000))
        tr = set(W.unique_problems(1, "train", 30000))
        self.assertTrue(all(W.is_eval(p) for p in ev))
        self.assertFalse(any(W.is_eval(p) for p in tr))
        self.assertFalse(ev & tr)
        # The bucket is about 10% of the problems.
        rng = random.Random(0)
        share = sum(W.is_eval(W.random_problem(rng)) for _ in range(20000)) / 20000
        self.assertTrue(0.08 < share < 0.12, share)


class TokenizerTest(unittest.TestCase):
    """The shipped tokenizer: single digits, prompt/answer split stable, C++ == HF."""

    @classmethod
    def setUpClass(cls):
        if not (MODEL_DIR / "tokenizer.json").exists():
            raise unittest.SkipTest(f"{MODEL_DIR} has no tokenizer.json")
        from tokenizers import Tokenizer
        cls.tok = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
        rng = random.Random(17)
        cls.texts = []
        for p in W.unique_problems(17, "eval", 150):
            cls.texts.append((W.prompt(p), W.sample_answer(p, rng, {"uniform": 1.0})))

    def ids(self, text):
        return self.tok.encode(text, add_special_tokens=False).ids

    def test_digits_are_single_tokens(self):
        for prompt, answer in self.texts[:50]:
            for piece in self.tok.encode(prompt + answer, add_special_tokens=False).tokens:
                if any(c.isdigit() for c in piece):
                    self.assertEqual(len(piece), 1, piece)

    def test_prompt_answer_boundary(self):
        for prompt, answer in self.texts:
            self.assertEqual(self.ids(prompt) + self.ids(answer), self.ids(prompt + answer))

    def test_cpp_agrees(self):
        verdict = BIN_DIR / "verdict"
        if not verdict.exists() or not (MODEL_DIR / "config.json").exists():
            self.skipTest(f"no {verdict} or no exported model")
        n = 0
        for prompt, answer in self.texts:
            for text in (prompt + answer, answer):
                out = subprocess.run([str(verdict), "tokenize", "--model", str(MODEL_DIR),
                                      "--text", text], capture_output=True, text=True, check=True)
                self.assertEqual(json.loads(out.stdout)["ids"], self.ids(text), text)
                n += 1
        self.assertGreaterEqual(n, 300)


if __name__ == "__main__":
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        BIN_DIR = Path(sys.argv.pop(1))
    unittest.main()
