// SPDX-License-Identifier: Apache-2.0
// The security module against independent references: the `openssl` command (certificates it
// makes load here; certificates made here verify there), SHA-256 test vectors (FIPS 180-2) and
// hand-written key files.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "security/api_keys.h"
#include "security/dev_pki.h"
#include "security/file_reloader.h"
#include "security/reloading_tls.h"
#include "security/tls_material.h"

namespace verdict::security {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::verdict::testing::IsOk;
using ::verdict::testing::StatusIs;

MATCHER_P(Holds, value, "is OK and holds the value") { return arg.ok() && *arg == value; }

class SecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "verdict-security-test-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& data) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
    return path;
  }
  // Runs a shell command; its stdout, and its exit status in *rc.
  static std::string Run(const std::string& command, int* rc) {
    std::string out;
    FILE* p = popen((command + " 2>&1").c_str(), "r");
    char buf[4096];
    while (size_t n = fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
    *rc = pclose(p);
    return out;
  }
  PemPair Ca(const std::string& name = "test CA") {
    absl::StatusOr<PemPair> ca = MakeDevCa(name, absl::Hours(1));
    EXPECT_THAT(ca, IsOk());
    return *ca;
  }
  PemPair Leaf(const PemPair& ca, std::vector<std::string> dns = {"verdict-shard-0"}) {
    CertificateRequest r;
    r.common_name = "leaf";
    r.dns_names = std::move(dns);
    r.ip_addresses = {"127.0.0.1", "::1"};
    absl::StatusOr<PemPair> leaf = MakeDevCertificate(ca, r);
    EXPECT_THAT(leaf, IsOk());
    return *leaf;
  }

  fs::path dir_;
};

TEST_F(SecurityTest, DevCertificatesVerifyWithTheOpensslCommand) {
  const PemPair ca = Ca();
  const PemPair leaf = Leaf(ca);
  const std::string ca_file = Write("ca.pem", ca.cert_pem), cert_file = Write("leaf.pem", leaf.cert_pem);
  int rc = 0;
  std::string out = Run(absl::StrCat("openssl verify -CAfile ", ca_file, " ", cert_file), &rc);
  EXPECT_EQ(rc, 0) << out;
  out = Run(absl::StrCat("openssl verify -purpose sslserver -CAfile ", ca_file, " ", cert_file), &rc);
  EXPECT_EQ(rc, 0) << out;
  out = Run(absl::StrCat("openssl verify -purpose sslclient -CAfile ", ca_file, " ", cert_file), &rc);
  EXPECT_EQ(rc, 0) << out;
  out = Run(absl::StrCat("openssl x509 -noout -ext subjectAltName -serial -in ", cert_file), &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("DNS:verdict-shard-0"));
  EXPECT_THAT(out, HasSubstr("IP Address:127.0.0.1"));

  absl::StatusOr<TlsMaterial> m =
      LoadTlsMaterial({cert_file, Write("leaf.key", leaf.key_pem), ca_file}, /*verify_chain=*/true);
  ASSERT_THAT(m, IsOk());
  EXPECT_THAT(out, HasSubstr(absl::StrCat("serial=", m->serial_hex)));
  EXPECT_TRUE(HasIdentity(m->subject_alt_names, "verdict-shard-0"));
  EXPECT_FALSE(HasIdentity(m->subject_alt_names, "verdict-shard-1"));
  EXPECT_THAT(m->subject_alt_names, ::testing::Contains("IP:127.0.0.1"));
  EXPECT_THAT(m->subject_alt_names, ::testing::Contains("IP:0:0:0:0:0:0:0:1"));
  EXPECT_GT(m->not_after, absl::Now());
}

TEST_F(SecurityTest, LoadsCertificatesTheOpensslCommandMade) {
  int rc = 0;
  const std::string key = (dir_ / "o.key").string(), cert = (dir_ / "o.pem").string();
  const std::string out = Run(absl::StrCat("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other ",
                                           "-addext subjectAltName=DNS:api.example,URI:spiffe://verdict/coordinator ",
                                           "-keyout ", key, " -out ", cert),
                              &rc);
  ASSERT_EQ(rc, 0) << out;
  absl::StatusOr<TlsMaterial> m = LoadTlsMaterial({cert, key, cert}, /*verify_chain=*/true);
  ASSERT_THAT(m, IsOk());
  EXPECT_TRUE(HasIdentity(m->subject_alt_names, "api.example"));
  EXPECT_TRUE(HasIdentity(m->subject_alt_names, "spiffe://verdict/coordinator"));
  EXPECT_THAT(m->subject, HasSubstr("CN = other"));
}

TEST_F(SecurityTest, RefusesBrokenAndMismatchedFiles) {
  const PemPair ca = Ca(), other_ca = Ca("other CA");
  const PemPair a = Leaf(ca), b = Leaf(ca), stranger = Leaf(other_ca);
  const std::string ca_file = Write("ca.pem", ca.cert_pem);
  EXPECT_THAT(LoadTlsMaterial({Write("a.pem", a.cert_pem), Write("b.key", b.key_pem), ""}, true),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("does not belong to the certificate")));
  EXPECT_THAT(LoadTlsMaterial({Write("s.pem", stranger.cert_pem), Write("s.key", stranger.key_pem), ca_file}, true),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("does not verify against")));
  // Without chain verification (a server's identity with a client CA) the other CA's leaf loads.
  EXPECT_THAT(LoadTlsMaterial({Write("s.pem", stranger.cert_pem), Write("s.key", stranger.key_pem), ca_file}, false),
              IsOk());
  EXPECT_THAT(LoadTlsMaterial({Write("junk.pem", "not a certificate\n"), Write("a.key", a.key_pem), ""}, true),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no PEM certificate")));
  EXPECT_THAT(LoadTlsMaterial({Write("a.pem", a.cert_pem), Write("junk.key", "-----BEGIN PRIVATE KEY-----\nAAAA\n"), ""}, true),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no unencrypted PEM private key")));
  EXPECT_THAT(LoadTlsMaterial({(dir_ / "missing.pem").string(), Write("a.key", a.key_pem), ""}, true),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing.pem")));
  EXPECT_THAT(LoadTlsMaterial({Write("a.pem", a.cert_pem), "", ""}, true),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("without a key file")));
}

TEST_F(SecurityTest, ExpiredCertificateIsRefused) {
  const PemPair ca = Ca();
  CertificateRequest r;
  r.common_name = "old";
  r.validity = absl::Minutes(-30);  // valid from an hour ago until half an hour ago
  absl::StatusOr<PemPair> old = MakeDevCertificate(ca, r);
  ASSERT_THAT(old, IsOk());
  const std::string cert = Write("old.pem", old->cert_pem), ca_file = Write("ca.pem", ca.cert_pem);
  int rc = 0;
  const std::string out = Run(absl::StrCat("openssl verify -CAfile ", ca_file, " ", cert), &rc);
  EXPECT_NE(rc, 0);
  EXPECT_THAT(out, HasSubstr("expired"));  // the reference agrees it has expired
  EXPECT_THAT(LoadTlsMaterial({cert, Write("old.key", old->key_pem), ""}, true),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expired")));
}

TEST_F(SecurityTest, ReloadingTlsSwapsOnlyGoodFiles) {
  const PemPair ca = Ca();
  const PemPair first = Leaf(ca), second = Leaf(ca);
  const std::string cert = Write("m.pem", first.cert_pem), key = Write("m.key", first.key_pem),
                    ca_file = Write("ca.pem", ca.cert_pem);
  absl::StatusOr<std::unique_ptr<ReloadingTls>> tls = ReloadingTls::Create("member TLS", {cert, key, ca_file}, true);
  ASSERT_THAT(tls, IsOk());
  const std::string first_serial = (*tls)->current()->serial_hex;
  EXPECT_THAT((*tls)->Reload(), Holds(false));

  // A half-done rotation (new certificate, old key) is refused; the old pair stays.
  Write("m.pem", second.cert_pem);
  absl::StatusOr<bool> half = (*tls)->Reload();
  EXPECT_THAT(half, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("still using the old ones")));
  EXPECT_EQ((*tls)->current()->serial_hex, first_serial);

  Write("m.key", second.key_pem);
  EXPECT_THAT((*tls)->Reload(), Holds(true));
  EXPECT_NE((*tls)->current()->serial_hex, first_serial);
  EXPECT_EQ((*tls)->current()->cert_chain_pem, second.cert_pem);
  EXPECT_NE((*tls)->GrpcProvider(), nullptr);
}

TEST(ApiKeysTest, HashIsSha256) {
  // FIPS 180-2 test vectors.
  EXPECT_EQ(HashKeyHex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(HashKeyHex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(KeyFileLine("ops", "abc"), "ops sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  absl::StatusOr<std::string> a = GenerateKey(), b = GenerateKey();
  ASSERT_THAT(a, IsOk());
  EXPECT_TRUE(absl::StartsWith(*a, "vdk-"));
  EXPECT_GE(a->size(), 4u + 43u);
  EXPECT_NE(*a, *b);
}

TEST(ApiKeysTest, BearerToken) {
  EXPECT_EQ(BearerToken("Bearer abc"), "abc");
  EXPECT_EQ(BearerToken("bearer   abc  "), "abc");
  EXPECT_EQ(BearerToken("Basic abc"), "");
  EXPECT_EQ(BearerToken(""), "");
  EXPECT_EQ(BearerToken("Bearer"), "");
}

TEST(ApiKeysTest, ParsesAndAuthenticates) {
  const std::string text = absl::StrCat(
      "# comment line\n\n", KeyFileLine("alice", "key-a"), " policies=judge,lossy-prob max_sessions=2  # inline\n",
      KeyFileLine("bob", "key-b"), "\n");
  absl::StatusOr<std::vector<ApiKey>> keys = ParseKeyFile(text, "keys.txt");
  ASSERT_THAT(keys, IsOk());
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[0].name, "alice");
  ASSERT_TRUE((*keys)[0].allowed_policies.has_value());
  EXPECT_THAT(*(*keys)[0].allowed_policies, ::testing::ElementsAre(spec::Policy::kJudge, spec::Policy::kLossyProb));
  EXPECT_EQ((*keys)[0].max_sessions, 2);
  EXPECT_FALSE((*keys)[1].allowed_policies.has_value());
  EXPECT_EQ((*keys)[1].max_sessions, 0);

  KeyRing ring("API keys", *std::move(keys));
  absl::StatusOr<std::shared_ptr<const ApiKey>> who = ring.Authenticate("key-b");
  ASSERT_THAT(who, IsOk());
  EXPECT_EQ((*who)->name, "bob");
  EXPECT_THAT(ring.Authenticate("key-c"), StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("not valid")));
  EXPECT_THAT(ring.Authenticate(""), StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("Bearer")));
  EXPECT_THAT(ring.Authenticate("key-"), StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST(ApiKeysTest, RefusesMalformedFiles) {
  const std::string h = HashKeyHex("x");
  EXPECT_THAT(ParseKeyFile("alice\n", "k"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("k:1")));
  EXPECT_THAT(ParseKeyFile("alice my-plain-key\n", "k"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not the key")));
  EXPECT_THAT(ParseKeyFile(absl::StrCat("a sha256:", h, "\na sha256:", h, "\n"), "k"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("k:2: key name \"a\" appears twice")));
  EXPECT_THAT(ParseKeyFile(absl::StrCat("a sha256:", h, " policies=judge,bogus\n"), "k"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bogus")));
  EXPECT_THAT(ParseKeyFile(absl::StrCat("a sha256:", h, " max_sessions=0\n"), "k"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("positive")));
  EXPECT_THAT(ParseKeyFile(absl::StrCat("a sha256:", h, " colour=blue\n"), "k"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown option")));
  EXPECT_THAT(ParseKeyFile(absl::StrCat("a/b sha256:", h, "\n"), "k"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("key name")));
}

TEST_F(SecurityTest, KeyRingReloadRevokesAndKeepsOldKeysOnABrokenFile) {
  const std::string path = Write("keys", absl::StrCat(KeyFileLine("a", "ka"), "\n", KeyFileLine("b", "kb"), "\n"));
  absl::StatusOr<std::unique_ptr<KeyRing>> ring = KeyRing::Load("API keys", path);
  ASSERT_THAT(ring, IsOk());
  EXPECT_THAT((*ring)->Authenticate("kb"), IsOk());
  EXPECT_THAT((*ring)->Reload(), Holds(false));

  FileReloader reloader("test");
  KeyRing* r = ring->get();
  reloader.Add("API keys", [r] { return r->Reload(); });
  Write("keys", absl::StrCat(KeyFileLine("a", "ka"), "\n"));  // b revoked
  std::vector<FileReloader::Outcome> outcomes = reloader.ReloadAll();
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_THAT(outcomes[0].result, Holds(true));
  EXPECT_THAT((*ring)->Authenticate("kb"), StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT((*ring)->Authenticate("ka"), IsOk());

  Write("keys", "garbage line\n");
  outcomes = reloader.ReloadAll();
  EXPECT_THAT(outcomes[0].result, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("still using the old keys")));
  reloader.ReloadAll();  // the same refusal counts once
  EXPECT_EQ(reloader.refusals(), 1);
  EXPECT_EQ(reloader.changes(), 1);
  EXPECT_THAT((*ring)->Authenticate("ka"), IsOk());
  EXPECT_EQ((*ring)->size(), 1u);
}

}  // namespace
}  // namespace verdict::security
