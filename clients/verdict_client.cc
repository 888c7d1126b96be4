// SPDX-License-Identifier: Apache-2.0
#include "clients/verdict_client.h"

#include <chrono>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "clients/grpc/wire_convert.h"

namespace verdict::clients {
namespace {

void SetDeadline(grpc::ClientContext* context, absl::Duration d) {
  context->set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(d));
}

}  // namespace

VerdictClient::VerdictClient(const std::string& address)
    : VerdictClient(grpc::CreateChannel(address, grpc::InsecureChannelCredentials())) {}

VerdictClient::VerdictClient(std::shared_ptr<grpc::Channel> channel, std::string api_key)
    : channel_(std::move(channel)), stub_(v1::Verdict::NewStub(channel_)), api_key_(std::move(api_key)) {}

absl::StatusOr<std::unique_ptr<VerdictClient>> VerdictClient::Connect(const std::string& address,
                                                                      const ClientSecurity& security) {
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  grpc::ChannelArguments args;
  if (!security.tls_ca_file.empty()) {
    grpc::SslCredentialsOptions ssl;
    auto read = [](const std::string& path, std::string* out) -> absl::Status {
      std::ifstream in(path, std::ios::binary);
      if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
      std::ostringstream text;
      text << in.rdbuf();
      *out = text.str();
      return absl::OkStatus();
    };
    if (absl::Status s = read(security.tls_ca_file, &ssl.pem_root_certs); !s.ok()) return s;
    if (security.tls_cert_file.empty() != security.tls_key_file.empty()) {
      return absl::InvalidArgumentError("a client certificate needs both its certificate and key files");
    }
    if (!security.tls_cert_file.empty()) {
      if (absl::Status s = read(security.tls_cert_file, &ssl.pem_cert_chain); !s.ok()) return s;
      if (absl::Status s = read(security.tls_key_file, &ssl.pem_private_key); !s.ok()) return s;
    }
    credentials = grpc::SslCredentials(ssl);
    if (!security.server_name.empty()) args.SetSslTargetNameOverride(security.server_name);
  } else if (!security.tls_cert_file.empty()) {
    return absl::InvalidArgumentError("a client certificate needs TLS: give the CA file to verify the server with");
  }
  return std::make_unique<VerdictClient>(grpc::CreateCustomChannel(address, credentials, args), security.api_key);
}

void VerdictClient::Prepare(grpc::ClientContext* context) const {
  if (!api_key_.empty()) context->AddMetadata("authorization", absl::StrCat("Bearer ", api_key_));
}

absl::StatusOr<GenerateResult> VerdictClient::Generate(
    const v1::GenerateRequest& request, const std::function<void(const v1::GenerateResponse::Chunk&)>& on_chunk,
    absl::Duration deadline) {
  grpc::ClientContext context;
  Prepare(&context);
  SetDeadline(&context, deadline);
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader = stub_->Generate(&context, request);
  GenerateResult result;
  bool has_final = false;
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    if (response.has_chunk()) {
      result.text += response.chunk().text();
      result.token_ids.insert(result.token_ids.end(), response.chunk().token_ids().begin(),
                              response.chunk().token_ids().end());
      if (on_chunk) on_chunk(response.chunk());
    } else if (response.has_final()) {
      result.final = response.final();
      has_final = true;
    }
  }
  absl::Status status = wire::FromGrpc(reader->Finish());
  if (!status.ok()) return status;
  if (!has_final) return absl::InternalError("the stream ended without a final message");
  return result;
}

absl::StatusOr<std::vector<int32_t>> VerdictClient::Tokenize(const std::string& text, bool add_bos) {
  grpc::ClientContext context;
  Prepare(&context);
  SetDeadline(&context, absl::Seconds(30));
  v1::TokenizeRequest request;
  request.set_text(text);
  request.set_add_bos(add_bos);
  v1::TokenizeResponse response;
  absl::Status status = wire::FromGrpc(stub_->Tokenize(&context, request, &response));
  if (!status.ok()) return status;
  return std::vector<int32_t>(response.token_ids().begin(), response.token_ids().end());
}

absl::StatusOr<std::string> VerdictClient::Detokenize(const std::vector<int32_t>& ids) {
  grpc::ClientContext context;
  Prepare(&context);
  SetDeadline(&context, absl::Seconds(30));
  v1::DetokenizeRequest request;
  request.mutable_token_ids()->Assign(ids.begin(), ids.end());
  v1::DetokenizeResponse response;
  absl::Status status = wire::FromGrpc(stub_->Detokenize(&context, request, &response));
  if (!status.ok()) return status;
  return response.text();
}

absl::StatusOr<v1::ListModelsResponse> VerdictClient::ListModels() {
  grpc::ClientContext context;
  Prepare(&context);
  SetDeadline(&context, absl::Seconds(30));
  v1::ListModelsResponse response;
  absl::Status status = wire::FromGrpc(stub_->ListModels(&context, v1::ListModelsRequest(), &response));
  if (!status.ok()) return status;
  return response;
}

absl::Status VerdictClient::WaitForReady(absl::Duration timeout) {
  if (!channel_->WaitForConnected(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout))) {
    return absl::UnavailableError("the coordinator did not answer in time");
  }
  return absl::OkStatus();
}

}  // namespace verdict::clients
