// SPDX-License-Identifier: Apache-2.0
#include "transport/ucx_transport.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <ucp/api/ucp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/host_port.h"
#include "common/status_macros.h"
#include "transport/wire_format.h"

namespace verdict::transport {
namespace {

using internal::CheckFrameLayout;
using internal::DecodeFramePrefix;
using internal::FramePrefix;
using internal::kFramePrefixBytes;
using internal::kHeaderInData;

// The active-message id of a frame. Both ends must agree; bump kFrameVersion, not this, when the
// framing changes.
constexpr unsigned kFrameAmId = 17;
// How far ahead of the next expected sequence number a frame may arrive. A correct sender has one
// frame in flight (Send waits for it), so anything beyond is a broken or hostile peer.
constexpr uint64_t kMaxOutOfOrderFrames = 1024;
// The receiver thread wakes at least this often even without events (a safety net only: the
// worker's event fd, the sockets and our own wake fd normally end the wait).
constexpr absl::Duration kIdleWait = absl::Milliseconds(100);
// How long closing endpoints may take before the worker is destroyed regardless.
constexpr absl::Duration kCloseTimeout = absl::Seconds(2);
// Upper bound on ucp_worker_progress calls in one round, so a flood cannot starve the loop.
constexpr int kMaxProgressCalls = 1024;
// Handshakes a receiver serves at once, and how long each may take; beyond, sockets are closed.
constexpr size_t kMaxPendingHandshakes = 64;
constexpr absl::Duration kHandshakeTimeout = absl::Seconds(10);
// Connections accepted per loop round (the rest wait in the kernel's backlog).
constexpr int kMaxAcceptsPerRound = 16;

absl::Status UcxError(absl::StatusCode code, absl::string_view what, ucs_status_t status) {
  return absl::Status(code, absl::StrCat(what, ": ", ucs_status_string(status)));
}

absl::Status ErrnoError(absl::StatusCode code, absl::string_view what, int error) {
  return absl::Status(code, absl::StrCat(what, ": ", std::strerror(error)));
}

// ----------------------------------------------------------------------------- sockets

// Owns a file descriptor.
class ScopedFd {
 public:
  ScopedFd() = default;
  explicit ScopedFd(int fd) : fd_(fd) {}
  ScopedFd(ScopedFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  ScopedFd& operator=(ScopedFd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~ScopedFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// Parses "host:port" (IPv4 literal or a name that resolves to IPv4). A name that does not resolve
// is kUnavailable: in a cluster that starts all at once the peer's DNS record may not exist yet, and
// the caller tries again.
absl::StatusOr<sockaddr_in> ParseAddress(const std::string& address, bool allow_port_zero) {
  VERDICT_ASSIGN_OR_RETURN(HostPort parsed, ParseHostPort(address, allow_port_zero));
  sockaddr_in result{};
  result.sin_family = AF_INET;
  result.sin_port = htons(static_cast<uint16_t>(parsed.port));
  if (inet_pton(AF_INET, parsed.host.c_str(), &result.sin_addr) == 1) return result;
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = getaddrinfo(parsed.host.c_str(), nullptr, &hints, &found);
  if (rc != 0 || found == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot resolve ", parsed.host, " (in \"", address, "\") to an IPv4 address: ",
                                               gai_strerror(rc)));
  }
  result.sin_addr = reinterpret_cast<const sockaddr_in*>(found->ai_addr)->sin_addr;
  freeaddrinfo(found);
  return result;
}

std::string FormatAddress(const sockaddr_storage& address) {
  char host[INET6_ADDRSTRLEN] = "?";
  if (address.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(address);
    inet_ntop(AF_INET, &in.sin_addr, host, sizeof(host));
    return absl::StrCat(host, ":", ntohs(in.sin_port));
  }
  if (address.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(address);
    inet_ntop(AF_INET6, &in6.sin6_addr, host, sizeof(host));
    return absl::StrCat("[", host, "]:", ntohs(in6.sin6_port));
  }
  return "unknown-address";
}

int RemainingMilliseconds(absl::Time deadline) {
  const absl::Duration left = std::max(deadline - absl::Now(), absl::ZeroDuration());
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))),
                                            int64_t{1} << 30));
}

// Waits until `fd` has `events` or `deadline` passes (kUnavailable naming `address`).
absl::Status PollUntil(int fd, short events, absl::Time deadline, const std::string& address, const char* what) {
  for (int round = 0; round < 1000; ++round) {
    const int timeout_ms = RemainingMilliseconds(deadline);
    if (timeout_ms == 0) break;
    pollfd entry{fd, events, 0};
    const int ready = poll(&entry, 1, timeout_ms);
    if (ready > 0) return absl::OkStatus();
    if (ready < 0 && errno != EINTR) return ErrnoError(absl::StatusCode::kUnavailable, address, errno);
  }
  return absl::UnavailableError(absl::StrCat(address, ": timed out ", what));
}

// The sender's half of the handshake (wire_format.h): connects to `address`, sends our worker
// address, returns the receiver's. Everything within `deadline`; errors are kUnavailable.
absl::StatusOr<std::string> ExchangeWorkerAddresses(const sockaddr_in& peer, const std::string& address,
                                                    const std::string& own_worker_address, absl::Time deadline) {
  ScopedFd fd(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoError(absl::StatusCode::kUnavailable, "socket", errno);
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&peer), sizeof(peer)) != 0 && errno != EINPROGRESS) {
    return ErrnoError(absl::StatusCode::kUnavailable, absl::StrCat("cannot connect to ", address), errno);
  }
  VERDICT_RETURN_IF_ERROR(PollUntil(fd.get(), POLLOUT, deadline, address, "connecting"));
  int error = 0;
  socklen_t length = sizeof(error);
  getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &length);
  if (error != 0) return ErrnoError(absl::StatusCode::kUnavailable, absl::StrCat("cannot connect to ", address), error);

  const std::string hello = internal::EncodeHandshake(internal::kHelloMagic, {.worker_address = own_worker_address});
  for (size_t sent = 0; sent < hello.size();) {
    const ssize_t n = send(fd.get(), hello.data() + sent, hello.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      VERDICT_RETURN_IF_ERROR(PollUntil(fd.get(), POLLOUT, deadline, address, "sending the handshake"));
    } else {
      return ErrnoError(absl::StatusCode::kUnavailable, absl::StrCat(address, ": handshake"), errno);
    }
  }
  std::string received;
  char buffer[4096];
  while (received.size() <= internal::kHandshakeHeaderBytes + internal::kMaxWorkerAddressBytes) {
    const ssize_t n = recv(fd.get(), buffer, sizeof(buffer), 0);
    if (n == 0) return absl::UnavailableError(absl::StrCat(address, " closed the connection during the handshake"));
    if (n < 0) {
      if (errno != EAGAIN && errno != EINTR) {
        return ErrnoError(absl::StatusCode::kUnavailable, absl::StrCat(address, ": handshake"), errno);
      }
      VERDICT_RETURN_IF_ERROR(PollUntil(fd.get(), POLLIN, deadline, address, "waiting for the handshake"));
      continue;
    }
    received.append(buffer, static_cast<size_t>(n));
    absl::StatusOr<std::optional<internal::Handshake>> welcome =
        internal::ParseHandshake(internal::kWelcomeMagic, received);
    if (!welcome.ok()) {
      return absl::UnavailableError(
          absl::StrCat(address, " is not a UCX activation receiver: ", welcome.status().message()));
    }
    if (!welcome->has_value()) continue;
    if ((*welcome)->status == internal::kHandshakeRejected) {
      return absl::UnavailableError(absl::StrCat(address, " rejected the connection: it has max_connections senders"));
    }
    return std::move((*welcome)->worker_address);
  }
  return absl::UnavailableError(absl::StrCat(address, ": handshake too long"));
}

absl::Status ValidateOptions(const UcxOptions& options) {
  if (options.max_frame_bytes > kMaxFrameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_frame_bytes ", options.max_frame_bytes, " is above kMaxFrameBytes ", kMaxFrameBytes));
  }
  if (options.connect_timeout <= absl::ZeroDuration() || options.send_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("connect_timeout and send_timeout must be positive");
  }
  if (options.max_connections < 1) return absl::InvalidArgumentError("max_connections must be at least 1");
  return absl::OkStatus();
}

// ----------------------------------------------------------------------------- UcxWorker

// One UCP context with one worker. Every sender and receiver owns its own: the UCX options (TLS,
// devices) are per context, and separate workers let a sender be progressed by its caller and a
// receiver by its thread without sharing, so UCS_THREAD_MODE_SINGLE is enough.
class UcxWorker {
 public:
  static absl::StatusOr<std::unique_ptr<UcxWorker>> Create(const UcxOptions& options) {
    auto worker = std::unique_ptr<UcxWorker>(new UcxWorker());
    ucp_config_t* config = nullptr;
    ucs_status_t status = ucp_config_read(nullptr, nullptr, &config);
    if (status != UCS_OK) return UcxError(absl::StatusCode::kUnavailable, "ucp_config_read", status);
    if (!options.tls.empty()) status = ucp_config_modify(config, "TLS", options.tls.c_str());
    if (status == UCS_OK && !options.net_devices.empty()) {
      status = ucp_config_modify(config, "NET_DEVICES", options.net_devices.c_str());
    }
    if (status != UCS_OK) {
      ucp_config_release(config);
      return UcxError(absl::StatusCode::kInvalidArgument,
                      absl::StrCat("UCX options tls=\"", options.tls, "\" net_devices=\"", options.net_devices, "\""),
                      status);
    }
    ucp_params_t params{};
    params.field_mask = UCP_PARAM_FIELD_FEATURES;
    params.features = UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
    status = ucp_init(&params, config, &worker->context_);
    ucp_config_release(config);
    if (status != UCS_OK) return UcxError(absl::StatusCode::kUnavailable, "ucp_init", status);

    ucp_worker_params_t worker_params{};
    worker_params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    worker_params.thread_mode = UCS_THREAD_MODE_SINGLE;
    status = ucp_worker_create(worker->context_, &worker_params, &worker->worker_);
    if (status != UCS_OK) return UcxError(absl::StatusCode::kUnavailable, "ucp_worker_create", status);

    ucp_worker_attr_t attr{};
    attr.field_mask = UCP_WORKER_ATTR_FIELD_MAX_AM_HEADER;
    status = ucp_worker_query(worker->worker_, &attr);
    if (status != UCS_OK) return UcxError(absl::StatusCode::kUnavailable, "ucp_worker_query", status);
    worker->max_am_header_ = attr.max_am_header;
    status = ucp_worker_get_efd(worker->worker_, &worker->event_fd_);
    if (status != UCS_OK) return UcxError(absl::StatusCode::kUnavailable, "ucp_worker_get_efd", status);

    ucp_address_t* address = nullptr;
    size_t address_length = 0;
    status = ucp_worker_get_address(worker->worker_, &address, &address_length);
    if (status != UCS_OK) return UcxError(absl::StatusCode::kUnavailable, "ucp_worker_get_address", status);
    worker->address_.assign(reinterpret_cast<const char*>(address), address_length);
    ucp_worker_release_address(worker->worker_, address);
    if (worker->address_.size() > internal::kMaxWorkerAddressBytes) {
      return absl::UnavailableError(absl::StrCat("UCP worker address of ", worker->address_.size(), " bytes"));
    }
    return worker;
  }

  // Destroying the worker ends every operation still pending on it; no callback runs afterwards.
  ~UcxWorker() {
    if (worker_ != nullptr) ucp_worker_destroy(worker_);
    if (context_ != nullptr) ucp_cleanup(context_);
  }

  UcxWorker(const UcxWorker&) = delete;
  UcxWorker& operator=(const UcxWorker&) = delete;

  ucp_worker_h get() const { return worker_; }
  size_t max_am_header() const { return max_am_header_; }
  int event_fd() const { return event_fd_; }
  // The packed UCP worker address peers connect to.
  const std::string& address() const { return address_; }

  // Runs callbacks until the worker reports nothing more to do (bounded).
  void Progress() {
    for (int i = 0; i < kMaxProgressCalls && ucp_worker_progress(worker_) != 0; ++i) {
    }
  }

  // Prepares the event fd for a wait. False when events are already pending (progress instead of
  // sleeping) or arming failed (the fd cannot be trusted: poll briefly).
  bool Arm() { return ucp_worker_arm(worker_) == UCS_OK; }

  // Progresses until `request` (a ucp *_nbx result) completes or `deadline` passes. Returns the
  // request's status, or UCS_ERR_TIMED_OUT; the request handle is released either way (an
  // unfinished one completes, or is discarded, when the worker is destroyed).
  ucs_status_t WaitFor(void* request, absl::Time deadline) {
    if (request == nullptr) return UCS_OK;
    if (UCS_PTR_IS_ERR(request)) return UCS_PTR_STATUS(request);
    for (;;) {
      Progress();
      const ucs_status_t status = ucp_request_check_status(request);
      if (status != UCS_INPROGRESS) {
        ucp_request_free(request);
        return status;
      }
      if (absl::Now() >= deadline) break;
      if (Arm()) {
        pollfd entry{event_fd_, POLLIN, 0};
        poll(&entry, 1, std::min(RemainingMilliseconds(deadline), 10));
      }
    }
    ucp_request_free(request);
    return UCS_ERR_TIMED_OUT;
  }

 private:
  UcxWorker() = default;

  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  size_t max_am_header_ = 0;
  int event_fd_ = -1;
  std::string address_;
};

ucp_err_handling_mode_t ErrorMode(const UcxOptions& options) {
  return options.peer_failure_detection ? UCP_ERR_HANDLING_MODE_PEER : UCP_ERR_HANDLING_MODE_NONE;
}

// Creates an endpoint to a peer's packed worker address. UCX pairs it with the peer's endpoint to
// us (both sides create one after the handshake) into one connection.
ucs_status_t CreateEndpoint(ucp_worker_h worker, const std::string& peer_worker_address, const UcxOptions& options,
                            ucp_err_handler_cb_t on_error, void* arg, ucp_ep_h* ep) {
  ucp_ep_params_t params{};
  params.field_mask =
      UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_ERR_HANDLER;
  params.address = reinterpret_cast<const ucp_address_t*>(peer_worker_address.data());
  params.err_mode = ErrorMode(options);
  params.err_handler.cb = on_error;
  params.err_handler.arg = arg;
  return ucp_ep_create(worker, &params, ep);
}

// ----------------------------------------------------------------------------- sender

class UcxSender final : public ActivationSender {
 public:
  static absl::StatusOr<std::unique_ptr<UcxSender>> Connect(const UcxOptions& options, const std::string& address) {
    VERDICT_RETURN_IF_ERROR(ValidateOptions(options));
    VERDICT_ASSIGN_OR_RETURN(sockaddr_in peer, ParseAddress(address, /*allow_port_zero=*/false));
    VERDICT_ASSIGN_OR_RETURN(std::unique_ptr<UcxWorker> worker, UcxWorker::Create(options));
    const absl::Time deadline = absl::Now() + options.connect_timeout;
    VERDICT_ASSIGN_OR_RETURN(std::string receiver_worker_address,
                             ExchangeWorkerAddresses(peer, address, worker->address(), deadline));
    auto sender = std::unique_ptr<UcxSender>(new UcxSender(options, address, std::move(worker)));
    const ucs_status_t created = CreateEndpoint(sender->worker_->get(), receiver_worker_address, options,
                                                &UcxSender::OnEndpointError, sender.get(), &sender->ep_);
    if (created != UCS_OK) {
      sender->ep_ = nullptr;
      return UcxError(absl::StatusCode::kUnavailable, absl::StrCat("cannot connect to ", address), created);
    }
    // Wire-up runs in the background; a flush completes once the endpoint is connected (or failed).
    ucp_request_param_t flush_params{};
    const ucs_status_t flushed = sender->worker_->WaitFor(ucp_ep_flush_nbx(sender->ep_, &flush_params), deadline);
    if (flushed != UCS_OK || sender->endpoint_error() != UCS_OK) {
      const ucs_status_t cause = flushed != UCS_OK ? flushed : sender->endpoint_error();
      sender->Close(/*graceful=*/false);
      return UcxError(absl::StatusCode::kUnavailable, absl::StrCat("cannot connect to ", address), cause);
    }
    return sender;
  }

  ~UcxSender() override { Close(/*graceful=*/true); }

  absl::Status Send(const Frame& frame) override {
    const uint64_t bytes = uint64_t{frame.header.size()} + frame.payload.size();
    if (bytes > options_.max_frame_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("frame of ", bytes, " bytes exceeds the limit of ", options_.max_frame_bytes));
    }
    if (worker_ == nullptr) return closed_reason_;
    FramePrefix prefix;
    prefix.sequence = next_sequence_;
    prefix.header_bytes = frame.header.size();
    prefix.payload_bytes = frame.payload.size();
    std::string am_header;
    std::string joined;  // header + payload, only when the header does not fit the AM header
    absl::string_view data = frame.payload;
    if (frame.header.size() + kFramePrefixBytes <= worker_->max_am_header()) {
      internal::AppendFramePrefix(prefix, &am_header);
      am_header += frame.header;
    } else {
      prefix.flags = kHeaderInData;
      internal::AppendFramePrefix(prefix, &am_header);
      joined.reserve(bytes);
      joined.append(frame.header).append(frame.payload);
      data = joined;
    }
    ++next_sequence_;
    return SendMessage(am_header, data);
  }

  std::string peer() const override { return address_; }

  // Sends one active message and waits until its buffers may be reused. Any failure closes the
  // connection (the sequence numbers would have a gap) and returns kUnavailable.
  absl::Status SendMessage(absl::string_view am_header, absl::string_view data) {
    if (worker_ == nullptr) return closed_reason_;
    // The sender has no thread of its own: progress now, so a peer that died since the last send
    // (its TCP connection reset) is noticed here instead of an eager send "completing" into a dead
    // connection.
    worker_->Progress();
    if (endpoint_error() != UCS_OK) return Fail(endpoint_error());
    ucp_request_param_t params{};
    params.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS | UCP_OP_ATTR_FIELD_DATATYPE;
    // REPLY: the receiver learns which endpoint (connection) a message came from.
    params.flags = UCP_AM_SEND_FLAG_REPLY;
    params.datatype = ucp_dt_make_contig(1);
    void* request = ucp_am_send_nbx(ep_, kFrameAmId, am_header.data(), am_header.size(), data.data(), data.size(),
                                    &params);
    const ucs_status_t status = worker_->WaitFor(request, absl::Now() + options_.send_timeout);
    if (status != UCS_OK) return Fail(status);
    return absl::OkStatus();
  }

  // Uses up the next sequence number (for the test hook).
  uint64_t TakeSequence() { return next_sequence_++; }

  std::string DescribeEndpoint() {
    if (ep_ == nullptr) return "";
    char* text = nullptr;
    size_t size = 0;
    FILE* stream = open_memstream(&text, &size);
    if (stream == nullptr) return "";
    ucp_ep_print_info(ep_, stream);
    fclose(stream);
    std::string result(text, size);
    free(text);
    return result;
  }

 private:
  UcxSender(const UcxOptions& options, std::string address, std::unique_ptr<UcxWorker> worker)
      : options_(options), address_(std::move(address)), worker_(std::move(worker)) {}

  // UCX calls this from progress, i.e. inside one of our calls into the worker; atomic in case a
  // UCX version calls it from its async thread instead.
  static void OnEndpointError(void* arg, ucp_ep_h /*ep*/, ucs_status_t status) {
    static_cast<UcxSender*>(arg)->endpoint_error_.store(status, std::memory_order_release);
  }

  ucs_status_t endpoint_error() const { return endpoint_error_.load(std::memory_order_acquire); }

  absl::Status Fail(ucs_status_t status) {
    closed_reason_ = absl::UnavailableError(
        status == UCS_ERR_TIMED_OUT
            ? absl::StrCat("UCX peer ", address_, " took no frame within ", absl::FormatDuration(options_.send_timeout))
            : absl::StrCat("UCX peer ", address_, " unavailable: ", ucs_status_string(status)));
    Close(/*graceful=*/false);
    return closed_reason_;
  }

  // Closes the endpoint (flushing it first if `graceful` and it is healthy) and destroys the
  // worker, which guarantees UCX no longer touches any caller memory and closes the connection's
  // sockets, which is how the receiver learns that we left. Idempotent.
  void Close(bool graceful) {
    if (worker_ == nullptr) return;
    if (ep_ != nullptr) {
      ucp_request_param_t params{};
      params.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
      params.flags = graceful && endpoint_error() == UCS_OK ? 0 : UCP_EP_CLOSE_FLAG_FORCE;
      worker_->WaitFor(ucp_ep_close_nbx(ep_, &params), absl::Now() + kCloseTimeout);
      ep_ = nullptr;
    }
    worker_.reset();
    if (closed_reason_.ok()) {
      closed_reason_ = absl::UnavailableError(absl::StrCat("UCX sender to ", address_, " is closed"));
    }
  }

  const UcxOptions options_;
  const std::string address_;
  std::unique_ptr<UcxWorker> worker_;  // null once closed
  ucp_ep_h ep_ = nullptr;
  std::atomic<ucs_status_t> endpoint_error_{UCS_OK};
  absl::Status closed_reason_;  // what Send returns once closed
  uint64_t next_sequence_ = 0;
};

// ----------------------------------------------------------------------------- receiver

class UcxReceiver final : public ActivationReceiver {
 public:
  static absl::StatusOr<std::unique_ptr<UcxReceiver>> Listen(const UcxOptions& options,
                                                             const std::string& listen_address, FrameHandler handler) {
    VERDICT_RETURN_IF_ERROR(ValidateOptions(options));
    if (!handler) return absl::InvalidArgumentError("ListenUcx needs a handler");
    VERDICT_ASSIGN_OR_RETURN(sockaddr_in local, ParseAddress(listen_address, /*allow_port_zero=*/true));
    VERDICT_ASSIGN_OR_RETURN(std::unique_ptr<UcxWorker> worker, UcxWorker::Create(options));
    auto receiver = std::unique_ptr<UcxReceiver>(new UcxReceiver(options, std::move(handler), std::move(worker)));

    receiver->wake_fd_ = ScopedFd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!receiver->wake_fd_.valid()) return ErrnoError(absl::StatusCode::kUnavailable, "eventfd", errno);

    ucp_am_handler_param_t am{};
    am.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG |
                    UCP_AM_HANDLER_PARAM_FIELD_FLAGS;
    am.id = kFrameAmId;
    am.cb = &UcxReceiver::OnActiveMessage;
    am.arg = receiver.get();
    am.flags = UCP_AM_FLAG_WHOLE_MSG;
    const ucs_status_t status = ucp_worker_set_am_recv_handler(receiver->worker_->get(), &am);
    if (status != UCS_OK) return UcxError(absl::StatusCode::kUnavailable, "ucp_worker_set_am_recv_handler", status);

    ScopedFd listener(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!listener.valid()) return ErrnoError(absl::StatusCode::kUnavailable, "socket", errno);
    const int one = 1;
    setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(listener.get(), reinterpret_cast<const sockaddr*>(&local), sizeof(local)) != 0 ||
        listen(listener.get(), 128) != 0) {
      return ErrnoError(absl::StatusCode::kUnavailable, absl::StrCat("cannot listen on ", listen_address), errno);
    }
    sockaddr_storage bound{};
    socklen_t length = sizeof(bound);
    getsockname(listener.get(), reinterpret_cast<sockaddr*>(&bound), &length);
    receiver->address_ = FormatAddress(bound);
    receiver->listener_ = std::move(listener);

    receiver->thread_ = std::thread([r = receiver.get()] { r->Run(); });
    return receiver;
  }

  ~UcxReceiver() override {
    stop_.store(true, std::memory_order_release);
    Wake();
    if (thread_.joinable()) thread_.join();
    TearDown();
  }

  std::string address() const override { return address_; }

 private:
  struct Connection;

  // One frame of one connection, from the arrival of its message until the handler gets it.
  struct Slot {
    UcxReceiver* receiver = nullptr;
    Connection* connection = nullptr;  // null once orphaned: reported lost, data still arriving
    uint64_t sequence = 0;
    bool done = false;  // `result` is final
    bool header_in_data = false;
    uint64_t header_bytes = 0;  // when header_in_data: where the payload starts in `joined`
    void* rndv_descriptor = nullptr;  // rendezvous data not yet asked for
    absl::StatusOr<Frame> result = Frame{};
    std::string joined;  // rendezvous target when the header travels in the data
  };

  // One sender: our endpoint to it, paired by UCX with its endpoint to us.
  struct Connection {
    ucp_ep_h ep = nullptr;
    std::string peer;  // the sender's TCP address at the handshake, for messages
    uint64_t next_sequence = 0;
    std::map<uint64_t, std::unique_ptr<Slot>> slots;  // arrived, not yet delivered, by sequence
    void* close_request = nullptr;
  };

  // A TCP connection on our port that has not finished the handshake.
  struct PendingHandshake {
    ScopedFd fd;
    std::string peer;
    std::string received;
    std::string reply;  // the welcome, once the hello is in
    size_t reply_sent = 0;
    absl::Time deadline;
  };

  UcxReceiver(const UcxOptions& options, FrameHandler handler, std::unique_ptr<UcxWorker> worker)
      : options_(options), handler_(std::move(handler)), worker_(std::move(worker)) {}

  void Wake() {
    if (!wake_fd_.valid()) return;
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t written = write(wake_fd_.get(), &one, sizeof(one));
  }

  // The progress thread. Every UCX callback runs inside worker_->Progress() here; they only
  // record what happened, and the steps after Progress() act on it, so no UCX call is made from
  // inside a callback and the handler never runs inside one.
  void Run() {
    pthread_setname_np(pthread_self(), "verdict-ucx-rx");
    while (!stop_.load(std::memory_order_acquire)) {
      worker_->Progress();
      StartReceives();
      FailConnections();
      CollectInOrder();
      ReapClosedConnections();
      const bool delivered = CallHandler();
      // Sleep only when UCX has nothing pending; the sockets are served either way.
      const bool may_sleep = !delivered && worker_->Arm();
      ServeSockets(may_sleep ? kIdleWait : absl::ZeroDuration());
    }
  }

  // ---- UCX callbacks (progress context)

  static void OnEndpointError(void* arg, ucp_ep_h ep, ucs_status_t status) {
    auto* self = static_cast<UcxReceiver*>(arg);
    absl::MutexLock lock(&self->events_mu_);
    self->failed_endpoints_.emplace_back(ep, status);
  }

  static ucs_status_t OnActiveMessage(void* arg, const void* header, size_t header_length, void* data, size_t length,
                                      const ucp_am_recv_param_t* param) {
    return static_cast<UcxReceiver*>(arg)->HandleMessage(
        absl::string_view(static_cast<const char*>(header), header_length), data, length, *param);
  }

  static void OnReceiveDone(void* request, ucs_status_t status, size_t /*length*/, void* user_data) {
    ucp_request_free(request);
    auto* slot = static_cast<Slot*>(user_data);
    slot->receiver->FinishReceive(slot, status);
  }

  // ---- handshakes on our TCP port

  // Waits up to `timeout` for the worker's events, a wake-up or socket activity, then accepts new
  // connections and advances handshakes.
  void ServeSockets(absl::Duration timeout) {
    std::vector<pollfd> fds;
    fds.reserve(3 + handshakes_.size());
    fds.push_back({worker_->event_fd(), POLLIN, 0});
    fds.push_back({wake_fd_.get(), POLLIN, 0});
    fds.push_back({listener_.get(), POLLIN, 0});
    absl::Time wake_by = absl::Now() + timeout;
    for (const auto& handshake : handshakes_) {
      fds.push_back({handshake->fd.get(), static_cast<short>(handshake->reply.empty() ? POLLIN : POLLOUT), 0});
      wake_by = std::min(wake_by, handshake->deadline);
    }
    if (poll(fds.data(), fds.size(), RemainingMilliseconds(wake_by)) < 0) return;  // EINTR: next round
    if (fds[1].revents != 0) {
      uint64_t ignored = 0;
      [[maybe_unused]] ssize_t drained = read(wake_fd_.get(), &ignored, sizeof(ignored));
    }
    // Advance handshakes first (fds[3 + i] matches handshakes_[i]), then add new ones.
    const absl::Time now = absl::Now();
    for (size_t i = 0; i < handshakes_.size(); ++i) {
      if (fds[3 + i].revents != 0) AdvanceHandshake(*handshakes_[i]);
      if (now >= handshakes_[i]->deadline) handshakes_[i]->fd.reset();
    }
    std::erase_if(handshakes_, [](const auto& handshake) { return !handshake->fd.valid(); });
    if (fds[2].revents != 0) AcceptConnections(now);
  }

  void AcceptConnections(absl::Time now) {
    for (int i = 0; i < kMaxAcceptsPerRound; ++i) {
      sockaddr_storage from{};
      socklen_t length = sizeof(from);
      ScopedFd fd(accept4(listener_.get(), reinterpret_cast<sockaddr*>(&from), &length, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (!fd.valid()) return;  // EAGAIN, or a transient error: try again next round
      if (handshakes_.size() >= kMaxPendingHandshakes) continue;  // closes it
      auto handshake = std::make_unique<PendingHandshake>();
      handshake->fd = std::move(fd);
      handshake->peer = FormatAddress(from);
      handshake->deadline = now + kHandshakeTimeout;
      handshakes_.push_back(std::move(handshake));
    }
  }

  // Reads the hello or writes the welcome, as far as the socket allows. Closing the socket
  // (fd.reset()) ends the handshake: after the welcome is out, or on anything unexpected.
  void AdvanceHandshake(PendingHandshake& handshake) {
    if (handshake.reply.empty()) {
      char buffer[4096];
      for (int i = 0; i < 32; ++i) {
        const ssize_t n = recv(handshake.fd.get(), buffer, sizeof(buffer), 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (n <= 0) {  // closed, or an error: give up on this one
          handshake.fd.reset();
          return;
        }
        handshake.received.append(buffer, static_cast<size_t>(n));
        absl::StatusOr<std::optional<internal::Handshake>> hello =
            internal::ParseHandshake(internal::kHelloMagic, handshake.received);
        if (!hello.ok()) {  // not one of our senders: never reaches UCX or the handler
          handshake.fd.reset();
          return;
        }
        if (hello->has_value()) {
          Admit(handshake, (*hello)->worker_address);
          break;
        }
      }
    }
    if (handshake.reply.empty() || !handshake.fd.valid()) return;
    while (handshake.reply_sent < handshake.reply.size()) {
      const ssize_t n = send(handshake.fd.get(), handshake.reply.data() + handshake.reply_sent,
                             handshake.reply.size() - handshake.reply_sent, MSG_NOSIGNAL);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
      if (n <= 0) break;
      handshake.reply_sent += static_cast<size_t>(n);
    }
    handshake.fd.reset();  // welcome delivered (or the sender is gone)
  }

  // Creates our endpoint to a sender that sent a valid hello and prepares the welcome.
  void Admit(PendingHandshake& handshake, const std::string& sender_worker_address) {
    if (static_cast<int>(connections_.size()) >= options_.max_connections) {
      handshake.reply = internal::EncodeHandshake(internal::kWelcomeMagic, {.status = internal::kHandshakeRejected});
      return;
    }
    ucp_ep_h ep = nullptr;
    if (CreateEndpoint(worker_->get(), sender_worker_address, options_, &UcxReceiver::OnEndpointError, this, &ep) !=
        UCS_OK) {
      handshake.fd.reset();  // the sender sees the connection close and fails
      return;
    }
    auto connection = std::make_unique<Connection>();
    connection->ep = ep;
    connection->peer = handshake.peer;
    connections_.emplace(ep, std::move(connection));
    handshake.reply = internal::EncodeHandshake(internal::kWelcomeMagic, {.worker_address = worker_->address()});
  }

  // ---- message handling

  ucs_status_t HandleMessage(absl::string_view am_header, void* data, size_t length, const ucp_am_recv_param_t& param) {
    if (stop_.load(std::memory_order_acquire)) return UCS_OK;
    const bool rendezvous = (param.recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0;
    Connection* connection = nullptr;
    if ((param.recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP) != 0) {
      auto it = connections_.find(param.reply_ep);
      if (it != connections_.end()) connection = it->second.get();
    }
    // Returning UCS_OK for a rendezvous message we do not want drops its data unread.
    if (connection == nullptr) {
      Report(absl::DataLossError("UCX message from an endpoint with no accepted connection"));
      return UCS_OK;
    }
    absl::StatusOr<FramePrefix> prefix = DecodeFramePrefix(am_header);
    if (!prefix.ok()) {
      Report(absl::DataLossError(absl::StrCat("from ", connection->peer, ": ", prefix.status().message())));
      return UCS_OK;
    }
    const uint64_t sequence = prefix->sequence;
    if (sequence < connection->next_sequence || sequence - connection->next_sequence >= kMaxOutOfOrderFrames ||
        connection->slots.contains(sequence)) {
      Report(absl::DataLossError(absl::StrCat("from ", connection->peer, ": unexpected frame sequence ", sequence,
                                              " (next is ", connection->next_sequence, ")")));
      return UCS_OK;
    }
    auto slot = std::make_unique<Slot>();
    slot->receiver = this;
    slot->connection = connection;
    slot->sequence = sequence;
    Slot* raw = slot.get();
    connection->slots.emplace(sequence, std::move(slot));

    // From here the message owns its place in the order: a malformed one is reported there.
    const absl::Status layout = CheckFrameLayout(*prefix, am_header.size(), length, options_.max_frame_bytes);
    if (!layout.ok()) {
      raw->result =
          absl::DataLossError(absl::StrCat("from ", connection->peer, ", frame ", sequence, ": ", layout.message()));
      raw->done = true;
      return UCS_OK;
    }
    raw->header_in_data = (prefix->flags & kHeaderInData) != 0;
    raw->header_bytes = prefix->header_bytes;
    Frame& frame = *raw->result;
    if (!raw->header_in_data) {
      frame.header.assign(am_header.data() + kFramePrefixBytes, am_header.size() - kFramePrefixBytes);
    }
    if (!rendezvous) {
      // Eager data is only valid during this callback: copy it.
      const char* bytes = static_cast<const char*>(data);
      const size_t header_bytes = raw->header_in_data ? prefix->header_bytes : 0;
      if (header_bytes > 0) frame.header.assign(bytes, header_bytes);
      if (length > header_bytes) frame.payload.assign(bytes + header_bytes, length - header_bytes);
      raw->done = true;
      return UCS_OK;
    }
    // Rendezvous: size the destination now, ask for the data after the callback returns.
    if (raw->header_in_data) {
      raw->joined.resize(length);
    } else {
      frame.payload.resize(length);
    }
    raw->rndv_descriptor = data;
    to_start_.push_back(raw);
    return UCS_INPROGRESS;
  }

  void StartReceives() {
    for (Slot* slot : to_start_) {
      std::string& target = slot->header_in_data ? slot->joined : slot->result->payload;
      ucp_request_param_t params{};
      params.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_DATATYPE;
      params.cb.recv_am = &UcxReceiver::OnReceiveDone;
      params.user_data = slot;
      params.datatype = ucp_dt_make_contig(1);
      void* descriptor = std::exchange(slot->rndv_descriptor, nullptr);
      void* request = ucp_am_recv_data_nbx(worker_->get(), descriptor, target.data(), target.size(), &params);
      if (request == nullptr) {
        FinishReceive(slot, UCS_OK);
      } else if (UCS_PTR_IS_ERR(request)) {
        FinishReceive(slot, UCS_PTR_STATUS(request));
      }
    }
    to_start_.clear();
  }

  void FinishReceive(Slot* slot, ucs_status_t status) {
    if (slot->connection == nullptr) {  // its loss was already reported
      orphans_.erase(slot);
      return;
    }
    slot->done = true;
    if (status != UCS_OK) {
      slot->result = UcxError(
          absl::StatusCode::kUnavailable,
          absl::StrCat("from ", slot->connection->peer, ", frame ", slot->sequence, ": receive failed"), status);
    } else if (slot->header_in_data) {
      Frame& frame = *slot->result;
      frame.header.assign(slot->joined, 0, slot->header_bytes);
      slot->joined.erase(0, slot->header_bytes);
      frame.payload = std::move(slot->joined);
    }
  }

  // A message we cannot place in any sender's order goes to the handler at once.
  void Report(absl::Status status) { deliveries_.push_back(std::move(status)); }

  // ---- connections

  // Hands a failed connection's frames to the handler in order (one still arriving becomes
  // kUnavailable) and closes its endpoint. A sender that closes between frames lands here too,
  // with nothing to report.
  void FailConnections() {
    std::vector<std::pair<ucp_ep_h, ucs_status_t>> failed;
    {
      absl::MutexLock lock(&events_mu_);
      failed.swap(failed_endpoints_);
    }
    for (const auto& [ep, status] : failed) {
      auto it = connections_.find(ep);
      if (it == connections_.end()) continue;  // already closing
      std::unique_ptr<Connection> connection = std::move(it->second);
      connections_.erase(it);
      for (auto& [sequence, slot] : connection->slots) {
        if (slot->done) {
          deliveries_.push_back(std::move(slot->result));
          continue;
        }
        deliveries_.push_back(UcxError(
            absl::StatusCode::kUnavailable,
            absl::StrCat("from ", connection->peer, ", frame ", sequence, ": sender disconnected mid-frame"), status));
        Orphan(std::move(slot));
      }
      connection->slots.clear();
      CloseEndpoint(std::move(connection));
    }
  }

  // A slot whose frame is no longer expected but whose receive UCX may still be writing into: keep
  // it until the receive ends (FinishReceive) or the worker is destroyed.
  void Orphan(std::unique_ptr<Slot> slot) {
    slot->connection = nullptr;
    Slot* raw = slot.get();
    orphans_.emplace(raw, std::move(slot));
  }

  void CloseEndpoint(std::unique_ptr<Connection> connection) {
    ucp_request_param_t params{};
    params.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    params.flags = UCP_EP_CLOSE_FLAG_FORCE;
    void* request = ucp_ep_close_nbx(connection->ep, &params);
    if (UCS_PTR_IS_PTR(request)) {
      connection->close_request = request;
      closing_.push_back(std::move(connection));
    }
  }

  void ReapClosedConnections() {
    std::erase_if(closing_, [](const std::unique_ptr<Connection>& connection) {
      if (ucp_request_check_status(connection->close_request) == UCS_INPROGRESS) return false;
      ucp_request_free(connection->close_request);
      return true;
    });
  }

  // Moves each healthy connection's frames that are next in its order to the deliveries.
  void CollectInOrder() {
    for (auto& [ep, connection] : connections_) {
      auto& slots = connection->slots;
      while (!slots.empty() && slots.begin()->first == connection->next_sequence && slots.begin()->second->done) {
        deliveries_.push_back(std::move(slots.begin()->second->result));
        slots.erase(slots.begin());
        ++connection->next_sequence;
      }
    }
  }

  // Calls the handler for everything ready (not once stopping). True if it called it at all.
  bool CallHandler() {
    bool called = false;
    while (!deliveries_.empty() && !stop_.load(std::memory_order_acquire)) {
      absl::StatusOr<Frame> item = std::move(deliveries_.front());
      deliveries_.pop_front();
      handler_(std::move(item));
      called = true;
    }
    return called;
  }

  // After the thread has stopped: stop listening, close every endpoint (bounded), destroy the
  // worker (which ends any receive still in flight), then free what those receives pointed at.
  void TearDown() {
    listener_.reset();
    handshakes_.clear();
    if (worker_ == nullptr) return;
    for (Slot* slot : to_start_) ucp_am_data_release(worker_->get(), std::exchange(slot->rndv_descriptor, nullptr));
    to_start_.clear();
    std::vector<std::unique_ptr<Connection>> open;
    for (auto& [ep, connection] : connections_) {
      for (auto& [sequence, slot] : connection->slots) Orphan(std::move(slot));
      connection->slots.clear();
      open.push_back(std::move(connection));
    }
    connections_.clear();
    for (auto& connection : open) CloseEndpoint(std::move(connection));
    const absl::Time deadline = absl::Now() + kCloseTimeout;
    while (!closing_.empty() && absl::Now() < deadline) {
      worker_->Progress();
      ReapClosedConnections();
      if (!closing_.empty() && worker_->Arm()) {
        pollfd entry{worker_->event_fd(), POLLIN, 0};
        poll(&entry, 1, 10);
      }
    }
    for (auto& connection : closing_) ucp_request_free(connection->close_request);
    // Receives that end during the destruction below must find their slots alive.
    worker_.reset();
    closing_.clear();
    orphans_.clear();
    deliveries_.clear();
  }

  const UcxOptions options_;
  const FrameHandler handler_;
  std::unique_ptr<UcxWorker> worker_;
  ScopedFd listener_;  // our TCP port, where senders do the handshake
  ScopedFd wake_fd_;   // eventfd: the destructor wakes the thread through it
  std::string address_;
  std::atomic<bool> stop_{false};

  // Written by UCX's endpoint error callback, taken by the progress thread. UCX 1.13 calls it
  // there; the lock keeps this correct should a UCX version call it from its async thread.
  absl::Mutex events_mu_;
  std::vector<std::pair<ucp_ep_h, ucs_status_t>> failed_endpoints_ ABSL_GUARDED_BY(events_mu_);

  // Progress-thread state (and the destructor's, after the thread is joined).
  std::vector<std::unique_ptr<PendingHandshake>> handshakes_;
  std::unordered_map<ucp_ep_h, std::unique_ptr<Connection>> connections_;
  std::vector<std::unique_ptr<Connection>> closing_;  // endpoint close in flight
  std::vector<Slot*> to_start_;                        // rendezvous receives to start
  std::unordered_map<Slot*, std::unique_ptr<Slot>> orphans_;
  std::deque<absl::StatusOr<Frame>> deliveries_;  // ready for the handler, in order

  std::thread thread_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ActivationReceiver>> ListenUcx(const UcxOptions& options,
                                                              const std::string& listen_address,
                                                              FrameHandler handler) {
  VERDICT_ASSIGN_OR_RETURN(std::unique_ptr<UcxReceiver> receiver,
                           UcxReceiver::Listen(options, listen_address, std::move(handler)));
  return std::unique_ptr<ActivationReceiver>(std::move(receiver));
}

absl::StatusOr<std::unique_ptr<ActivationSender>> ConnectUcx(const UcxOptions& options, const std::string& address) {
  VERDICT_ASSIGN_OR_RETURN(std::unique_ptr<UcxSender> sender, UcxSender::Connect(options, address));
  return std::unique_ptr<ActivationSender>(std::move(sender));
}

namespace internal {

absl::Status SendRawMessageForTesting(ActivationSender& sender, absl::string_view am_header, absl::string_view data,
                                      bool stamp_sequence) {
  auto* ucx = dynamic_cast<UcxSender*>(&sender);
  if (ucx == nullptr) return absl::InvalidArgumentError("not a UCX sender");
  std::string header(am_header);
  if (stamp_sequence) {
    if (header.size() < kFramePrefixBytes) return absl::InvalidArgumentError("no frame prefix to stamp");
    const uint64_t sequence = ucx->TakeSequence();
    for (int i = 0; i < 8; ++i) header[8 + i] = static_cast<char>(sequence >> (8 * i) & 0xff);
  }
  return ucx->SendMessage(header, data);
}

std::string DescribeUcxEndpointForTesting(ActivationSender& sender) {
  auto* ucx = dynamic_cast<UcxSender*>(&sender);
  return ucx == nullptr ? "" : ucx->DescribeEndpoint();
}

}  // namespace internal
}  // namespace verdict::transport
