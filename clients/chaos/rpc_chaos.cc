// SPDX-License-Identifier: Apache-2.0
#include "clients/chaos/rpc_chaos.h"

#include <atomic>
#include <cctype>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace verdict::clients {
namespace {

constexpr std::array<const char*, kNumChaosMethods> kMethodNames = {
    "OpenDraftSession",  "Propose", "CloseDraftSession",  "RenewDraftLease",
    "OpenTargetSession", "Verify",  "CloseTargetSession", "RenewTargetLease"};
constexpr std::array<const char*, kNumChaosFaults> kFaultNames = {"none",  "drop_request", "drop_reply",
                                                                  "delay", "duplicate",    "fail"};

absl::StatusOr<absl::StatusCode> ParseCode(absl::string_view name) {
  for (int c = 0; c <= 16; ++c) {
    const auto code = static_cast<absl::StatusCode>(c);
    std::string upper = absl::StatusCodeToString(code);
    for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    if (name == upper) return code;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown status code \"", name, "\" (e.g. UNAVAILABLE)"));
}

// Answers a call with a reply according to `fault`. `call(reply)` makes the call; `error(status)`
// makes the reply a caller gets when the worker's is lost or replaced.
template <typename Reply>
void ApplyFault(RpcChaos* chaos, ChaosMethod method, std::function<void(std::function<void(Reply)>)> call,
                std::function<void(Reply)> done, std::function<Reply(absl::Status)> error) {
  const ChaosFault fault = chaos->Decide(method);
  const ChaosRule& rule = chaos->rule(method);
  auto injected = [method](absl::StatusCode code, absl::string_view what) {
    return absl::Status(code, absl::StrCat("injected fault: ", ChaosMethodName(method), " ", what));
  };
  switch (fault) {
    case ChaosFault::kNone:
      call(std::move(done));
      return;
    case ChaosFault::kDropRequest:  // the caller waits (a shortened deadline) and hears nothing
      chaos->After(rule.delay, [done = std::move(done), error = std::move(error), status = injected(
                                   absl::StatusCode::kDeadlineExceeded, "request dropped")] { done(error(status)); });
      return;
    case ChaosFault::kDropReply:
      call([done = std::move(done), error = std::move(error),
            status = injected(absl::StatusCode::kDeadlineExceeded, "reply dropped")](Reply) { done(error(status)); });
      return;
    case ChaosFault::kDelay:
      chaos->After(rule.delay, [call = std::move(call), done = std::move(done)]() mutable { call(std::move(done)); });
      return;
    case ChaosFault::kDuplicate: {
      auto answered = std::make_shared<std::atomic<bool>>(false);
      std::function<void(Reply)> once = [answered, done = std::move(done)](Reply reply) {
        if (!answered->exchange(true)) done(std::move(reply));
      };
      call(once);
      call(once);
      return;
    }
    case ChaosFault::kFail:
      done(error(injected(rule.fail_code, "failed")));
      return;
  }
}

// The same for calls without a reply.
void ApplyFault(RpcChaos* chaos, ChaosMethod method, std::function<void()> call) {
  switch (chaos->Decide(method)) {
    case ChaosFault::kNone:
    case ChaosFault::kDropReply:
      call();
      return;
    case ChaosFault::kDropRequest:
    case ChaosFault::kFail:
      return;
    case ChaosFault::kDelay:
      chaos->After(chaos->rule(method).delay, std::move(call));
      return;
    case ChaosFault::kDuplicate:
      call();
      call();
      return;
  }
}

}  // namespace

const char* ChaosMethodName(ChaosMethod method) { return kMethodNames[static_cast<int>(method)]; }
const char* ChaosFaultName(ChaosFault fault) { return kFaultNames[static_cast<int>(fault)]; }

bool ChaosOptions::enabled() const {
  for (const ChaosRule& rule : rules) {
    for (double p : rule.probability) {
      if (p > 0) return true;
    }
  }
  return false;
}

absl::StatusOr<ChaosOptions> ParseChaosSpec(absl::string_view spec) {
  ChaosOptions options;
  for (absl::string_view entry : absl::StrSplit(spec, ';', absl::SkipWhitespace())) {
    entry = absl::StripAsciiWhitespace(entry);
    auto bad = [entry](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat("RPC chaos spec entry \"", entry, "\": ", why));
    };
    const size_t eq = entry.find('=');
    if (eq == absl::string_view::npos) return bad("expected NAME=VALUE");
    const absl::string_view name = absl::StripAsciiWhitespace(entry.substr(0, eq));
    const absl::string_view value = absl::StripAsciiWhitespace(entry.substr(eq + 1));
    if (name == "seed") {
      if (!absl::SimpleAtoi(value, &options.seed)) return bad("the seed is not a number");
      continue;
    }
    std::vector<int> methods;
    for (int m = 0; m < kNumChaosMethods; ++m) {
      if (name == "*" || name == kMethodNames[m]) methods.push_back(m);
    }
    if (methods.empty()) return bad(absl::StrCat("unknown method \"", name, "\""));
    for (absl::string_view item : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
      item = absl::StripAsciiWhitespace(item);
      const std::vector<absl::string_view> parts = absl::StrSplit(item, absl::MaxSplits('@', 1));
      const std::vector<absl::string_view> fault_prob = absl::StrSplit(parts[0], ':');
      if (fault_prob.size() != 2) return bad(absl::StrCat("\"", item, "\" is not FAULT:PROBABILITY[@ARG]"));
      int fault = -1;
      for (int f = 1; f < kNumChaosFaults; ++f) {
        if (fault_prob[0] == kFaultNames[f]) fault = f;
      }
      if (fault < 0) return bad(absl::StrCat("unknown fault \"", fault_prob[0], "\""));
      double p = 0;
      if (!absl::SimpleAtod(fault_prob[1], &p) || !(p >= 0 && p <= 1)) {
        return bad(absl::StrCat("probability \"", fault_prob[1], "\" is not in [0, 1]"));
      }
      absl::Duration delay;
      absl::StatusCode code = absl::StatusCode::kUnavailable;
      if (parts.size() == 2) {
        if (fault == static_cast<int>(ChaosFault::kDelay) || fault == static_cast<int>(ChaosFault::kDropRequest)) {
          if (!absl::ParseDuration(parts[1], &delay) || delay < absl::ZeroDuration()) {
            return bad(absl::StrCat("\"", parts[1], "\" is not a duration such as 20ms"));
          }
        } else if (fault == static_cast<int>(ChaosFault::kFail)) {
          absl::StatusOr<absl::StatusCode> parsed = ParseCode(parts[1]);
          if (!parsed.ok()) return bad(parsed.status().message());
          code = *parsed;
        } else {
          return bad(absl::StrCat("the fault ", fault_prob[0], " takes no argument"));
        }
      }
      for (int m : methods) {
        ChaosRule& rule = options.rules[m];
        rule.probability[fault] = p;
        if (parts.size() == 2 && fault == static_cast<int>(ChaosFault::kFail)) rule.fail_code = code;
        if (parts.size() == 2 && fault != static_cast<int>(ChaosFault::kFail)) rule.delay = delay;
      }
    }
  }
  for (const ChaosRule& rule : options.rules) {
    double sum = 0;
    for (double p : rule.probability) sum += p;
    if (sum > 1) return absl::InvalidArgumentError("RPC chaos spec: one method's fault probabilities add up to more than 1");
  }
  return options;
}

RpcChaos::RpcChaos(const ChaosOptions& options) : options_(options) {
  for (int m = 0; m < kNumChaosMethods; ++m) rng_[m].seed(options.seed * 1000003 + static_cast<uint64_t>(m));
  timer_ = std::thread([this] { RunTimer(); });
}

RpcChaos::~RpcChaos() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  timer_.join();
}

ChaosFault RpcChaos::Decide(ChaosMethod method) {
  const ChaosRule& r = rule(method);
  absl::MutexLock lock(&mu_);
  const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng_[static_cast<int>(method)]);
  double cumulative = 0;
  for (int f = 1; f < kNumChaosFaults; ++f) {
    cumulative += r.probability[f];
    if (u < cumulative) {
      ++counts_[static_cast<int>(method)][f];
      return static_cast<ChaosFault>(f);
    }
  }
  return ChaosFault::kNone;
}

void RpcChaos::After(absl::Duration delay, std::function<void()> fn) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return;
  timers_.emplace(absl::Now() + delay, std::move(fn));
}

void RpcChaos::RunTimer() {
  while (true) {
    std::function<void()> due;
    {
      absl::MutexLock lock(&mu_);
      while (true) {
        if (stopping_) return;
        const absl::Time next = timers_.empty() ? absl::InfiniteFuture() : timers_.begin()->first;
        if (next <= absl::Now()) break;
        auto changed = [this, next]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
          return stopping_ || (!timers_.empty() && timers_.begin()->first < next);
        };
        mu_.AwaitWithDeadline(absl::Condition(&changed), next);
      }
      due = std::move(timers_.begin()->second);
      timers_.erase(timers_.begin());
    }
    due();  // outside the lock: it may call into the inner client, or After again
  }
}

int64_t RpcChaos::count(ChaosMethod method, ChaosFault fault) const {
  absl::MutexLock lock(&mu_);
  return counts_[static_cast<int>(method)][static_cast<int>(fault)];
}

int64_t RpcChaos::total(ChaosFault fault) const {
  absl::MutexLock lock(&mu_);
  int64_t sum = 0;
  for (const auto& per_method : counts_) sum += per_method[static_cast<int>(fault)];
  return sum;
}

std::string RpcChaos::Summary() const {
  std::string out;
  for (int f = 1; f < kNumChaosFaults; ++f) {
    absl::StrAppend(&out, f > 1 ? " " : "", kFaultNames[f], "=", total(static_cast<ChaosFault>(f)));
  }
  return out;
}

// ---- Decorators ------------------------------------------------------------------------------

void ChaosDraftClient::OpenSession(const DraftSessionSpec& session, StatusCallback done) {
  ApplyFault<absl::Status>(
      chaos_, ChaosMethod::kOpenDraftSession,
      [inner = inner_, session](StatusCallback reply) { inner->OpenSession(session, std::move(reply)); },
      std::move(done), [](absl::Status status) { return status; });
}

void ChaosDraftClient::Propose(const spec::ProposeRequest& request,
                               std::function<void(absl::StatusOr<spec::Proposal>)> done) {
  using Reply = absl::StatusOr<spec::Proposal>;
  ApplyFault<Reply>(
      chaos_, ChaosMethod::kPropose,
      [inner = inner_, request](std::function<void(Reply)> reply) { inner->Propose(request, std::move(reply)); },
      std::move(done), [](absl::Status status) { return Reply(std::move(status)); });
}

void ChaosDraftClient::CloseSession(spec::DraftSessionId session_id) {
  ApplyFault(chaos_, ChaosMethod::kCloseDraftSession, [inner = inner_, session_id] { inner->CloseSession(session_id); });
}

void ChaosDraftClient::RenewLease(const spec::LeaseRenewal& renewal) {
  ApplyFault(chaos_, ChaosMethod::kRenewDraftLease, [inner = inner_, renewal] { inner->RenewLease(renewal); });
}

void ChaosTargetClient::OpenSession(const TargetSessionSpec& session, StatusCallback done) {
  ApplyFault<absl::Status>(
      chaos_, ChaosMethod::kOpenTargetSession,
      [inner = inner_, session](StatusCallback reply) { inner->OpenSession(session, std::move(reply)); },
      std::move(done), [](absl::Status status) { return status; });
}

void ChaosTargetClient::Verify(const spec::ShardBlock& block, std::vector<int32_t> token_ids,
                               std::function<void(spec::BlockOutcome)> done) {
  using Reply = spec::BlockOutcome;
  ApplyFault<Reply>(
      chaos_, ChaosMethod::kVerify,
      [inner = inner_, block, token_ids = std::move(token_ids)](std::function<void(Reply)> reply) {
        inner->Verify(block, token_ids, std::move(reply));
      },
      std::move(done),
      [id = block.session_id, step = block.step](absl::Status status) {
        return Reply{id, step, std::move(status), std::nullopt};
      });
}

void ChaosTargetClient::CloseSession(spec::SessionId session_id) {
  ApplyFault(chaos_, ChaosMethod::kCloseTargetSession, [inner = inner_, session_id] { inner->CloseSession(session_id); });
}

void ChaosTargetClient::RenewLease(const spec::LeaseRenewal& renewal) {
  ApplyFault(chaos_, ChaosMethod::kRenewTargetLease, [inner = inner_, renewal] { inner->RenewLease(renewal); });
}

}  // namespace verdict::clients
