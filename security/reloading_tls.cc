// SPDX-License-Identifier: Apache-2.0
#include "security/reloading_tls.h"

#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "security/openssl_util.h"

namespace verdict::security {

namespace fs = std::filesystem;

struct ReloadingTls::Parsed {
  X509Ptr leaf;
  std::vector<X509Ptr> intermediates;
  EvpKeyPtr key;
  X509StorePtr ca;  // null without a CA bundle
};

namespace {

// gRPC's file watcher re-reads the mirror every second (its minimum).
constexpr unsigned kGrpcRefreshSeconds = 1;

absl::Status WriteFile(const fs::path& path, const std::string& data, fs::perms perms) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path.string()));
  std::error_code ec;
  fs::permissions(path, perms, ec);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ReloadingTls>> ReloadingTls::Create(std::string what, TlsFiles files,
                                                                   bool verify_chain) {
  absl::StatusOr<TlsMaterial> material = LoadTlsMaterial(files, verify_chain);
  if (!material.ok()) return absl::Status(material.status().code(), absl::StrCat(what, ": ", material.status().message()));
  std::unique_ptr<ReloadingTls> tls(new ReloadingTls(std::move(what), std::move(files), verify_chain));
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/verdict-tls-XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("cannot create a directory like ", pattern));
  }
  tls->mirror_dir_ = pattern;
  {
    absl::MutexLock lock(&tls->mu_);
    if (absl::Status s = tls->MakeCurrent(*std::move(material)); !s.ok()) return s;
  }
  const fs::path current = fs::path(tls->mirror_dir_) / "current";
  const std::string key = (current / "key.pem").string(), cert = (current / "cert.pem").string(),
                    ca = (current / "ca.pem").string();
  const bool identity = tls->files_.has_identity(), roots = !tls->files_.ca_file.empty();
  if (identity && roots) {
    tls->provider_ = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(key, cert, ca,
                                                                                        kGrpcRefreshSeconds);
  } else if (identity) {
    tls->provider_ = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(key, cert,
                                                                                        kGrpcRefreshSeconds);
  } else if (roots) {
    tls->provider_ = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(ca, kGrpcRefreshSeconds);
  }
  return tls;
}

ReloadingTls::~ReloadingTls() {
  provider_.reset();
  std::error_code ec;
  if (!mirror_dir_.empty()) fs::remove_all(mirror_dir_, ec);
}

// Writes the checked files into a fresh generation directory and points the "current" link at it in
// one rename, so gRPC's watcher never sees a key of one generation with a certificate of another.
absl::Status ReloadingTls::MakeCurrent(TlsMaterial material) {
  auto parsed = std::make_shared<Parsed>();
  if (!material.cert_chain_pem.empty()) {
    BioPtr certs(BIO_new_mem_buf(material.cert_chain_pem.data(), static_cast<int>(material.cert_chain_pem.size())));
    parsed->leaf.reset(PEM_read_bio_X509(certs.get(), nullptr, nullptr, nullptr));
    while (X509* x = PEM_read_bio_X509(certs.get(), nullptr, nullptr, nullptr)) parsed->intermediates.emplace_back(x);
    BioPtr key(BIO_new_mem_buf(material.private_key_pem.data(), static_cast<int>(material.private_key_pem.size())));
    parsed->key.reset(PEM_read_bio_PrivateKey(key.get(), nullptr, nullptr, nullptr));
  }
  if (!material.ca_pem.empty()) {
    parsed->ca.reset(X509_STORE_new());
    BioPtr bundle(BIO_new_mem_buf(material.ca_pem.data(), static_cast<int>(material.ca_pem.size())));
    while (X509* x = PEM_read_bio_X509(bundle.get(), nullptr, nullptr, nullptr)) {
      X509_STORE_add_cert(parsed->ca.get(), x);
      X509_free(x);
    }
  }
  ERR_clear_error();

  const int gen = ++generation_;
  const fs::path dir = fs::path(mirror_dir_) / absl::StrCat("gen-", gen);
  std::error_code ec;
  fs::create_directory(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir.string(), ": ", ec.message()));
  fs::permissions(dir, fs::perms::owner_all, ec);
  const fs::perms private_file = fs::perms::owner_read | fs::perms::owner_write;
  if (!material.cert_chain_pem.empty()) {
    if (absl::Status s = WriteFile(dir / "key.pem", material.private_key_pem, private_file); !s.ok()) return s;
    if (absl::Status s = WriteFile(dir / "cert.pem", material.cert_chain_pem, private_file); !s.ok()) return s;
  }
  if (!material.ca_pem.empty()) {
    if (absl::Status s = WriteFile(dir / "ca.pem", material.ca_pem, private_file); !s.ok()) return s;
  }
  const fs::path link = fs::path(mirror_dir_) / "current", staged = fs::path(mirror_dir_) / "current.new";
  fs::remove(staged, ec);
  fs::create_directory_symlink(dir.filename(), staged, ec);
  if (!ec) fs::rename(staged, link, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot switch ", link.string(), ": ", ec.message()));
  // Keep the previous generation for a reader that resolved the link just before the switch.
  if (gen > 2) fs::remove_all(fs::path(mirror_dir_) / absl::StrCat("gen-", gen - 2), ec);

  current_ = std::make_shared<const TlsMaterial>(std::move(material));
  parsed_ = std::move(parsed);
  return absl::OkStatus();
}

absl::StatusOr<bool> ReloadingTls::Reload() {
  absl::StatusOr<TlsMaterial> material = LoadTlsMaterial(files_, verify_chain_);
  absl::MutexLock lock(&mu_);
  if (!material.ok()) {
    return absl::Status(material.status().code(),
                        absl::StrCat(what_, ": refused the changed files, still using the old ones: ",
                                     material.status().message()));
  }
  if (material->cert_chain_pem == current_->cert_chain_pem && material->private_key_pem == current_->private_key_pem &&
      material->ca_pem == current_->ca_pem) {
    return false;
  }
  if (absl::Status s = MakeCurrent(*std::move(material)); !s.ok()) return s;
  return true;
}

std::shared_ptr<const TlsMaterial> ReloadingTls::current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

int ReloadingTls::CertificateCallback(SSL* ssl, void* arg) {
  auto* self = static_cast<ReloadingTls*>(arg);
  std::shared_ptr<const Parsed> p;
  {
    absl::MutexLock lock(&self->mu_);
    p = self->parsed_;
  }
  if (p->leaf == nullptr || p->key == nullptr) return 0;
  if (SSL_use_certificate(ssl, p->leaf.get()) != 1 || SSL_use_PrivateKey(ssl, p->key.get()) != 1) return 0;
  SSL_clear_chain_certs(ssl);
  for (const X509Ptr& x : p->intermediates) SSL_add1_chain_cert(ssl, x.get());
  if (p->ca != nullptr) SSL_set1_verify_cert_store(ssl, p->ca.get());
  return 1;
}

bool ReloadingTls::ConfigureServerContext(SSL_CTX* ctx, bool require_client_certificate) {
  if (!files_.has_identity()) return false;
  if (require_client_certificate && files_.ca_file.empty()) return false;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_cert_cb(ctx, &ReloadingTls::CertificateCallback, this);
  if (require_client_certificate) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  return true;
}

}  // namespace verdict::security
