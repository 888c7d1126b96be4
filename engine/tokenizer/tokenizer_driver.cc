// SPDX-License-Identifier: Apache-2.0
// tokenizer_driver: a JSON-lines front end to the tokenizers, for reference tests against the
// Python implementations (tools/tokenizer_reference_test.py) and for poking at a vocabulary.
//
//   tokenizer_driver --hf tokenizer.json | --gguf model.gguf
//
// Reads one JSON request per stdin line, writes one JSON reply per line:
//   {"op":"encode","text":"...","add_bos":false,"parse_special":false}   -> {"ids":[...],"us":N}
//       (instead of "text": "text_b64" (base64) or "text_bytes" ([0..255, ...]) for bytes that are
//        not valid UTF-8)
//   {"op":"decode","ids":[...],"skip_special":false}                     -> {"text":"..."}
//   {"op":"stream_decode","ids":[...],"skip_special":false}
//       -> {"pieces":["..."],"text":"...","all_valid":true}  (IncrementalDetokenizer, one id at a
//          time; all_valid: every piece was valid UTF-8)
//   {"op":"token_bytes","id":N}                                          -> {"b64":"..."}
//   {"op":"info"}                        -> {"vocab_size":N,"bos_id":N,"eos_ids":[...]}
//   {"op":"chat","messages":[{"role":..,"content":..}],"add_generation_prompt":true}
//       -> {"text":"...","ids":[...]}   (the built-in Llama 3 template, BuiltinLlama3ChatTemplate)
//   {"op":"chat_template","template":"...","messages":[...],"add_generation_prompt":true,
//    "bos_token":"...","eos_token":"..."}
//       -> {"text":"...","from_content":"0011..","ids":[...]}   (ChatTemplate, EncodeRenderedChat)
// A failed request gives {"error":"...","code":"INVALID_ARGUMENT"} and the driver goes on.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/detokenizer.h"
#include "engine/tokenizer/gguf_tokenizer.h"
#include "engine/tokenizer/hf_tokenizer.h"
#include "engine/tokenizer/unicode.h"
#include "nlohmann/json.hpp"

namespace verdict::engine {
namespace {

using Json = nlohmann::json;

absl::StatusOr<std::string> RequestText(const Json& request) {
  if (auto it = request.find("text"); it != request.end() && it->is_string()) {
    return it->get<std::string>();
  }
  if (auto it = request.find("text_b64"); it != request.end() && it->is_string()) {
    std::string bytes;
    if (!absl::Base64Unescape(it->get<std::string>(), &bytes)) {
      return absl::InvalidArgumentError("text_b64 is not base64");
    }
    return bytes;
  }
  if (auto it = request.find("text_bytes"); it != request.end() && it->is_array()) {
    std::string bytes;
    for (const Json& b : *it) {
      if (!b.is_number_integer() || b.get<int>() < 0 || b.get<int>() > 255) {
        return absl::InvalidArgumentError("text_bytes holds a non-byte");
      }
      bytes.push_back(static_cast<char>(b.get<int>()));
    }
    return bytes;
  }
  return absl::InvalidArgumentError("request has no text, text_b64 or text_bytes");
}

absl::StatusOr<std::vector<int32_t>> RequestIds(const Json& request) {
  auto it = request.find("ids");
  if (it == request.end() || !it->is_array()) return absl::InvalidArgumentError("no ids array");
  std::vector<int32_t> ids;
  for (const Json& id : *it) {
    if (!id.is_number_integer()) return absl::InvalidArgumentError("id is not an integer");
    const auto v = id.get<int64_t>();
    if (v < INT32_MIN || v > INT32_MAX) return absl::InvalidArgumentError("id out of int32 range");
    ids.push_back(static_cast<int32_t>(v));
  }
  return ids;
}

absl::StatusOr<Json> Handle(const Tokenizer& tokenizer, const Json& request) {
  if (!request.is_object()) return absl::InvalidArgumentError("request is not an object");
  const std::string op = request.value("op", "");
  const bool skip_special = request.value("skip_special", false);
  Json reply;
  if (op == "encode") {
    VERDICT_ASSIGN_OR_RETURN(const std::string text, RequestText(request));
    EncodeOptions options;
    options.add_bos = request.value("add_bos", false);
    options.parse_special = request.value("parse_special", false);
    const auto start = std::chrono::steady_clock::now();
    VERDICT_ASSIGN_OR_RETURN(std::vector<int32_t> ids, tokenizer.Encode(text, options));
    const auto end = std::chrono::steady_clock::now();
    reply["ids"] = ids;
    reply["us"] = std::chrono::duration_cast<std::chrono::microseconds>(end - start).count();
  } else if (op == "decode") {
    VERDICT_ASSIGN_OR_RETURN(const std::vector<int32_t> ids, RequestIds(request));
    VERDICT_ASSIGN_OR_RETURN(reply["text"], tokenizer.Decode(ids, skip_special));
  } else if (op == "stream_decode") {
    VERDICT_ASSIGN_OR_RETURN(const std::vector<int32_t> ids, RequestIds(request));
    IncrementalDetokenizer detokenizer(&tokenizer, skip_special);
    std::vector<std::string> pieces;
    for (int32_t id : ids) {
      VERDICT_ASSIGN_OR_RETURN(std::string piece, detokenizer.Add(id));
      pieces.push_back(std::move(piece));
    }
    pieces.push_back(detokenizer.Flush());
    bool all_valid = true;
    std::string text;
    for (const std::string& piece : pieces) {
      all_valid = all_valid && unicode::IsValidUtf8(piece);
      text += piece;
    }
    reply["pieces"] = pieces;
    reply["text"] = text;
    reply["all_valid"] = all_valid;
  } else if (op == "token_bytes") {
    VERDICT_ASSIGN_OR_RETURN(const std::string bytes,
                             tokenizer.TokenBytes(request.value("id", int32_t{-1})));
    reply["b64"] = absl::Base64Escape(bytes);
  } else if (op == "info") {
    reply["vocab_size"] = tokenizer.vocab_size();
    reply["bos_id"] = tokenizer.bos_id();
    reply["eos_ids"] = tokenizer.eos_ids();
  } else if (op == "chat") {
    VERDICT_ASSIGN_OR_RETURN(ChatTemplate llama3, ChatTemplate::Parse(BuiltinLlama3ChatTemplate()));
    std::vector<ChatMessage> messages;
    auto it = request.find("messages");
    if (it == request.end() || !it->is_array()) return absl::InvalidArgumentError("no messages");
    for (const Json& m : *it) {
      if (!m.is_object()) return absl::InvalidArgumentError("message is not an object");
      messages.push_back({m.value("role", ""), m.value("content", "")});
    }
    ChatTemplateInputs inputs;
    inputs.messages = std::move(messages);
    inputs.add_generation_prompt = request.value("add_generation_prompt", false);
    inputs.bos_token = "<|begin_of_text|>";
    VERDICT_ASSIGN_OR_RETURN(const RenderedChat rendered, llama3.Render(inputs));
    reply["text"] = rendered.text;
    VERDICT_ASSIGN_OR_RETURN(reply["ids"], EncodeRenderedChat(tokenizer, rendered));
  } else if (op == "chat_template") {
    VERDICT_ASSIGN_OR_RETURN(const ChatTemplate chat_template, ChatTemplate::Parse(request.value("template", "")));
    ChatTemplateInputs inputs;
    auto it = request.find("messages");
    if (it == request.end() || !it->is_array()) return absl::InvalidArgumentError("no messages");
    for (const Json& m : *it) {
      if (!m.is_object()) return absl::InvalidArgumentError("message is not an object");
      inputs.messages.push_back({m.value("role", ""), m.value("content", "")});
    }
    inputs.add_generation_prompt = request.value("add_generation_prompt", false);
    inputs.bos_token = request.value("bos_token", "");
    inputs.eos_token = request.value("eos_token", "");
    VERDICT_ASSIGN_OR_RETURN(const RenderedChat rendered, chat_template.Render(inputs));
    reply["text"] = rendered.text;
    std::string mask;
    for (char c : rendered.from_content) mask += c != 0 ? '1' : '0';
    reply["from_content"] = mask;
    VERDICT_ASSIGN_OR_RETURN(reply["ids"], EncodeRenderedChat(tokenizer, rendered));
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown op \"", op, "\""));
  }
  return reply;
}

int Main(int argc, char** argv) {
  if (argc != 3 || (std::string(argv[1]) != "--hf" && std::string(argv[1]) != "--gguf")) {
    std::cerr << "usage: tokenizer_driver --hf tokenizer.json | --gguf model.gguf\n";
    return 2;
  }
  std::unique_ptr<GgufFile> gguf;  // must outlive nothing: the tokenizer copies what it needs
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer;
  if (std::string(argv[1]) == "--hf") {
    tokenizer = LoadHfTokenizer(argv[2]);
  } else {
    auto file = GgufFile::Open(argv[2]);
    if (!file.ok()) {
      std::cerr << file.status().ToString() << "\n";
      return 1;
    }
    gguf = *std::move(file);
    tokenizer = LoadGgufTokenizer(*gguf);
  }
  if (!tokenizer.ok()) {
    std::cerr << tokenizer.status().ToString() << "\n";
    return 1;
  }
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    const Json request = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    absl::StatusOr<Json> reply = absl::InvalidArgumentError("request is not valid JSON");
    if (!request.is_discarded()) {
      try {
        reply = Handle(**tokenizer, request);
      } catch (const Json::exception& e) {  // a field of the wrong type
        reply = absl::InvalidArgumentError(e.what());
      }
    }
    Json out;
    if (reply.ok()) {
      out = *std::move(reply);
    } else {
      out["error"] = std::string(reply.status().message());
      out["code"] = absl::StatusCodeToString(reply.status().code());
    }
    std::cout << out.dump(-1, ' ', false, Json::error_handler_t::replace) << "\n" << std::flush;
  }
  return 0;
}

}  // namespace
}  // namespace verdict::engine

int main(int argc, char** argv) { return verdict::engine::Main(argc, argv); }
