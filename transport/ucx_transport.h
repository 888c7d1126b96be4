// SPDX-License-Identifier: Apache-2.0
// Activation frames between target-shard processes over UCX (ucp). A receiver listens on a TCP
// address and accepts any number of senders; each frame is one UCP active message, framed with a
// magic, version, per-connection sequence number and lengths (wire_format.h). Only this module
// includes UCX headers.
//
// Connection set-up. A sender opens a TCP connection to the receiver's address and the two
// exchange UCP worker addresses in a small handshake (wire_format.h); then each side creates a
// UCP endpoint to the other, which UCX pairs into one connection, and the TCP socket is closed.
// Why not UCX's own sockaddr listener (ucp_listener_create + ucp_ep_create by sockaddr): in UCX
// 1.13.1 its tcp connection manager aborts the whole process on a short header followed by more
// bytes than it announced (tcp_sockcm_ep.c:825, e.g. any run of zero bytes), so stray bytes on the
// port would kill the receiver. Our handshake refuses anything without the right magic, version,
// bounded length and checksum before UCX sees it. (A deliberately forged hello still reaches UCX's
// address parser; the port is meant for the cluster network only.)
//
// Why active messages (not tagged or stream messages): an active message keeps message boundaries
// (a malformed message costs that message only, unlike a byte stream, which would have to be
// dropped whole), arrives at a worker-wide callback without pre-posted receives (a receiver does
// not know its senders in advance; tags would need probe + receive per sender), names the
// endpoint it came from (reply_ep, so per-sender state and disconnects are easy to pair), and
// moves large data by rendezvous straight into the receiver's buffer. UCP does not promise that
// active messages arrive in order, so each frame carries a per-connection sequence number and the
// receiver delivers in sequence order (a rendezvous frame that is still arriving holds back the
// small frames sent after it).
//
// Shared memory and peer failure. A receiver must survive senders that die, so by default both
// ends use UCP_ERR_HANDLING_MODE_PEER. UCX 1.13 then selects only transports that can detect a
// dead peer: tcp (and RDMA in a cluster), never posix/sysv/cma, whatever `tls` lists; a list
// such as "posix,sysv,cma,tcp" therefore runs over tcp. Setting peer_failure_detection = false
// (on BOTH ends: the endpoints must agree) lets UCX use shared memory between processes on one
// host (sysv/posix for messages, cma for rendezvous; list tcp too, so peers on other hosts and
// UCX's wire-up still have a transport), for processes that live and die together (e.g. one Slurm
// step). Without detection UCX does not notice a dead peer by itself: a sender to a dead receiver
// fails only by send_timeout (kUnavailable), and the receiver keeps a departed sender's connection
// until it is destroyed (it counts toward max_connections). A frame cut off by a dying sender is
// still reported (kUnavailable) when reading its data from the dead process fails, as UCX 1.13's
// cma does; the receiver survives either way (ucx_transport_multiproc_test).
//
// With detection, a sender that closes or dies is noticed by the receiver through UCX's error
// callback on its endpoint (within milliseconds on loopback), which frees the connection and turns
// a frame cut off mid-way into kUnavailable.
//
// Thread-safety: a receiver runs one progress thread of its own, which calls the handler; the
// receiver's methods may be called from any thread. A sender is thread-compatible (one thread
// sends at a time) and makes progress only inside Send; it has no thread of its own.
#ifndef VERDICT_TRANSPORT_UCX_TRANSPORT_H_
#define VERDICT_TRANSPORT_UCX_TRANSPORT_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "transport/activation_transport.h"

namespace verdict::transport {

struct UcxOptions {
  // UCX_TLS-style transport list, e.g. "tcp" or "posix,sysv,cma,tcp"; empty = the UCX_TLS
  // environment variable or UCX's default. See the file comment for how it interacts with
  // peer_failure_detection.
  std::string tls;
  // UCX_NET_DEVICES-style device list, e.g. "lo"; empty = the environment or UCX's default (all).
  std::string net_devices;
  // UCP_ERR_HANDLING_MODE_PEER when true (required to survive dead peers; excludes shared memory),
  // UCP_ERR_HANDLING_MODE_NONE when false. Both ends of a connection must use the same value.
  bool peer_failure_detection = true;
  // Frames larger than this (header + payload) are refused: by a sender with kInvalidArgument,
  // by a receiver with kDataLoss to its handler. At most kMaxFrameBytes.
  uint64_t max_frame_bytes = kMaxFrameBytes;
  // ConnectUcx waits this long for the connection to be established.
  absl::Duration connect_timeout = absl::Seconds(10);
  // Send waits this long for one frame to leave; past it the connection is torn down and this and
  // every later Send return kUnavailable.
  absl::Duration send_timeout = absl::Seconds(60);
  // Connections a receiver accepts at once; further connection requests are rejected.
  int max_connections = 256;
};

// Starts a receiver listening on `listen_address` ("host:port", IPv4; port 0 picks a free port,
// see ActivationReceiver::address()). Connections on the port that do not complete the handshake
// within 10 s, or send anything else, are closed and never reach the handler. `handler` runs on the receiver's progress thread with every
// frame, in Send order per sender, or with kDataLoss (a malformed message: bad magic or version,
// lengths that do not add up, over max_frame_bytes; reported at once, outside the order, when the
// sequence number cannot be trusted) or kUnavailable (a sender disconnected while a frame was
// still arriving). A sender that disconnects between frames produces no call.
// Errors: kInvalidArgument (bad address or options), kUnavailable (UCX could not start or the
// address cannot be listened on, e.g. the port is taken). Nothing is left running on error.
absl::StatusOr<std::unique_ptr<ActivationReceiver>> ListenUcx(const UcxOptions& options,
                                                              const std::string& listen_address,
                                                              FrameHandler handler);

// Connects a sender to a receiver at `address` ("host:port", IPv4) and waits until the
// connection is usable. Errors: kInvalidArgument (bad address or options), kUnavailable (nothing
// listens there, it is not a UCX activation receiver, it rejected us at max_connections, or no
// connection within connect_timeout; the message names the address).
absl::StatusOr<std::unique_ptr<ActivationSender>> ConnectUcx(const UcxOptions& options,
                                                             const std::string& address);

namespace internal {

// Test-only: sends one active message with `am_header` and `data` exactly as given (no framing, no
// validation) on `sender`, which must come from ConnectUcx, with the frame AM id. When
// `stamp_sequence` is true, `am_header` must hold a full frame prefix and its sequence field is
// overwritten with the sender's next sequence number (which is then used up), so a malformed
// message can take its place in the sender's order. Errors as Send.
absl::Status SendRawMessageForTesting(ActivationSender& sender, absl::string_view am_header, absl::string_view data,
                                      bool stamp_sequence);

// Test-only: UCX's description of the sender's endpoint (lanes and transports in use), as printed
// by ucp_ep_print_info. Empty if the sender is not a UCX sender or is closed.
std::string DescribeUcxEndpointForTesting(ActivationSender& sender);

}  // namespace internal
}  // namespace verdict::transport

#endif  // VERDICT_TRANSPORT_UCX_TRANSPORT_H_
