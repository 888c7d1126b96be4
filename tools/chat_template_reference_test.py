#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""ChatTemplate against Python's jinja2, the independent reference: every template in
tests/fixtures/chat_templates (Llama 2, Llama 3, Llama 3.1-style, ChatML/SmolLM2, Mistral, Gemma, and
one of the expression and statement forms the others do not use) rendered on every conversation
below the way transformers renders chat templates (ImmutableSandboxedEnvironment with trim_blocks
and lstrip_blocks, raise_exception), through tokenizer_driver's "chat_template" op. The text must
be identical, an exception must be an error on both sides with the template's message, and the
token ids must equal Hugging Face tokenizers' encoding of the rendered text (special tokens the
template wrote parsed, add_special_tokens=False) on the fixture Llama-3 vocabulary.

Usage: chat_template_reference_test.py --driver tokenizer_driver --tokenizer tokenizer.json --templates DIR
"""
import argparse
import datetime
import json
import os
import subprocess
import sys

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

CONVERSATIONS = [
    [{"role": "user", "content": "What is 12 + 30?"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi there"}],
    [{"role": "user", "content": "  padded question \n"}, {"role": "assistant", "content": "\tAn answer. "},
     {"role": "user", "content": "Und jetzt auf Deutsch: Grüße, 你好 🙂"}],
    [{"role": "system", "content": "sys\nline two"}, {"role": "user", "content": "a"},
     {"role": "assistant", "content": "b"}, {"role": "user", "content": "c\n\nd"}],
    [{"role": "user", "content": ""}],
    [{"role": "user", "content": "first"}, {"role": "user", "content": "second"}],  # roles do not alternate
    [{"role": "assistant", "content": "I start"}],
    [{"role": "user", "content": "run it"}, {"role": "tool", "content": "{\"x\": 1}"}],
    [{"role": "user", "content": "{{ not a template }} {% neither %}"}],
]


def reference(template, messages, add_generation_prompt, bos, eos):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    # As transformers compiles chat templates: loop controls, its {% generation %} tag (rendered as
    # its body), raise_exception and strftime_now.
    class Generation(jinja2.ext.Extension):
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.Scope(body, lineno=lineno)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols, Generation])
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    try:
        return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                                bos_token=bos, eos_token=eos), None
    except jinja2.exceptions.TemplateError as e:
        return None, str(e)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--driver", required=True)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--templates", required=True)
    args = parser.parse_args()
    hf = Tokenizer.from_file(args.tokenizer)
    driver = subprocess.Popen([args.driver, "--hf", args.tokenizer], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    failures, checked, errors = 0, 0, 0
    for name in sorted(os.listdir(args.templates)):
        template = open(os.path.join(args.templates, name)).read()
        for conversation in CONVERSATIONS:
            for add_generation_prompt in (True, False):
                request = {"op": "chat_template", "template": template, "messages": conversation,
                           "add_generation_prompt": add_generation_prompt, "bos_token": "<|begin_of_text|>",
                           "eos_token": "<|eot_id|>"}
                driver.stdin.write(json.dumps(request) + "\n")
                driver.stdin.flush()
                got = json.loads(driver.stdout.readline())
                want, want_error = reference(template, conversation, add_generation_prompt,
                                             request["bos_token"], request["eos_token"])
                checked += 1
                where = f"{name}, {json.dumps(conversation)[:80]}, add_generation_prompt={add_generation_prompt}"
                if want_error is not None:
                    errors += 1
                    if "error" not in got or want_error not in got["error"]:
                        failures += 1
                        print(f"FAIL {where}: jinja2 raised {want_error!r}, we gave {got}")
                    continue
                if "error" in got:
                    failures += 1
                    print(f"FAIL {where}: jinja2 rendered {want!r}, we failed: {got['error']}")
                    continue
                if got["text"] != want:
                    failures += 1
                    print(f"FAIL {where}:\n  jinja2: {want!r}\n  ours:   {got['text']!r}")
                    continue
                special_in_content = any(t in m["content"] for m in conversation for t in ("<|", "[INST]"))
                want_ids = hf.encode(want, add_special_tokens=False).ids
                if not special_in_content and got["ids"] != want_ids:
                    failures += 1
                    print(f"FAIL {where}: ids differ\n  hf:   {want_ids}\n  ours: {got['ids']}")
    driver.stdin.close()
    driver.wait()
    print(f"{checked} renderings ({errors} raising) of {len(os.listdir(args.templates))} templates, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
