// SPDX-License-Identifier: Apache-2.0
// One TLS identity (certificate, key) and trust bundle that can change on disk while the process
// serves: Reload() re-reads the files and, when they changed and check out (LoadTlsMaterial), makes
// them current; a broken new file is refused and the old material stays in use.
//
// Both TLS stacks in the process follow the current material without a restart:
//  - gRPC through a FileWatcherCertificateProvider over a private mirror directory that Reload()
//    writes only after the new files checked out (gRPC's own watcher would load a half-written or
//    mismatched pair);
//  - OpenSSL servers (cpp-httplib) through a certificate callback that picks the current identity
//    and CA at every handshake.
// Existing connections keep the material they were made with; new ones get the new.
#ifndef VERDICT_SECURITY_RELOADING_TLS_H_
#define VERDICT_SECURITY_RELOADING_TLS_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "security/tls_material.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace grpc::experimental {
class CertificateProviderInterface;
}

namespace verdict::security {

class ReloadingTls {
 public:
  // Loads `files` (errors as LoadTlsMaterial's); `verify_chain` as there. `what` names the
  // material in log lines ("member TLS", "client TLS").
  static absl::StatusOr<std::unique_ptr<ReloadingTls>> Create(std::string what, TlsFiles files, bool verify_chain);
  ~ReloadingTls();  // removes the mirror directory

  // Re-reads the files. true: they changed and are now current; false: unchanged; an error: they
  // changed but do not load, and the old material stays current.
  absl::StatusOr<bool> Reload();

  std::shared_ptr<const TlsMaterial> current() const;
  const TlsFiles& files() const { return files_; }
  const std::string& what() const { return what_; }

  // A provider for gRPC credentials that follows Reload() within a second.
  std::shared_ptr<grpc::experimental::CertificateProviderInterface> GrpcProvider() const { return provider_; }

  // Sets up an OpenSSL server context to present the current identity at every handshake and, when
  // `require_client_certificate`, to require a client certificate that verifies against the
  // current CA bundle. false if the material lacks what that needs.
  bool ConfigureServerContext(SSL_CTX* ctx, bool require_client_certificate);

 private:
  struct Parsed;  // the current material as OpenSSL objects
  ReloadingTls(std::string what, TlsFiles files, bool verify_chain) :
      what_(std::move(what)), files_(std::move(files)), verify_chain_(verify_chain) {}
  absl::Status MakeCurrent(TlsMaterial material) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static int CertificateCallback(SSL* ssl, void* self);

  const std::string what_;
  const TlsFiles files_;
  const bool verify_chain_;
  std::string mirror_dir_;
  std::shared_ptr<grpc::experimental::CertificateProviderInterface> provider_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const TlsMaterial> current_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const Parsed> parsed_ ABSL_GUARDED_BY(mu_);
  int generation_ ABSL_GUARDED_BY(mu_) = 0;  // of the mirror directory
};

}  // namespace verdict::security

#endif  // VERDICT_SECURITY_RELOADING_TLS_H_
