# SPDX-License-Identifier: Apache-2.0
"""Shared pieces of the tools that train small models: a byte-level BPE tokenizer in the Llama-3
layout and a Hugging Face Llama checkpoint directory.

Every model this repository ships is written by `save_llama_dir` (config.json,
generation_config.json, model.safetensors in f32 with tied embeddings, tokenizer.json,
tokenizer_config.json), so `verdict`, transformers and any other Hugging Face tool load them alike.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterable

from safetensors.torch import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from tokenizers import processors, trainers

BOS = "<|begin_of_text|>"
EOS = "<|end_of_text|>"


def train_byte_level_bpe(corpus: Iterable[str], splitter, learned_vocab: int, specials: list[str],
                         bos: str = BOS, byte_level_regex: bool = False,
                         ignore_merges: bool = True) -> Tokenizer:
    """A byte-level BPE trained on `corpus`: `splitter` (a pre-tokenizer, or None) runs before the
    ByteLevel step, `learned_vocab` tokens are learned, `specials` are appended after them, and the
    post-processor prepends `bos` (as Llama-3's tokenizer does)."""
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True,
                                          use_regex=byte_level_regex)
    tok.pre_tokenizer = (pre_tokenizers.Sequence([splitter, byte_level]) if splitter is not None
                         else byte_level)
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=learned_vocab, min_frequency=2, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    bos_id = tok.token_to_id(bos)
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(
            single=f"{bos} $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
            special_tokens=[(bos, bos_id)]),
    ])
    return tok


def save_llama_dir(model, cfg, out_dir: Path, tokenizer: Tokenizer | Path,
                   generation: dict | None = None, chat_template: str | None = None) -> None:
    """Writes `model` (a transformers LlamaForCausalLM with tied embeddings) as a Hugging Face
    directory. `tokenizer` is a Tokenizer to save or a tokenizer.json to copy byte for byte (a
    draft must share its target's file); `generation` adds sampling defaults to
    generation_config.json (greedy otherwise); `chat_template` goes into tokenizer_config.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()
          if k != "lm_head.weight"}  # tied to model.embed_tokens.weight
    save_file(sd, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    conf = {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False,
        "attention_dropout": 0.0, "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id, "head_dim": cfg.head_dim, "hidden_act": cfg.hidden_act,
        "hidden_size": cfg.hidden_size, "initializer_range": cfg.initializer_range,
        "intermediate_size": cfg.intermediate_size,
        "max_position_embeddings": cfg.max_position_embeddings, "mlp_bias": False,
        "model_type": "llama", "num_attention_heads": cfg.num_attention_heads,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_key_value_heads": cfg.num_key_value_heads, "rms_norm_eps": cfg.rms_norm_eps,
        "rope_scaling": None, "rope_theta": 10000.0, "tie_word_embeddings": True,
        "torch_dtype": "float32", "use_cache": True, "vocab_size": cfg.vocab_size,
    }
    (out_dir / "config.json").write_text(json.dumps(conf, indent=2) + "\n")
    gen = {"bos_token_id": cfg.bos_token_id, "do_sample": False, "eos_token_id": cfg.eos_token_id}
    if generation:
        gen.update(generation)
    (out_dir / "generation_config.json").write_text(
        json.dumps(dict(sorted(gen.items())), indent=2) + "\n")
    if isinstance(tokenizer, Tokenizer):
        tokenizer.save(str(out_dir / "tokenizer.json"))
    elif Path(tokenizer).resolve() != (out_dir / "tokenizer.json").resolve():
        shutil.copyfile(tokenizer, out_dir / "tokenizer.json")
    tokenizer_config = {"add_bos_token": True, "add_eos_token": False, "bos_token": BOS,
                        "clean_up_tokenization_spaces": False, "eos_token": EOS,
                        "model_max_length": cfg.max_position_embeddings,
                        "tokenizer_class": "PreTrainedTokenizerFast"}
    if chat_template is not None:
        tokenizer_config["chat_template"] = chat_template
    (out_dir / "tokenizer_config.json").write_text(
        json.dumps(tokenizer_config, indent=2, ensure_ascii=False) + "\n")
