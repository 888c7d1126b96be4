// SPDX-License-Identifier: Apache-2.0
#include "security/dev_pki.h"

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "security/openssl_util.h"

namespace verdict::security {
namespace {

absl::Status Failed(absl::string_view what) {
  return absl::InternalError(absl::StrCat("cannot ", what, OpenSslErrors()));
}

std::string ToPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

std::string ToPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

absl::Status AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) return Failed(absl::StrCat("make the extension ", OBJ_nid2sn(nid), "=", value));
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return absl::OkStatus();
}

// A certificate with a random serial, `subject_cn`, valid from an hour ago (clock skew) for
// `validity`, for `key`; extensions and signature are the caller's.
absl::StatusOr<X509Ptr> NewCertificate(const std::string& subject_cn, EVP_PKEY* key, absl::Duration validity) {
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);  // v3
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof(serial)) != 1) return Failed("draw a serial number");
  serial[0] &= 0x7f;  // positive
  BIGNUM* bn = BN_bin2bn(serial, sizeof(serial), nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(absl::ToInt64Seconds(validity)));
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("Verdict development"),
                             -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(subject_cn.c_str()),
                             -1, -1, 0);
  X509_set_pubkey(cert.get(), key);
  return cert;
}

absl::StatusOr<EvpKeyPtr> NewKey() {
  EvpKeyPtr key(EVP_EC_gen("P-256"));
  if (key == nullptr) return Failed("generate an EC P-256 key");
  return key;
}

absl::StatusOr<EvpKeyPtr> ReadKey(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  EvpKeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) return absl::InvalidArgumentError(absl::StrCat("the CA key does not parse", OpenSslErrors()));
  return key;
}

absl::StatusOr<X509Ptr> ReadCert(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (cert == nullptr) return absl::InvalidArgumentError(absl::StrCat("the CA certificate does not parse", OpenSslErrors()));
  return cert;
}

}  // namespace

absl::StatusOr<PemPair> MakeDevCa(const std::string& common_name, absl::Duration validity) {
  absl::StatusOr<EvpKeyPtr> key = NewKey();
  if (!key.ok()) return key.status();
  absl::StatusOr<X509Ptr> cert = NewCertificate(common_name, key->get(), validity);
  if (!cert.ok()) return cert.status();
  X509* c = cert->get();
  X509_set_issuer_name(c, X509_get_subject_name(c));
  for (auto [nid, value] : {std::pair{NID_basic_constraints, "critical,CA:TRUE"},
                            std::pair{NID_key_usage, "critical,keyCertSign,cRLSign"},
                            std::pair{NID_subject_key_identifier, "hash"}}) {
    if (absl::Status s = AddExtension(c, c, nid, value); !s.ok()) return s;
  }
  if (X509_sign(c, key->get(), EVP_sha256()) == 0) return Failed("sign the CA certificate");
  return PemPair{ToPem(c), ToPem(key->get())};
}

absl::StatusOr<PemPair> MakeDevCertificate(const PemPair& ca, const CertificateRequest& request) {
  absl::StatusOr<X509Ptr> ca_cert = ReadCert(ca.cert_pem);
  if (!ca_cert.ok()) return ca_cert.status();
  absl::StatusOr<EvpKeyPtr> ca_key = ReadKey(ca.key_pem);
  if (!ca_key.ok()) return ca_key.status();
  absl::StatusOr<EvpKeyPtr> key = NewKey();
  if (!key.ok()) return key.status();
  absl::StatusOr<X509Ptr> cert = NewCertificate(request.common_name, key->get(), request.validity);
  if (!cert.ok()) return cert.status();
  X509* c = cert->get();
  X509_set_issuer_name(c, X509_get_subject_name(ca_cert->get()));
  std::vector<std::string> alt;
  for (const std::string& d : request.dns_names) alt.push_back(absl::StrCat("DNS:", d));
  for (const std::string& ip : request.ip_addresses) alt.push_back(absl::StrCat("IP:", ip));
  for (const std::string& u : request.uris) alt.push_back(absl::StrCat("URI:", u));
  std::vector<std::pair<int, std::string>> extensions = {
      {NID_basic_constraints, "critical,CA:FALSE"},
      {NID_key_usage, "critical,digitalSignature,keyAgreement"},
      {NID_ext_key_usage, "serverAuth,clientAuth"},
      {NID_subject_key_identifier, "hash"},
      {NID_authority_key_identifier, "keyid:always"}};
  if (!alt.empty()) extensions.emplace_back(NID_subject_alt_name, absl::StrJoin(alt, ","));
  for (const auto& [nid, value] : extensions) {
    if (absl::Status s = AddExtension(c, ca_cert->get(), nid, value); !s.ok()) return s;
  }
  if (X509_sign(c, ca_key->get(), EVP_sha256()) == 0) return Failed("sign the certificate");
  return PemPair{ToPem(c), ToPem(key->get())};
}

}  // namespace verdict::security
