// SPDX-License-Identifier: Apache-2.0
#include "tests/fuzz/fuzz_util.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <utility>

#include "google/protobuf/descriptor.h"
#include "google/protobuf/reflection.h"
#include "google/protobuf/stubs/logging.h"
#include "nlohmann/json.hpp"

namespace verdict::fuzz {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

void CheckFailed(const char* file, int line, const char* condition, const std::string& message) {
  std::fprintf(stderr, "FUZZ_CHECK failed at %s:%d: %s %s\n", file, line, condition, message.c_str());
  std::fflush(stderr);
  std::abort();
}

void QuietProtobufLogs() {
  google::protobuf::SetLogHandler([](google::protobuf::LogLevel level, const char* file, int line,
                                     const std::string& message) {
    if (level >= google::protobuf::LOGLEVEL_FATAL) {
      std::fprintf(stderr, "protobuf FATAL %s:%d: %s\n", file, line, message.c_str());
    }
  });
}

void PositiveZeros(Message* message) {
  const google::protobuf::Descriptor* d = message->GetDescriptor();
  const Reflection* r = message->GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    const int n = f->is_repeated() ? r->FieldSize(*message, f) : 1;
    if (!f->is_repeated() && f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && !r->HasField(*message, f)) continue;
    for (int j = 0; j < n; ++j) {
      switch (f->cpp_type()) {
        case FieldDescriptor::CPPTYPE_FLOAT: {
          const float v = f->is_repeated() ? r->GetRepeatedFloat(*message, f, j) : r->GetFloat(*message, f);
          if (v == 0.0f && std::signbit(v)) {
            f->is_repeated() ? r->SetRepeatedFloat(message, f, j, 0.0f) : r->SetFloat(message, f, 0.0f);
          }
          break;
        }
        case FieldDescriptor::CPPTYPE_DOUBLE: {
          const double v = f->is_repeated() ? r->GetRepeatedDouble(*message, f, j) : r->GetDouble(*message, f);
          if (v == 0.0 && std::signbit(v)) {
            f->is_repeated() ? r->SetRepeatedDouble(message, f, j, 0.0) : r->SetDouble(message, f, 0.0);
          }
          break;
        }
        case FieldDescriptor::CPPTYPE_MESSAGE:
          PositiveZeros(f->is_repeated() ? r->MutableRepeatedMessage(message, f, j) : r->MutableMessage(message, f));
          break;
        default: break;
      }
    }
  }
}

// ---- edge values

int32_t ProtoMutator::EdgeInt32() {
  static constexpr int32_t kEdges[] = {0,   1,   -1,  2,   3,   7,   8,    16,   255,  256, 257,
                                       512, 1024, 4096, 65535, 65536, 1 << 20, std::numeric_limits<int32_t>::max(),
                                       std::numeric_limits<int32_t>::max() - 1, std::numeric_limits<int32_t>::min(),
                                       std::numeric_limits<int32_t>::min() + 1, -2, -256};
  switch (Below(4)) {
    case 0: return static_cast<int32_t>(rng_());
    case 1: return static_cast<int32_t>(Below(300)) - 8;
    default: return kEdges[Below(std::size(kEdges))];
  }
}

int64_t ProtoMutator::EdgeInt64() {
  static constexpr int64_t kEdges[] = {std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::min(),
                                       int64_t{1} << 31, (int64_t{1} << 32) + 1, int64_t{1} << 53,
                                       -(int64_t{1} << 31) - 1, int64_t{1} << 62};
  if (OneIn(3)) return kEdges[Below(std::size(kEdges))];
  return EdgeInt32();
}

uint64_t ProtoMutator::EdgeUint64() {
  static constexpr uint64_t kEdges[] = {std::numeric_limits<uint64_t>::max(),
                                        std::numeric_limits<uint64_t>::max() - 1,
                                        uint64_t{1} << 63, uint64_t{1} << 32, (uint64_t{1} << 32) - 1};
  if (OneIn(3)) return kEdges[Below(std::size(kEdges))];
  if (OneIn(4)) return rng_();
  return static_cast<uint64_t>(static_cast<int64_t>(EdgeInt32()));
}

float ProtoMutator::EdgeFloat() {
  static constexpr float kEdges[] = {0.0f, -0.0f, 1.0f, -1.0f, 0.5f, 2.0f, 1.0000001f, 0.9999999f,
                                     std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                                     -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::max(),
                                     std::numeric_limits<float>::lowest(), std::numeric_limits<float>::denorm_min(),
                                     std::numeric_limits<float>::min(), 1e-30f, 100.0f};
  switch (Below(3)) {
    case 0: {
      const uint32_t bits = static_cast<uint32_t>(rng_());
      float f;
      std::memcpy(&f, &bits, sizeof(f));
      return f;
    }
    case 1: return static_cast<float>(Below(2001)) / 1000.0f - 0.5f;
    default: return kEdges[Below(std::size(kEdges))];
  }
}

double ProtoMutator::EdgeDouble() {
  if (OneIn(4)) {
    static constexpr double kEdges[] = {std::numeric_limits<double>::max(), std::numeric_limits<double>::lowest(),
                                        std::numeric_limits<double>::denorm_min(), 1e300, -1e300};
    return kEdges[Below(std::size(kEdges))];
  }
  return EdgeFloat();
}

std::string ProtoMutator::EdgeString(const std::string& current) {
  static const char* const kWords[] = {"",          "auto",  "exact",      "judge",     "judge_shadow",
                                       "lossy_prob", "cpu",  "cuda:0",     "127.0.0.1:1", "[::1]:0",
                                       "f32",        "bf16", "q8_0",       "\xff",      "\xc0\x80",
                                       "\xed\xa0\x80", "\xf4\x90\x80\x80", "a\0b",   "\x80"};
  std::string s = current;
  switch (Below(7)) {
    case 0: s = kWords[Below(std::size(kWords))]; break;
    case 1: s.resize(Below(s.size() + 1)); break;                      // truncate
    case 2:                                                           // extend with random bytes
      for (uint64_t n = 1 + Below(16); n > 0; --n) s.push_back(static_cast<char>(rng_()));
      break;
    case 3: s.insert(Below(s.size() + 1), kWords[13 + Below(6)]); break;  // invalid UTF-8 inside
    case 4: s.append(std::string(Below(kMaxStringBytes), static_cast<char>('a' + Below(26)))); break;
    case 5:
      if (!s.empty()) s[Below(s.size())] = static_cast<char>(rng_());
      break;
    default: s.clear(); break;
  }
  if (s.size() > kMaxStringBytes) s.resize(kMaxStringBytes);
  return s;
}

int ProtoMutator::EdgeEnum(const FieldDescriptor* f) {
  const google::protobuf::EnumDescriptor* e = f->enum_type();
  if (!OneIn(3) && e->value_count() > 0) return e->value(static_cast<int>(Below(e->value_count())))->number();
  static constexpr int kOutside[] = {-1, 99, 6, 7, std::numeric_limits<int32_t>::max(),
                                     std::numeric_limits<int32_t>::min()};
  // Open (proto3) enums keep an unknown number; closed ones would drop it into unknown fields.
  if (e->file()->syntax() != google::protobuf::FileDescriptor::SYNTAX_PROTO3) return e->value(0)->number();
  return kOutside[Below(std::size(kOutside))];
}

// ---- structural mutation

void ProtoMutator::Collect(Message* message, int depth, std::vector<Slot>* slots) {
  const google::protobuf::Descriptor* d = message->GetDescriptor();
  const Reflection* r = message->GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    slots->push_back({message, f});
    if (f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE || depth >= kMaxDepth) continue;
    if (f->is_repeated()) {
      for (int j = 0; j < r->FieldSize(*message, f); ++j) {
        Collect(r->MutableRepeatedMessage(message, f, j), depth + 1, slots);
      }
    } else if (r->HasField(*message, f)) {
      Collect(r->MutableMessage(message, f), depth + 1, slots);
    }
  }
}

void ProtoMutator::Mutate(Message* message) {
  for (uint64_t n = 1 + Below(3); n > 0; --n) {
    if (OneIn(64)) {
      message->Clear();
      continue;
    }
    std::vector<Slot> slots;
    Collect(message, 0, &slots);
    if (slots.empty()) return;
    MutateSlot(slots[Below(slots.size())]);
  }
}

void ProtoMutator::SetSingular(Message* m, const FieldDescriptor* f) {
  const Reflection* r = m->GetReflection();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32: r->SetInt32(m, f, EdgeInt32()); break;
    case FieldDescriptor::CPPTYPE_INT64: r->SetInt64(m, f, EdgeInt64()); break;
    case FieldDescriptor::CPPTYPE_UINT32: r->SetUInt32(m, f, static_cast<uint32_t>(EdgeUint64())); break;
    case FieldDescriptor::CPPTYPE_UINT64: r->SetUInt64(m, f, EdgeUint64()); break;
    case FieldDescriptor::CPPTYPE_FLOAT: r->SetFloat(m, f, EdgeFloat()); break;
    case FieldDescriptor::CPPTYPE_DOUBLE: r->SetDouble(m, f, EdgeDouble()); break;
    case FieldDescriptor::CPPTYPE_BOOL: r->SetBool(m, f, !r->GetBool(*m, f)); break;
    case FieldDescriptor::CPPTYPE_ENUM: r->SetEnumValue(m, f, EdgeEnum(f)); break;
    case FieldDescriptor::CPPTYPE_STRING: r->SetString(m, f, EdgeString(r->GetString(*m, f))); break;
    case FieldDescriptor::CPPTYPE_MESSAGE: {
      Message* sub = r->MutableMessage(m, f);  // creates it when absent (and selects a oneof member)
      if (!OneIn(3)) Mutate(sub);
      break;
    }
  }
}

void ProtoMutator::SetRepeated(Message* m, const FieldDescriptor* f, int i) {
  const Reflection* r = m->GetReflection();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32: r->SetRepeatedInt32(m, f, i, EdgeInt32()); break;
    case FieldDescriptor::CPPTYPE_INT64: r->SetRepeatedInt64(m, f, i, EdgeInt64()); break;
    case FieldDescriptor::CPPTYPE_UINT32: r->SetRepeatedUInt32(m, f, i, static_cast<uint32_t>(EdgeUint64())); break;
    case FieldDescriptor::CPPTYPE_UINT64: r->SetRepeatedUInt64(m, f, i, EdgeUint64()); break;
    case FieldDescriptor::CPPTYPE_FLOAT: r->SetRepeatedFloat(m, f, i, EdgeFloat()); break;
    case FieldDescriptor::CPPTYPE_DOUBLE: r->SetRepeatedDouble(m, f, i, EdgeDouble()); break;
    case FieldDescriptor::CPPTYPE_BOOL: r->SetRepeatedBool(m, f, i, !r->GetRepeatedBool(*m, f, i)); break;
    case FieldDescriptor::CPPTYPE_ENUM: r->SetRepeatedEnumValue(m, f, i, EdgeEnum(f)); break;
    case FieldDescriptor::CPPTYPE_STRING:
      r->SetRepeatedString(m, f, i, EdgeString(r->GetRepeatedString(*m, f, i)));
      break;
    case FieldDescriptor::CPPTYPE_MESSAGE: Mutate(r->MutableRepeatedMessage(m, f, i)); break;
  }
}

void ProtoMutator::AddRepeated(Message* m, const FieldDescriptor* f) {
  const Reflection* r = m->GetReflection();
  const int n = r->FieldSize(*m, f);
  if (n >= kMaxRepeated) return;
  // A copy of an existing element (then perhaps changed) keeps valid values valid more often.
  const bool copy = n > 0 && !OneIn(3);
  const int from = copy ? static_cast<int>(Below(n)) : 0;
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32: r->AddInt32(m, f, copy ? r->GetRepeatedInt32(*m, f, from) : 0); break;
    case FieldDescriptor::CPPTYPE_INT64: r->AddInt64(m, f, copy ? r->GetRepeatedInt64(*m, f, from) : 0); break;
    case FieldDescriptor::CPPTYPE_UINT32: r->AddUInt32(m, f, copy ? r->GetRepeatedUInt32(*m, f, from) : 0); break;
    case FieldDescriptor::CPPTYPE_UINT64: r->AddUInt64(m, f, copy ? r->GetRepeatedUInt64(*m, f, from) : 0); break;
    case FieldDescriptor::CPPTYPE_FLOAT: r->AddFloat(m, f, copy ? r->GetRepeatedFloat(*m, f, from) : 0.0f); break;
    case FieldDescriptor::CPPTYPE_DOUBLE: r->AddDouble(m, f, copy ? r->GetRepeatedDouble(*m, f, from) : 0.0); break;
    case FieldDescriptor::CPPTYPE_BOOL: r->AddBool(m, f, copy && r->GetRepeatedBool(*m, f, from)); break;
    case FieldDescriptor::CPPTYPE_ENUM:
      r->AddEnumValue(m, f, copy ? r->GetRepeatedEnumValue(*m, f, from) : f->enum_type()->value(0)->number());
      break;
    case FieldDescriptor::CPPTYPE_STRING: r->AddString(m, f, copy ? r->GetRepeatedString(*m, f, from) : ""); break;
    case FieldDescriptor::CPPTYPE_MESSAGE: {
      Message* added = r->AddMessage(m, f);
      if (copy) added->CopyFrom(r->GetRepeatedMessage(*m, f, from));
      break;
    }
  }
  if (!copy || OneIn(2)) SetRepeated(m, f, n);
}

void ProtoMutator::MutateSlot(const Slot& slot) {
  Message* m = slot.message;
  const FieldDescriptor* f = slot.field;
  const Reflection* r = m->GetReflection();
  if (!f->is_repeated()) {
    const google::protobuf::OneofDescriptor* oneof = f->real_containing_oneof();
    if (oneof != nullptr && OneIn(3)) {  // switch the oneof to another member (or clear it)
      if (OneIn(4)) {
        r->ClearOneof(m, oneof);
      } else {
        SetSingular(m, oneof->field(static_cast<int>(Below(oneof->field_count()))));
      }
      return;
    }
    if (f->has_presence() && r->HasField(*m, f) && OneIn(4)) {
      r->ClearField(m, f);  // an optional value or a submessage left out
      return;
    }
    SetSingular(m, f);
    return;
  }
  const int n = r->FieldSize(*m, f);
  switch (Below(8)) {
    case 0: r->ClearField(m, f); break;
    case 1:
      if (n > 0) r->RemoveLast(m, f);
      break;
    case 2:
      if (n > 1) r->SwapElements(m, f, static_cast<int>(Below(n)), static_cast<int>(Below(n)));
      break;
    case 3: {  // fill up to a size around the limits
      static constexpr int kSizes[] = {2, 16, 255, 256, 257, kMaxRepeated};
      const int want = f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE || f->cpp_type() == FieldDescriptor::CPPTYPE_STRING
                           ? static_cast<int>(2 + Below(8))
                           : kSizes[Below(std::size(kSizes))];
      for (int i = n; i < want; ++i) AddRepeated(m, f);
      break;
    }
    case 4:
    case 5:
      if (n > 0) {
        SetRepeated(m, f, static_cast<int>(Below(n)));
        break;
      }
      [[fallthrough]];
    default: AddRepeated(m, f); break;
  }
}

// ---- message sequences

std::vector<Entry> DecodeSequence(const uint8_t* data, size_t size, int num_types) {
  std::vector<Entry> entries;
  size_t at = 0;
  while (at < size && entries.size() < kMaxMessages) {
    Entry e;
    e.type = data[at++] % num_types;
    uint32_t length = 0;
    for (int i = 0; i < 4 && at < size; ++i) length |= uint32_t{data[at++]} << (8 * i);
    const size_t take = std::min<size_t>(length, size - at);
    e.bytes.assign(reinterpret_cast<const char*>(data + at), take);
    at += take;
    entries.push_back(std::move(e));
  }
  return entries;
}

std::string EncodeSequence(const std::vector<Entry>& entries) {
  std::string out;
  for (const Entry& e : entries) {
    out.push_back(static_cast<char>(e.type));
    const auto length = static_cast<uint32_t>(e.bytes.size());
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((length >> (8 * i)) & 0xff));
    out += e.bytes;
  }
  return out;
}

size_t Emit(const std::string& bytes, uint8_t* data, size_t max_size) {
  const size_t n = std::min(bytes.size(), max_size);
  std::memcpy(data, bytes.data(), n);
  return n;
}

namespace {

// LLVMFuzzerMutate on a string, which may grow by up to 64 bytes.
std::string ByteMutate(std::string bytes) {
  if (bytes.empty()) bytes.push_back('\0');
  std::vector<uint8_t> buffer(bytes.size() + 64);
  std::memcpy(buffer.data(), bytes.data(), bytes.size());
  const size_t n = LLVMFuzzerMutate(buffer.data(), bytes.size(), buffer.size());
  return std::string(reinterpret_cast<const char*>(buffer.data()), n);
}

}  // namespace

size_t MutateSequence(const std::vector<const Message*>& prototypes, uint8_t* data, size_t size, size_t max_size,
                      unsigned int seed) {
  ProtoMutator mutator(seed);
  const int num_types = static_cast<int>(prototypes.size());
  std::vector<Entry> entries = DecodeSequence(data, size, num_types);
  const uint64_t action = mutator.Below(100);
  if (entries.empty() || (action < 8 && entries.size() < kMaxMessages)) {
    // Insert: a copy of an entry or a fresh message of any type.
    Entry e;
    if (!entries.empty() && mutator.OneIn(2)) {
      e = entries[mutator.Below(entries.size())];
    } else {
      e.type = static_cast<int>(mutator.Below(num_types));
      std::unique_ptr<Message> m(prototypes[e.type]->New());
      mutator.Mutate(m.get());
      m->SerializeToString(&e.bytes);
    }
    entries.insert(entries.begin() + static_cast<std::ptrdiff_t>(mutator.Below(entries.size() + 1)), std::move(e));
  } else if (action < 12 && entries.size() > 1) {
    entries.erase(entries.begin() + static_cast<std::ptrdiff_t>(mutator.Below(entries.size())));
  } else if (action < 16 && entries.size() > 1) {
    std::swap(entries[mutator.Below(entries.size())], entries[mutator.Below(entries.size())]);
  } else if (action < 19) {
    entries[mutator.Below(entries.size())].type = static_cast<int>(mutator.Below(num_types));
  } else if (action < 27) {
    Entry& e = entries[mutator.Below(entries.size())];
    e.bytes = ByteMutate(std::move(e.bytes));
  } else if (action < 30 && size > 0) {
    return LLVMFuzzerMutate(data, size, max_size);
  } else {
    Entry& e = entries[mutator.Below(entries.size())];
    std::unique_ptr<Message> m(prototypes[e.type]->New());
    // A message that does not parse (raw mutations, invalid UTF-8 in a string) starts over from
    // what could be read of it.
    (void)m->ParsePartialFromString(e.bytes);
    mutator.Mutate(m.get());
    e.bytes.clear();
    m->SerializePartialToString(&e.bytes);
  }
  std::string out = EncodeSequence(entries);
  while (out.size() > max_size && entries.size() > 1) {
    entries.pop_back();
    out = EncodeSequence(entries);
  }
  return Emit(out, data, max_size);
}

// ---- JSON

namespace {

void CollectJson(nlohmann::json* v, int depth, std::vector<nlohmann::json*>* out) {
  out->push_back(v);
  if (depth >= kMaxDepth) return;
  if (v->is_object() || v->is_array()) {
    for (auto& child : *v) CollectJson(&child, depth + 1, out);
  }
}

nlohmann::json EdgeJson(ProtoMutator& m, const std::vector<std::string>& keys) {
  using nlohmann::json;
  switch (m.Below(14)) {
    case 0: return json(nullptr);
    case 1: return json(m.OneIn(2));
    case 2: return json(m.EdgeInt64());
    case 3: return json(m.EdgeUint64());
    case 4: {
      const double d = m.EdgeDouble();
      return std::isfinite(d) ? json(d) : json(1e308);
    }
    case 5: return json(static_cast<double>(m.EdgeInt32()) + 0.5);
    case 6: {
      std::string s = m.EdgeString("text");
      // nlohmann dumps only valid UTF-8: keep the printable ASCII (raw mutations add the rest).
      for (char& c : s) {
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
      }
      return json(s);
    }
    case 7: return json::array();
    case 8: return json::object();
    case 9: return json::array({1, 2, 3});
    case 10: return json::array({json::array({1, 2}), "x"});
    case 11: return json{{"type", "text"}, {"text", "hi"}};
    case 12: return json{{"role", "user"}, {"content", "hi"}};
    default: return keys.empty() ? json("") : json(keys[m.Below(keys.size())]);
  }
}

}  // namespace

size_t MutateJson(const std::vector<std::string>& keys, uint8_t* data, size_t size, size_t max_size,
                  unsigned int seed) {
  using nlohmann::json;
  ProtoMutator m(seed);
  json doc = json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || m.OneIn(6)) return LLVMFuzzerMutate(data, size, max_size);
  std::vector<json*> nodes;
  CollectJson(&doc, 0, &nodes);
  json* node = nodes[m.Below(nodes.size())];
  const uint64_t action = m.Below(10);
  if (node->is_object() && action < 4 && !keys.empty()) {
    (*node)[keys[m.Below(keys.size())]] = EdgeJson(m, keys);
  } else if (node->is_object() && action < 6 && !node->empty()) {
    auto it = node->begin();
    std::advance(it, static_cast<std::ptrdiff_t>(m.Below(node->size())));
    node->erase(it);
  } else if (node->is_array() && action < 4) {
    const json element = !node->empty() && m.OneIn(2) ? (*node)[m.Below(node->size())] : EdgeJson(m, keys);
    const size_t copies = m.OneIn(8) ? 1 + m.Below(300) : 1;
    for (size_t i = 0; i < copies; ++i) node->push_back(element);
  } else if (node->is_array() && action < 6 && !node->empty()) {
    node->erase(m.Below(node->size()));
  } else {
    *node = EdgeJson(m, keys);
  }
  return Emit(doc.dump(-1, ' ', false, json::error_handler_t::replace), data, max_size);
}

}  // namespace verdict::fuzz
