// SPDX-License-Identifier: Apache-2.0
#include "security/tls_material.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "security/openssl_util.h"

namespace verdict::security {
namespace {

// Every certificate in a PEM bundle, in order; empty when none parses.
std::vector<X509Ptr> ReadCertificates(const std::string& pem) {
  std::vector<X509Ptr> certs;
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) certs.emplace_back(x);
  ERR_clear_error();  // the end of the bundle reads as an error
  return certs;
}

std::vector<std::string> AltNames(X509* cert) {
  std::vector<std::string> names;
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans == nullptr) return names;
  for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(sans, i);
    if (name->type == GEN_DNS || name->type == GEN_URI) {
      const ASN1_IA5STRING* s = name->type == GEN_DNS ? name->d.dNSName : name->d.uniformResourceIdentifier;
      names.push_back(absl::StrCat(name->type == GEN_DNS ? "DNS:" : "URI:",
                                   std::string(reinterpret_cast<const char*>(s->data), s->length)));
    } else if (name->type == GEN_IPADD) {
      char text[64] = {0};
      const ASN1_OCTET_STRING* ip = name->d.iPAddress;
      if (ip->length == 4) {
        std::snprintf(text, sizeof(text), "%d.%d.%d.%d", ip->data[0], ip->data[1], ip->data[2], ip->data[3]);
      } else {
        for (int b = 0; b + 1 < ip->length && b < 16; b += 2) {
          std::snprintf(text + std::strlen(text), sizeof(text) - std::strlen(text), "%s%x", b ? ":" : "",
                        (ip->data[b] << 8) | ip->data[b + 1]);
        }
      }
      names.push_back(absl::StrCat("IP:", text));
    }
  }
  GENERAL_NAMES_free(sans);
  return names;
}

absl::Status Invalid(const std::string& file, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(file, ": ", what, OpenSslErrors()));
}

}  // namespace

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

absl::StatusOr<TlsMaterial> LoadTlsMaterial(const TlsFiles& files, bool verify_chain) {
  TlsMaterial m;
  std::vector<X509Ptr> chain;
  if (files.has_identity()) {
    if (files.key_file.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(files.cert_file, ": a certificate without a key file"));
    }
    absl::StatusOr<std::string> cert = ReadFileToString(files.cert_file);
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadFileToString(files.key_file);
    if (!key.ok()) return key.status();
    m.cert_chain_pem = *std::move(cert);
    m.private_key_pem = *std::move(key);
    chain = ReadCertificates(m.cert_chain_pem);
    if (chain.empty()) return Invalid(files.cert_file, "no PEM certificate in the file");
    BioPtr key_bio(BIO_new_mem_buf(m.private_key_pem.data(), static_cast<int>(m.private_key_pem.size())));
    EvpKeyPtr pkey(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
    if (pkey == nullptr) return Invalid(files.key_file, "no unencrypted PEM private key in the file");
    if (X509_check_private_key(chain.front().get(), pkey.get()) != 1) {
      ERR_clear_error();
      return absl::InvalidArgumentError(
          absl::StrCat(files.key_file, ": the private key does not belong to the certificate in ", files.cert_file));
    }
    X509* leaf = chain.front().get();
    if (X509_cmp_current_time(X509_get0_notBefore(leaf)) > 0) {
      return absl::InvalidArgumentError(absl::StrCat(files.cert_file, ": the certificate is not valid yet"));
    }
    if (X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0) {
      return absl::InvalidArgumentError(absl::StrCat(files.cert_file, ": the certificate has expired"));
    }
    m.serial_hex = SerialHex(leaf);
    m.subject = SubjectLine(leaf);
    m.subject_alt_names = AltNames(leaf);
    m.not_after = AsnTime(X509_get0_notAfter(leaf));
  } else if (!files.key_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(files.key_file, ": a key file without a certificate file"));
  }
  if (!files.ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadFileToString(files.ca_file);
    if (!ca.ok()) return ca.status();
    m.ca_pem = *std::move(ca);
    std::vector<X509Ptr> anchors = ReadCertificates(m.ca_pem);
    if (anchors.empty()) return Invalid(files.ca_file, "no PEM certificate in the CA bundle");
    if (verify_chain && !chain.empty()) {
      X509StorePtr store(X509_STORE_new());
      for (const X509Ptr& a : anchors) X509_STORE_add_cert(store.get(), a.get());
      STACK_OF(X509)* intermediates = sk_X509_new_null();
      for (size_t i = 1; i < chain.size(); ++i) sk_X509_push(intermediates, chain[i].get());
      X509_STORE_CTX* ctx = X509_STORE_CTX_new();
      X509_STORE_CTX_init(ctx, store.get(), chain.front().get(), intermediates);
      const bool ok = X509_verify_cert(ctx) == 1;
      const int error = X509_STORE_CTX_get_error(ctx);
      X509_STORE_CTX_free(ctx);
      sk_X509_free(intermediates);
      ERR_clear_error();
      if (!ok) {
        return absl::InvalidArgumentError(absl::StrCat(files.cert_file, ": the certificate does not verify against ",
                                                       files.ca_file, ": ", X509_verify_cert_error_string(error)));
      }
    }
  }
  return m;
}

bool HasIdentity(const std::vector<std::string>& names, absl::string_view identity) {
  for (const std::string& n : names) {
    if (n == absl::StrCat("DNS:", identity) || n == absl::StrCat("URI:", identity)) return true;
  }
  return false;
}

}  // namespace verdict::security
