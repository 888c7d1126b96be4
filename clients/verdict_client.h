// SPDX-License-Identifier: Apache-2.0
// The C++ client library applications link to talk to a Verdict coordinator (verdict.v1.Verdict):
// blocking calls, streaming text through a callback. Thread-safe (one channel, calls in parallel).
//
//   verdict::clients::VerdictClient client("127.0.0.1:50051");
//   v1::GenerateRequest request;
//   request.set_prompt("Q: ...\nA:");
//   auto result = client.Generate(request, [](const auto& chunk) { std::cout << chunk.text(); });
#ifndef VERDICT_CLIENTS_VERDICT_CLIENT_H_
#define VERDICT_CLIENTS_VERDICT_CLIENT_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "verdict/v1/generation.grpc.pb.h"

namespace verdict::clients {

struct GenerateResult {
  std::string text;                  // all streamed text
  std::vector<int32_t> token_ids;    // with return_token_ids
  v1::GenerateResponse::Final final;  // finish reason, usage, speculation statistics
};

// How to reach a coordinator that serves TLS or wants API keys (all empty: plaintext, no key).
struct ClientSecurity {
  std::string tls_ca_file;    // PEM bundle to verify the server with; set: TLS
  std::string tls_cert_file;  // client certificate and key, for servers that ask for one
  std::string tls_key_file;
  std::string server_name;    // the name to verify the server's certificate for (default: the host)
  std::string api_key;        // sent as "authorization: Bearer KEY"
};

class VerdictClient {
 public:
  explicit VerdictClient(const std::string& address);
  explicit VerdictClient(std::shared_ptr<grpc::Channel> channel, std::string api_key = "");
  // A client with `security`; kNotFound / kInvalidArgument when its files do not load.
  static absl::StatusOr<std::unique_ptr<VerdictClient>> Connect(const std::string& address,
                                                                const ClientSecurity& security);

  // Streams the generation; `on_chunk` (optional) sees each chunk as it arrives. The error is the
  // server's status (INVALID_ARGUMENT, PERMISSION_DENIED, UNAVAILABLE naming a shard, ...), or
  // DEADLINE_EXCEEDED after `deadline`.
  absl::StatusOr<GenerateResult> Generate(const v1::GenerateRequest& request,
                                          const std::function<void(const v1::GenerateResponse::Chunk&)>& on_chunk = {},
                                          absl::Duration deadline = absl::Minutes(10));
  absl::StatusOr<std::vector<int32_t>> Tokenize(const std::string& text, bool add_bos = true);
  absl::StatusOr<std::string> Detokenize(const std::vector<int32_t>& ids);
  absl::StatusOr<v1::ListModelsResponse> ListModels();
  // Waits until the channel connects (kUnavailable after `timeout`).
  absl::Status WaitForReady(absl::Duration timeout);

 private:
  void Prepare(grpc::ClientContext* context) const;  // adds the API key

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Verdict::Stub> stub_;
  std::string api_key_;
};

}  // namespace verdict::clients

#endif  // VERDICT_CLIENTS_VERDICT_CLIENT_H_
