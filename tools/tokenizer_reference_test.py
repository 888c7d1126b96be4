#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Reference test: Verdict's tokenizers (through build/bin/tokenizer_driver) against the Python
reference implementations, on the real Llama 2 / Llama 3 vocabularies and on freshly trained
byte-level BPEs.

  (a) Llama 3: tokenizer.model (tiktoken ranks) -> tokenizer.json with transformers' tiktoken
      converter (plus the BOS template of Meta's tokenizer.json); compared with HF `tokenizers`.
  (b) Llama 2: tokenizer.model -> a GGUF "llama" vocabulary (via the `gguf` package) compared
      with `sentencepiece`, and -> HF's tokenizer.json conversion compared with HF `tokenizers`.
  (c) small byte-level BPEs trained with HF `tokenizers` (Llama-3 split regex; GPT-2 ByteLevel
      regex + single digits; ByteLevel with prefix space and lstrip/rstrip/single_word added
      tokens), saved as tokenizer.json and compared.

Every comparison covers encoding (add_bos / parse_special on and off), decoding (with and without
special tokens) and streaming decoding (IncrementalDetokenizer: concatenation equals decode, every
piece valid UTF-8). Each mismatch prints the text and both id lists; the exit code is 1 if any.

Exit 77 (CTest SKIP_RETURN_CODE) with "SKIPPED: ..." only when the shared tokenizer directory is
absent. Generated files go to --workdir (the build tree), never into the repository.
"""

import argparse
import base64
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import time

LLAMA3_SPECIALS = (
    ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
     "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
     "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]
    + [f"<|reserved_special_token_{i}|>" for i in range(3, 248)])
assert len(LLAMA3_SPECIALS) == 256

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

PERF_LIMIT_S = 1.0  # encoding 100 KB with the Llama-3 vocabulary


# ------------------------------------------------------------------------------------------------
# Corpus

def hard_strings():
    s = [
        "", " ", "  ", "\n", "\t", "Hello world", " Hello", "  Hello", "Hello  world", "Hello world ",
        "hello\n\nworld", "a\r\nb\r\n\r\nc", "\n\n\n", "   \n  \n   x", "x   ", " \t\n x",
        "tabs\t\tand\t spaces \t\n mixed \n\t\n", "line one\nline two\n\n\nline five\n",
        "!!!\n\n\nx", "foo.\n\nbar", "   leading and trailing   ", "\r\r\n\n\r",
        # contractions
        "I'm you're we've they'll he'd it's can't don't", "I'M YOU'RE WE'VE THEY'LL HE'D IT'S",
        "'s 'S 'll 'Ll 'lL 're 'RE 'Re 've 'VE 'm 'M 'd 'D 't 'T", "O'Neil's dog's 'sup' 'twas",
        "don\u2019t it\u2019s", "'ſ 'K", "x's", "''s", "' s",
        # digits and numbers
        "1", "12", "123", "1234", "12345", "1234567890", "3.14159", "1,000,000", "-42", "+1e-10",
        "0x1F", "v1.2.3", "\u0663\u0664\u0665\u0666", "x\u00b2\u00b3", "\u00bd \u2153", "\u216b",
        "\uff11\uff12\uff13\uff14", "2024-01-15T12:34:56Z", "a1b22c333d4444", "12abc", "abc12",
        # unicode letters
        "na\u00efve caf\u00e9 r\u00e9sum\u00e9", "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac",
        "\u0420\u0443\u0441\u0441\u043a\u0438\u0439 \u0442\u0435\u043a\u0441\u0442",
        "\u0627\u0644\u0639\u0631\u0628\u064a\u0629", "\u05e2\u05d1\u05e8\u05d9\u05ea",
        "\u0939\u093f\u0928\u094d\u0926\u0940 \u092d\u093e\u0937\u093e", "\u0e44\u0e17\u0e22",
        "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8", "\u4e2d\u6587\u5b57\u7b26\u6d4b\u8bd5",
        "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8", "\u65e5\u672c\u8a9e and English mixed",
        "e\u0301 a\u0308 n\u0303", "\ufb01 ligature", "\u212b \u00c5", "\u1e9e\u00df",
        "\U00031350\U00011f04\U0001e030",  # letters assigned in Unicode 15
        # emoji
        "\U0001f600", "\U0001f44d\U0001f3fd", "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",
        "\U0001f3f3\ufe0f\u200d\U0001f308", "\U0001f1fa\U0001f1f8\U0001f1ef\U0001f1f5",
        "a\U0001f600b", "\U0001f600\U0001f600\U0001f600", "1\ufe0f\u20e3", " \U0001f600 \U0001f600 ",
        # odd whitespace / controls
        "\u00a0nbsp", "a\u00a0b", "\u2003em space", "\u3000ideographic", "\u200bzero width",
        "\u2028line\u2029para", "\x0b\x0c", "\x85next", "\x00nul\x01\x1f", "word \n", "\u180e",
        # code
        "def f(x):\n    return x ** 2  # square\n\n\nprint(f(3))\n",
        "int main() {\n\tstd::vector<int> v{1, 2, 3};\n\treturn v[0];\n}\n",
        '{"key": [1, 2.5, "three", null], "nested": {"a": true}}',
        "<html><body class=\"x\">Hi &amp; bye</body></html>",
        "https://example.com/path?query=1&x=%20y#frag", "SELECT * FROM t WHERE a = 'b';",
        "    indented\n        more\n", "a = b+c*d/e-f%g^h|i&j~k",
        # special-token look-alikes
        "<|begin_of_text|>hello<|eot_id|>", "<|eot_id|><|eot_id|>", "<|eot_id",
        "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>", "<|unknown_special|>",
        "text<|reserved_special_token_5|>more", " <|eot_id|> spaced ", "<s> </s> <unk> x<s>y",
        "<|python_tag|>print(1)<|eom_id|>",
        # long words and runs
        "a" * 3000, "supercalifragilistic" * 40, "ab" * 1500, "\U0001f600" * 300, "7" * 1001,
        " " * 500, "\n" * 300, "\t \n" * 200, "x" + " " * 100 + "y", "-" * 400, "\u4e2d" * 700,
    ]
    return s


def random_strings(rng, n):
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "0123456789", "   \t\n\r", ".,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`",
        "\u00e9\u00fc\u00f1\u00e7\u00df\u0153\u00e6\u00f8",
        "\u0430\u0431\u0432\u0433\u0434\u0435\u0436", "\u4e00\u4e8c\u4e09\u4eba\u5927\u5c0f",
        "\u3042\u3044\u3046\u30a2\u30a4", "\U0001f600\U0001f680\u2764\ufe0f\u200d",
        "\u0301\u0308\u0327", "\u00a0\u2003\u3000\u200b", "\u0660\u0661\u00b2\u2155\u2167",
    ]
    out = []
    for _ in range(n):
        k = rng.randint(1, 60)
        out.append("".join(rng.choice(rng.choice(pools)) for _ in range(k)))
    return out


def big_text(rng, size):
    parts = hard_strings()[:120] + random_strings(rng, 200)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "Llama", "token",
             "2024", "can't", "\u65e5\u672c", "caf\u00e9", "\U0001f600", "\n", "  ", "x=1;"]
    chunks = []
    total = 0
    while total < size:
        piece = rng.choice(parts) if rng.random() < 0.2 else " ".join(
            rng.choice(words) for _ in range(rng.randint(3, 20)))
        chunks.append(piece)
        total += len(piece.encode("utf-8")) + 1
    return "\n".join(chunks)[: size]


# ------------------------------------------------------------------------------------------------
# Driver

class Driver:
    def __init__(self, binary, flag, path):
        self.proc = subprocess.Popen([binary, flag, path], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.label = f"{flag} {os.path.basename(path)}"

    def call(self, request):
        line = json.dumps(request, ensure_ascii=True) + "\n"
        self.proc.stdin.write(line.encode("ascii"))
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            err = self.proc.stderr.read().decode("utf-8", "replace")
            raise RuntimeError(f"tokenizer_driver ({self.label}) died: {err}")
        return json.loads(reply)

    def encode(self, text, add_bos=False, parse_special=False):
        r = self.call({"op": "encode", "text": text, "add_bos": add_bos,
                       "parse_special": parse_special})
        if "error" in r:
            raise RuntimeError(f"encode failed: {r}")
        return r["ids"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


class Checker:
    def __init__(self):
        self.failures = 0
        self.checks = 0

    def equal(self, label, text, ours, theirs):
        self.checks += 1
        if ours == theirs:
            return True
        self.failures += 1
        shown = repr(text) if len(repr(text)) <= 300 else repr(text)[:300] + f"... ({len(text)} chars)"
        print(f"MISMATCH [{label}] text={shown}", file=sys.stderr)
        if isinstance(ours, list) and isinstance(theirs, list):
            first = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b),
                         min(len(ours), len(theirs)))
            lo = max(0, first - 5)
            print(f"  first difference at index {first} (lengths {len(ours)} vs {len(theirs)})",
                  file=sys.stderr)
            if len(ours) + len(theirs) > 400:
                print(f"  verdict [{lo}:{first + 10}] = {ours[lo:first + 10]}", file=sys.stderr)
                print(f"  reference[{lo}:{first + 10}] = {theirs[lo:first + 10]}", file=sys.stderr)
                return False
        print(f"  verdict   = {ours!r}", file=sys.stderr)
        print(f"  reference = {theirs!r}", file=sys.stderr)
        return False

    def true(self, label, cond, detail):
        self.checks += 1
        if not cond:
            self.failures += 1
            print(f"FAILED [{label}] {detail}", file=sys.stderr)


def compare_hf(checker, name, driver, hf, corpus, specials_in_text=True, bos_cases=(False, True)):
    """Encode/decode/stream-decode `corpus` with the driver and with HF tokenizers."""
    for text in corpus:
        for parse_special in ((False, True) if specials_in_text else (False,)):
            hf.encode_special_tokens = not parse_special
            for add_bos in bos_cases:
                theirs = hf.encode(text, add_special_tokens=add_bos).ids
                ours = driver.encode(text, add_bos=add_bos, parse_special=parse_special)
                checker.equal(f"{name} encode add_bos={add_bos} parse_special={parse_special}",
                              text, ours, theirs)
        hf.encode_special_tokens = False
        ids = hf.encode(text, add_special_tokens=True).ids
        for skip in (False, True):
            theirs = hf.decode(ids, skip_special_tokens=skip)
            r = driver.call({"op": "decode", "ids": ids, "skip_special": skip})
            checker.equal(f"{name} decode skip_special={skip}", text, r.get("text"), theirs)
            s = driver.call({"op": "stream_decode", "ids": ids, "skip_special": skip})
            checker.equal(f"{name} stream_decode skip_special={skip}", text, s.get("text"), theirs)
            checker.true(f"{name} stream_decode valid UTF-8", s.get("all_valid"), repr(text)[:200])


def compare_random_decodes(checker, name, driver, hf, vocab_size, rng, n=150, exclude=()):
    """Random id sequences (partial UTF-8 characters, specials): decode == HF, streaming too."""
    exclude = set(exclude)
    for _ in range(n):
        ids = []
        while len(ids) < rng.randint(1, 12):
            i = rng.randrange(vocab_size)
            if i not in exclude:
                ids.append(i)
        for skip in (False, True):
            theirs = hf.decode(ids, skip_special_tokens=skip)
            r = driver.call({"op": "decode", "ids": ids, "skip_special": skip})
            checker.equal(f"{name} random decode skip={skip}", ids, r.get("text"), theirs)
            s = driver.call({"op": "stream_decode", "ids": ids, "skip_special": skip})
            checker.equal(f"{name} random stream_decode skip={skip}", ids, s.get("text"), theirs)
            checker.true(f"{name} random stream_decode valid", s.get("all_valid"), str(ids))


# ------------------------------------------------------------------------------------------------
# (a) Llama 3

def llama3_tokenizer_json(shared, workdir):
    from tokenizers import processors
    from transformers.convert_slow_tokenizer import TikTokenConverter

    model = os.path.join(shared, "llama3", "tokenizer.model")
    digest = hashlib.md5(open(model, "rb").read()).hexdigest()[:12]
    out = os.path.join(workdir, f"llama3-{digest}.tokenizer.json")
    if not os.path.exists(out):
        tok = TikTokenConverter(vocab_file=model, extra_special_tokens=LLAMA3_SPECIALS).converted()
        # As in Meta's tokenizer.json: BOS through a TemplateProcessing post-processor.
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single="<|begin_of_text|> $A",
                pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                special_tokens=[("<|begin_of_text|>", tok.token_to_id("<|begin_of_text|>"))])])
        tok.save(out + ".tmp")
        os.replace(out + ".tmp", out)
    return out


def test_llama3(args, checker, corpus, big, rng):
    from tokenizers import Tokenizer

    path = llama3_tokenizer_json(args.shared, args.workdir)
    hf = Tokenizer.from_file(path)
    driver = Driver(args.driver, "--hf", path)
    info = driver.call({"op": "info"})
    checker.equal("llama3 info", "", [info["vocab_size"], info["bos_id"]],
                  [hf.get_vocab_size(), 128000])
    compare_hf(checker, "llama3", driver, hf, corpus)
    compare_random_decodes(checker, "llama3", driver, hf, hf.get_vocab_size(), rng)
    # Byte tokens that split multi-byte characters across the stream.
    for text in ["\U0001f468\u200d\U0001f469\u200d\U0001f467", "\u65e5\u672c\u8a9e", "\u00e9\u00e9"]:
        byte_ids = [hf.token_to_id("".join(_BYTE_LEVEL[b] for b in [c])) for c in text.encode()]
        s = driver.call({"op": "stream_decode", "ids": byte_ids, "skip_special": False})
        checker.equal("llama3 byte-by-byte stream", text, s.get("text"), text)
        checker.true("llama3 byte-by-byte pieces valid", s.get("all_valid"), repr(text))
    # 100 KB text: equality and speed.
    hf.encode_special_tokens = True
    theirs = hf.encode(big, add_special_tokens=False).ids
    r = driver.call({"op": "encode", "text": big})
    checker.equal("llama3 encode 100KB", big, r.get("ids"), theirs)
    seconds = r.get("us", 1e9) / 1e6
    print(f"llama3: encoded {len(big.encode())} bytes into {len(theirs)} tokens in {seconds:.3f} s")
    checker.true("llama3 100KB speed", seconds < PERF_LIMIT_S,
                 f"encoding 100 KB took {seconds:.3f} s (limit {PERF_LIMIT_S} s)")
    # Invalid UTF-8 never crashes and round-trips through the byte tokens.
    for raw in [b"\xff", b"abc\x80def", b"\xe2\x82", b"ok \xf0\x9f\x98 bad", b"\xc0\xaf",
                b"\xed\xa0\x80", b"caf\xe9 \xe9t\xe9", bytes(range(256))]:
        r = driver.call({"op": "encode", "text_b64": base64.b64encode(raw).decode()})
        ok = "ids" in r
        checker.true("llama3 invalid utf-8 encode", ok, f"{raw!r}: {r}")
        if ok:
            back = b"".join(base64.b64decode(driver.call({"op": "token_bytes", "id": i})["b64"])
                            for i in r["ids"])
            checker.equal("llama3 invalid utf-8 round trip", raw, back, raw)
    # Chat format == HF rendering of the Llama-3 template, tokenized with specials parsed.
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "  What is 2+2?\n"},
                {"role": "assistant", "content": "4"},
                {"role": "user", "content": "And 3+3? \U0001f600"}]
    expected = "<|begin_of_text|>"
    for m in messages:
        expected += (f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n"
                     f"{m['content'].strip()}<|eot_id|>")
    expected += "<|start_header_id|>assistant<|end_header_id|>\n\n"
    r = driver.call({"op": "chat", "messages": messages, "add_generation_prompt": True})
    checker.equal("llama3 chat text", "chat", r.get("text"), expected)
    hf.encode_special_tokens = False
    checker.equal("llama3 chat ids", expected, r.get("ids"),
                  hf.encode(expected, add_special_tokens=False).ids)
    driver.close()


_BYTE_LEVEL = None


def _init_byte_level():
    global _BYTE_LEVEL
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1))
          + list(range(ord("\u00ae"), ord("\u00ff") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    _BYTE_LEVEL = {b: chr(c) for b, c in zip(bs, cs)}


# ------------------------------------------------------------------------------------------------
# (b) Llama 2

def llama2_files(shared, workdir):
    import gguf
    import sentencepiece as spm
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers import processors
    from transformers.convert_slow_tokenizer import SentencePieceExtractor

    model = os.path.join(shared, "llama2", "tokenizer.model")
    sp = spm.SentencePieceProcessor(model_file=model)
    digest = hashlib.md5(open(model, "rb").read()).hexdigest()[:12]
    gguf_path = os.path.join(workdir, f"llama2-{digest}.vocab.gguf")
    json_path = os.path.join(workdir, f"llama2-{digest}.tokenizer.json")
    metaspace_paths = {v: os.path.join(workdir, f"llama2-{digest}-{v}.tokenizer.json")
                       for v in ("metaspace-first", "metaspace-always")}
    if not os.path.exists(gguf_path):
        tokens, scores, types = [], [], []
        for i in range(sp.get_piece_size()):
            tokens.append(sp.id_to_piece(i))
            scores.append(sp.get_score(i))
            if sp.is_unknown(i):
                types.append(int(gguf.TokenType.UNKNOWN))
            elif sp.is_control(i):
                types.append(int(gguf.TokenType.CONTROL))
            elif sp.is_byte(i):
                types.append(int(gguf.TokenType.BYTE))
            elif sp.is_unused(i):
                types.append(int(gguf.TokenType.UNUSED))
            else:
                types.append(int(gguf.TokenType.NORMAL))
        w = gguf.GGUFWriter(gguf_path + ".tmp", "llama")
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_list(tokens)
        w.add_token_scores(scores)
        w.add_token_types(types)
        w.add_bos_token_id(sp.bos_id())
        w.add_eos_token_id(sp.eos_id())
        w.add_unk_token_id(sp.unk_id())
        w.add_add_bos_token(True)
        w.add_add_space_prefix(True)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(gguf_path + ".tmp", gguf_path)
    if not os.path.exists(json_path) or not all(map(os.path.exists, metaspace_paths.values())):
        kwargs = SentencePieceExtractor(model).extract(models.BPE)
        sp_char = "\u2581"
        sp_decoder = decoders.Sequence([decoders.Replace(sp_char, " "), decoders.ByteFallback(),
                                        decoders.Fuse(), decoders.Strip(" ", 1, 0)])

        def make(normalizer, pre_tokenizer, decoder, path):
            tok = Tokenizer(models.BPE(vocab=kwargs["vocab"], merges=kwargs["merges"],
                                       unk_token="<unk>", byte_fallback=True, fuse_unk=True))
            if normalizer is not None:
                tok.normalizer = normalizer
            if pre_tokenizer is not None:
                tok.pre_tokenizer = pre_tokenizer
            tok.decoder = decoder
            tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                    for t in ("<unk>", "<s>", "</s>")])
            tok.post_processor = processors.TemplateProcessing(
                single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
            tok.save(path + ".tmp")
            os.replace(path + ".tmp", path)

        # HF's legacy conversion of the Llama 2 SentencePiece model.
        make(normalizers.Sequence([normalizers.Prepend(sp_char),
                                   normalizers.Replace(" ", sp_char)]), None, sp_decoder, json_path)
        # Newer conversions (Mistral-style / transformers 5): a Metaspace pre-tokenizer.
        make(None, pre_tokenizers.Metaspace(replacement=sp_char, prepend_scheme="first",
                                            split=False), sp_decoder,
             metaspace_paths["metaspace-first"])
        make(None, pre_tokenizers.Metaspace(replacement=sp_char, prepend_scheme="always",
                                            split=True),
             decoders.Metaspace(replacement=sp_char, prepend_scheme="always", split=True),
             metaspace_paths["metaspace-always"])
    return sp, gguf_path, json_path, metaspace_paths


def test_llama2(args, checker, corpus, big, rng):
    from tokenizers import Tokenizer

    sp, gguf_path, json_path, metaspace_paths = llama2_files(args.shared, args.workdir)
    driver = Driver(args.driver, "--gguf", gguf_path)
    for text in corpus:
        theirs = sp.encode(text)
        ours = driver.encode(text)
        checker.equal("llama2 gguf encode vs sentencepiece", text, ours, theirs)
        ours_bos = driver.encode(text, add_bos=True)
        checker.equal("llama2 gguf encode add_bos", text, ours_bos, [sp.bos_id()] + theirs)
        for skip in (True,):
            r = driver.call({"op": "decode", "ids": theirs, "skip_special": skip})
            checker.equal("llama2 gguf decode vs sentencepiece", text, r.get("text"),
                          sp.decode(theirs))
            s = driver.call({"op": "stream_decode", "ids": ours_bos, "skip_special": skip})
            checker.equal("llama2 gguf stream_decode vs sentencepiece", text, s.get("text"),
                          sp.decode(theirs))
            checker.true("llama2 stream_decode valid", s.get("all_valid"), repr(text)[:200])
    theirs = sp.encode(big)
    r = driver.call({"op": "encode", "text": big})
    checker.equal("llama2 gguf encode 100KB", big, r.get("ids"), theirs)
    print(f"llama2: encoded {len(big.encode())} bytes into {len(theirs)} tokens in "
          f"{r.get('us', 0) / 1e6:.3f} s")
    # Special-token parsing. sentencepiece has none; llama.cpp (which the GGUF path follows)
    # encodes the text between special tokens on its own, each part with the "▁" prefix, i.e.
    # exactly sentencepiece's encoding of each part. (HF's rank-based conversion of the merges
    # differs from sentencepiece on some such parts, e.g. " <", so it is not the reference here.)
    special_ids = {"<s>": sp.bos_id(), "</s>": sp.eos_id(), "<unk>": sp.unk_id()}
    special_corpus = [t for t in corpus if "<" in t] + ["<s>hello</s>", "a <unk> b", "<s><s>"]
    for text in special_corpus:
        expected = [sp.bos_id()]
        for part in re.split(r"(<s>|</s>|<unk>)", text):
            if part in special_ids:
                expected.append(special_ids[part])
            elif part:
                expected.extend(sp.encode(part))
        ours = driver.encode(text, add_bos=True, parse_special=True)
        checker.equal("llama2 gguf parse_special vs sentencepiece per part", text, ours, expected)
    driver.close()
    # HF's tokenizer.json form of the same vocabulary through the --hf loader.
    hf = Tokenizer.from_file(json_path)
    # Byte tokens are left out of the random decodes: for byte runs that are not valid UTF-8, HF's
    # ByteFallback gives one U+FFFD per byte of the run; we follow from_utf8_lossy (documented).
    byte_ids = [i for i in range(sp.get_piece_size()) if sp.is_byte(i)]
    for name, path in [("llama2-hf", json_path)] + sorted(metaspace_paths.items()):
        hf = Tokenizer.from_file(path)
        hf_driver = Driver(args.driver, "--hf", path)
        compare_hf(checker, name, hf_driver, hf, corpus, bos_cases=(True,))
        compare_random_decodes(checker, name, hf_driver, hf, hf.get_vocab_size(), rng, n=60,
                               exclude=byte_ids)
        hf_driver.close()


# ------------------------------------------------------------------------------------------------
# (c) trained byte-level BPEs

def train_corpus(rng):
    lines = hard_strings() + random_strings(rng, 400)
    words = ["alpha", "beta", "gamma", "token", "tokenizer", "llama", "judge", "decoding",
             "speculative", "draft", "target", "the", "of", "and", "in", "to", "is", "it's",
             "don't", "\u65e5\u672c\u8a9e", "\u00e9t\u00e9", "\U0001f600", "12345", "2024"]
    for _ in range(1500):
        lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(2, 15))))
    return lines


def trained_tokenizers(workdir, rng):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from tokenizers import processors, trainers

    corpus = train_corpus(rng)
    out = {}
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]

    def finish(tok, name, add_tokens=()):
        tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
        for t in add_tokens:
            tok.add_tokens([t])
        bos = tok.token_to_id("<|begin_of_text|>")
        tok.post_processor = processors.TemplateProcessing(
            single="<|begin_of_text|> $A <|end_of_text|>", pair="<|begin_of_text|> $A $B",
            special_tokens=[("<|begin_of_text|>", bos),
                            ("<|end_of_text|>", tok.token_to_id("<|end_of_text|>"))])
        path = os.path.join(workdir, f"trained-{name}.tokenizer.json")
        tok.save(path)
        out[name] = path

    def trainer():
        return trainers.BpeTrainer(vocab_size=1200, min_frequency=2, show_progress=False,
                                   initial_alphabet=pre_tokenizers.ByteLevel.alphabet())

    # 1. Llama-3 pre-tokenizer; merges re-saved as "a b" strings (the older format).
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainer=trainer())
    finish(tok, "llama3-split")
    data = json.load(open(out["llama3-split"], encoding="utf-8"))
    data["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m
                               for m in data["model"]["merges"]]
    json.dump(data, open(out["llama3-split"], "w", encoding="utf-8"), ensure_ascii=False)

    # 2. Our models: single digits + the GPT-2 ByteLevel regex.
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainer=trainer())
    finish(tok, "gpt2-digits")

    # 3. GPT-2 style with add_prefix_space and added tokens with lstrip / rstrip / single_word.
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainer=trainer())
    finish(tok, "gpt2-prefix", add_tokens=[
        AddedToken("[MASK]", lstrip=True, rstrip=True, normalized=False),
        AddedToken("judge", single_word=True, normalized=False),
        AddedToken("\u00e9t\u00e9 ", normalized=True)])
    return out


def test_trained(args, checker, corpus, rng):
    from tokenizers import Tokenizer

    extra = ["the judge judged judges judge", "x [MASK] y", "x[MASK]y", "  [MASK]  ", "\u00e9t\u00e9 ok",
             "123 4567 89", "judge,judge", "_judge_"]
    for name, path in trained_tokenizers(args.workdir, rng).items():
        hf = Tokenizer.from_file(path)
        driver = Driver(args.driver, "--hf", path)
        compare_hf(checker, f"trained {name}", driver, hf, corpus + extra)
        compare_random_decodes(checker, f"trained {name}", driver, hf, hf.get_vocab_size(), rng,
                               n=60)
        driver.close()


# ------------------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--driver", required=True, help="path of the tokenizer_driver binary")
    parser.add_argument("--shared", required=True, help="the shared tokenizers directory")
    parser.add_argument("--workdir", required=True, help="scratch directory (build tree)")
    parser.add_argument("--only", choices=["llama3", "llama2", "trained"], default=None)
    args = parser.parse_args()

    if not os.path.isdir(args.shared):
        print(f"SKIPPED: {args.shared} does not exist (the real tokenizer files are not here)")
        return 77
    for name in ("tokenizers", "transformers", "sentencepiece", "gguf", "tiktoken"):
        try:
            __import__(name)
        except ImportError as e:
            print(f"FAILED: cannot import {name} ({e}); run scripts/setup.sh --test", file=sys.stderr)
            return 1
    if not os.access(args.driver, os.X_OK):
        print(f"FAILED: driver {args.driver} is not an executable", file=sys.stderr)
        return 1
    os.makedirs(args.workdir, exist_ok=True)
    _init_byte_level()

    start = time.time()
    rng = random.Random(20240607)
    corpus = hard_strings() + random_strings(rng, 150)
    big = big_text(rng, 100 * 1024)
    checker = Checker()
    if args.only in (None, "llama3"):
        test_llama3(args, checker, corpus, big, rng)
    if args.only in (None, "llama2"):
        test_llama2(args, checker, corpus, big, rng)
    if args.only in (None, "trained"):
        test_trained(args, checker, corpus, rng)
    elapsed = time.time() - start
    print(f"{checker.checks - checker.failures} passed, {checker.failures} failed "
          f"({elapsed:.1f} s)")
    return 1 if checker.failures else 0


if __name__ == "__main__":
    sys.exit(main())
