#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A secured local cluster (`verdict up`, 2 shards, activations over mutual-TLS gRPC) driven by
clients nobody here wrote: Python `grpcio` stubs generated from proto/verdict/v1 with TLS
credentials, the `openai` package over HTTPS, `openssl s_client` and `urllib`.

Certificates come from `verdict security dev-certs` (a development CA; a second CA made by the
`openssl` command plays the stranger), API keys from `verdict security hash-key`.

- TLS everywhere: plaintext to the gRPC API, the HTTP API or an admin port is refused; grpcio with
  the CA and a key, and the openai client with a key, get the single-process greedy text;
- members: a caller with a certificate from another CA is refused by a shard, and so is a caller
  from the right CA whose certificate names a role that may not call it (identity checks);
- API keys: none or a wrong one -> UNAUTHENTICATED / 401; a valid key asking for a policy its key
  may not use -> PERMISSION_DENIED / 403; a key at its session limit -> RESOURCE_EXHAUSTED;
- admin tokens: /metrics and /v1/status need one (401 without), /healthz and /readyz do not;
- rotation without restart: a key removed from the key file stops working; a broken key file is
  refused and the old keys keep working; the server certificate is replaced while 16 streams run:
  every stream completes with the right text and new connections present the new serial;
- live judge reload through the coordinator's admin endpoint while 32 judge streams run (twice);
  each stream's text equals single-process judge decoding with the head it reports; a head for
  another target and a missing file are refused and the old head keeps serving;
- client certificates (a second cluster with client_ca_file): the gRPC API and the admin port refuse
  a client without one and serve grpcio, urllib and `verdict client` with one.

Every process is started by the test and stopped by PID (process group); ports come from the OS.
Usage: security_test.py BUILD_BIN_DIR
"""
import concurrent.futures
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools"))
import arith_world  # noqa: E402
import local_cluster  # noqa: E402
from local_cluster import HEAD, write_config  # noqa: E402

import grpc  # noqa: E402
import openai  # noqa: E402

BIN = None
PROMPTS = [arith_world.prompt(p) for p in arith_world.unique_problems(seed=31, split="eval", count=3)]
MAX_TOKENS = 96
RELOAD_SECONDS = 1


def load_stubs():
    """grpcio stubs generated from proto/verdict/v1, as module globals (once)."""
    global pb, pb_grpc, shard_pb, shard_grpc, spec_pb
    if "pb" in globals():
        return
    local_cluster.grpc_stubs()
    from verdict.v1 import generation_pb2 as pb, generation_pb2_grpc as pb_grpc  # noqa: E402
    from verdict.v1 import target_shard_pb2 as shard_pb, target_shard_pb2_grpc as shard_grpc  # noqa: E402
    from verdict.v1 import speculation_pb2 as spec_pb  # noqa: E402


def verdict(*args, stdin=None):
    r = subprocess.run([os.path.join(BIN, "verdict"), *args], input=stdin, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def serial_of(pem_path):
    out = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", pem_path], capture_output=True,
                         text=True, check=True).stdout
    return out.strip().split("=", 1)[1].upper()


def presented_serial(addr, alpn=None):
    """The serial of the certificate a TLS server presents to a new connection (openssl s_client)."""
    host, port = addr.rsplit(":", 1)
    args = ["openssl", "s_client", "-connect", f"{host}:{port}", "-servername", "localhost"]
    if alpn:
        args += ["-alpn", alpn]
    # Bytes: after the handshake a gRPC server sends HTTP/2 frames, which s_client prints as they are.
    hello = subprocess.run(args, input=b"", capture_output=True, timeout=20)
    cert = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=hello.stdout, capture_output=True,
                          timeout=20)
    out = cert.stdout.decode(errors="replace")
    return out.strip().split("=", 1)[1].upper() if "=" in out else None


def replace_file(path, data):
    """Writes `data` to `path` in one rename (how operators and Kubernetes swap files)."""
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(data)
    os.replace(tmp, path)


def wait_for(predicate, what, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting until {what}")


class SecurityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        d = cls.certs = os.path.join(cls.tmp.name, "certs")
        cls.greedy = {p: local_cluster.generate_reference(BIN, p, max_tokens=MAX_TOKENS) for p in PROMPTS}
        cls.keys = {"alice": "alice-" + "a" * 40, "bob": "bob-" + "b" * 40, "carol": "carol-" + "c" * 40}
        cls.key_file = os.path.join(cls.tmp.name, "api-keys")
        lines = [verdict("security", "hash-key", "--name", "alice", stdin=cls.keys["alice"]).strip() +
                 " policies=exact max_sessions=1",
                 verdict("security", "hash-key", "--name", "bob", stdin=cls.keys["bob"]).strip(),
                 verdict("security", "hash-key", "--name", "carol", stdin=cls.keys["carol"]).strip()]
        cls.key_lines = lines
        with open(cls.key_file, "w") as f:
            f.write("# the test's keys\n" + "\n".join(lines) + "\n")
        cls.admin_token = "admin-" + "z" * 40
        token_file = os.path.join(cls.tmp.name, "admin-tokens")
        with open(token_file, "w") as f:
            f.write(verdict("security", "hash-key", "--name", "ops", stdin=cls.admin_token))
        security = (
            f'client_tls {{ cert_file: "{d}/server.pem" key_file: "{d}/server.key" ca_file: "{d}/ca.pem" }} '
            f'member_tls {{ ca_file: "{d}/ca.pem" cert_file: "{d}/{{role}}.pem" key_file: "{d}/{{role}}.key" '
            'verify_identity: true } '
            f'api_keys_file: "{cls.key_file}" admin_tokens_file: "{token_file}" reload_seconds: {RELOAD_SECONDS}')
        config, cls.grpc_addr = write_config(cls.tmp.name, 2, "grpc", http=True, max_sessions=32,
                                             security=security)
        cls.http, cls.admin, cls.shard_admins = write_config.http, write_config.admin, write_config.shard_admin
        cls.config = config
        with open(config) as f:
            cls.shard_addrs = [line.split('listen: "')[1].split('"')[0] for line in f if line.startswith("shards")]
        verdict("security", "dev-certs", "--config", config, "--out", d, "--days", "2")
        cls.ca = os.path.join(d, "ca.pem")
        os.environ["VERDICT_ADMIN_TOKEN"] = cls.admin_token  # the coordinator reads the shards' latencies
        cls.cluster = local_cluster.Cluster(BIN, config)
        load_stubs()

    @classmethod
    def tearDownClass(cls):
        cls.cluster.stop()
        cls.tmp.cleanup()

    # ---- helpers ----------------------------------------------------------------------------

    def tls_channel(self):
        with open(self.ca, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        return grpc.secure_channel(self.grpc_addr, creds)

    def generate(self, prompt, key, channel=None, policy=None, timeout=120):
        channel = channel or self.tls_channel()
        stub = pb_grpc.VerdictStub(channel)
        req = pb.GenerateRequest(prompt=prompt, max_tokens=MAX_TOKENS)
        if policy is not None:
            req.speculation.policy = policy
        metadata = [("authorization", f"Bearer {key}")] if key else []
        text = "".join(r.chunk.text for r in stub.Generate(req, metadata=metadata, timeout=timeout)
                       if r.HasField("chunk"))
        return text

    def admin_get(self, addr, path, token=None):
        ctx = ssl.create_default_context(cafile=self.ca)
        req = urllib.request.Request(f"https://{addr}{path}")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metric(self, name):
        status, text = self.admin_get(self.admin, "/metrics", self.admin_token)
        self.assertEqual(status, 200)
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return None

    def openai_client(self, key):
        return openai.OpenAI(base_url=f"https://{self.http}/v1", api_key=key, max_retries=0, timeout=120,
                             http_client=openai.DefaultHttpxClient(verify=ssl.create_default_context(cafile=self.ca)))

    # ---- tests ------------------------------------------------------------------------------

    def test_1_tls_clients_get_the_single_process_text(self):
        for p in PROMPTS:
            self.assertEqual(self.generate(p, self.keys["bob"]), self.greedy[p], p)
        c = self.openai_client(self.keys["carol"]).completions.create(
            model="arith-target", prompt=PROMPTS[0], max_tokens=MAX_TOKENS, temperature=0)
        self.assertEqual(c.choices[0].text, self.greedy[PROMPTS[0]])
        models = self.openai_client(self.keys["carol"]).models.list()
        self.assertEqual([m.id for m in models.data], ["arith-target"])
        # Our own client too: --tls-ca and the key from the environment.
        client = [os.path.join(BIN, "verdict"), "client", "generate", "--addr", self.grpc_addr, "--tls-ca", self.ca,
                  "--prompt", PROMPTS[1], "--max-tokens", str(MAX_TOKENS), "--quiet"]
        r = subprocess.run(client, capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, VERDICT_API_KEY=self.keys["bob"]))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.rstrip("\n"), PROMPTS[1] + self.greedy[PROMPTS[1]])
        r = subprocess.run(client, capture_output=True, text=True, timeout=60,
                           env={k: v for k, v in os.environ.items() if k != "VERDICT_API_KEY"})
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("API key", r.stderr)

    def test_2_plaintext_is_refused(self):
        with self.assertRaises(grpc.RpcError) as e:
            self.generate(PROMPTS[0], self.keys["bob"], channel=grpc.insecure_channel(self.grpc_addr), timeout=10)
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)
        for addr in (self.http, self.admin, self.shard_admins[0]):
            with self.assertRaises((urllib.error.URLError, ConnectionError, http_client_errors())):
                urllib.request.urlopen(f"http://{addr}/healthz", timeout=10).read()
        # A TLS client that does not trust the server's CA is refused too.
        with self.assertRaises(grpc.RpcError) as e:
            self.generate(PROMPTS[0], self.keys["bob"],
                          channel=grpc.secure_channel(self.grpc_addr, grpc.ssl_channel_credentials()), timeout=10)
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)

    def test_3_api_keys(self):
        for key in (None, "not-a-key"):
            with self.assertRaises(grpc.RpcError) as e:
                self.generate(PROMPTS[0], key)
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
            self.assertIn("key", e.exception.details())
        # HTTP: no Authorization header at all (urllib), and a wrong key (the openai client).
        ctx = ssl.create_default_context(cafile=self.ca)
        body = json.dumps({"model": "arith-target", "prompt": PROMPTS[0], "max_tokens": 4}).encode()
        req = urllib.request.Request(f"https://{self.http}/v1/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        with self.assertRaises(urllib.error.HTTPError) as h:
            urllib.request.urlopen(req, timeout=30, context=ctx)
        self.assertEqual(h.exception.code, 401)
        self.assertEqual(json.loads(h.exception.read())["error"]["code"], "invalid_api_key")
        with self.assertRaises(openai.AuthenticationError) as a:
            self.openai_client("not-a-key").completions.create(model="arith-target", prompt=PROMPTS[0], max_tokens=4)
        self.assertEqual(a.exception.status_code, 401)
        with self.assertRaises(grpc.RpcError) as e:
            pb_grpc.VerdictStub(self.tls_channel()).ListModels(pb.ListModelsRequest(), timeout=10)
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        # alice may use the exact policy only; the server allows judge to others.
        judge = spec_pb.VERIFICATION_POLICY_JUDGE
        with self.assertRaises(grpc.RpcError) as e:
            self.generate(PROMPTS[0], self.keys["alice"], policy=judge)
        self.assertEqual(e.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        self.assertIn("alice", e.exception.details())
        with self.assertRaises(openai.PermissionDeniedError) as h:
            self.openai_client(self.keys["alice"]).completions.create(
                model="arith-target", prompt=PROMPTS[0], max_tokens=4, extra_body={"verdict": {"policy": "judge"}})
        self.assertEqual(h.exception.status_code, 403)
        self.assertGreater(len(self.generate(PROMPTS[0], self.keys["bob"], policy=judge)), 0)
        self.assertEqual(self.generate(PROMPTS[0], self.keys["alice"]), self.greedy[PROMPTS[0]])
        self.assertGreaterEqual(self.metric("verdict_auth_failures_total"), 2)

    def test_4_key_session_limit(self):
        # Freeze the last shard so alice's first generation holds her only session.
        pid = self.cluster.member_pid("verdict-shard.*--shard 1")
        os.kill(pid, signal.SIGSTOP)
        try:
            stub = pb_grpc.VerdictStub(self.tls_channel())
            first = stub.Generate(pb.GenerateRequest(prompt=PROMPTS[0], max_tokens=MAX_TOKENS),
                                  metadata=[("authorization", f"Bearer {self.keys['alice']}")], timeout=60)
            wait_for(lambda: self.admin_get(self.admin, "/metrics", self.admin_token)[1].find(
                'verdict_key_sessions{key="alice"} 1') >= 0, "alice holds a session")
            with self.assertRaises(grpc.RpcError) as e:
                self.generate(PROMPTS[1], self.keys["alice"], timeout=10)
            self.assertEqual(e.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertIn("alice", e.exception.details())
            first.cancel()
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for(lambda: self.admin_get(self.admin, "/metrics", self.admin_token)[1].find(
            'verdict_key_sessions{key="alice"} 0') >= 0, "alice's session is released")
        self.assertEqual(self.generate(PROMPTS[1], self.keys["alice"]), self.greedy[PROMPTS[1]])

    def test_5_admin_tokens(self):
        for addr in [self.admin] + self.shard_admins:
            self.assertEqual(self.admin_get(addr, "/healthz")[0], 200)
            self.assertEqual(self.admin_get(addr, "/readyz")[0], 200)
            self.assertEqual(self.admin_get(addr, "/metrics")[0], 401)
            self.assertEqual(self.admin_get(addr, "/metrics", self.keys["bob"])[0], 401)  # an API key is not a token
            self.assertEqual(self.admin_get(addr, "/metrics", self.admin_token)[0], 200)
        status, body = self.admin_get(self.admin, "/v1/status")
        self.assertEqual(status, 401)
        status, body = self.admin_get(self.admin, "/v1/status", self.admin_token)
        self.assertEqual(status, 200)
        shard = json.loads(body)["members"][-1]
        self.assertGreater(shard["forward_ms_mean"], 0)  # the coordinator read it over HTTPS with its token

    def test_6_members_check_each_other(self):
        d = self.certs
        with open(self.ca, "rb") as f:
            ca = f.read()

        def describe(cert, key, shard):
            with open(cert, "rb") as c, open(key, "rb") as k:
                creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=k.read(),
                                                     certificate_chain=c.read())
            channel = grpc.secure_channel(self.shard_addrs[shard], creds,
                                          options=[("grpc.ssl_target_name_override", f"verdict-shard-{shard}")])
            return shard_grpc.TargetShardStub(channel).Describe(shard_pb.DescribeShardRequest(), timeout=10)

        # The coordinator's identity may call every shard; shard 0's may call shard 1.
        self.assertEqual(describe(f"{d}/coordinator.pem", f"{d}/coordinator.key", 1).shard_index, 1)
        self.assertEqual(describe(f"{d}/shard-0.pem", f"{d}/shard-0.key", 1).shard_index, 1)
        # The draft's identity may call no shard; shard 1's may not call shard 0.
        for cert, shard in (("draft", 0), ("draft", 1), ("shard-1", 0)):
            with self.assertRaises(grpc.RpcError) as e:
                describe(f"{d}/{cert}.pem", f"{d}/{cert}.key", shard)
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE, (cert, shard))
        # No client certificate at all, and one from a CA the cluster does not trust.
        with self.assertRaises(grpc.RpcError):
            channel = grpc.secure_channel(self.shard_addrs[0], grpc.ssl_channel_credentials(root_certificates=ca),
                                          options=[("grpc.ssl_target_name_override", "verdict-shard-0")])
            shard_grpc.TargetShardStub(channel).Describe(shard_pb.DescribeShardRequest(), timeout=10)
        other = os.path.join(self.tmp.name, "other")
        os.makedirs(other, exist_ok=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-days", "2", "-subj", "/CN=verdict-coordinator",
                        "-addext", "subjectAltName=DNS:verdict-coordinator",
                        "-keyout", f"{other}/c.key", "-out", f"{other}/c.pem"], check=True, capture_output=True)
        with self.assertRaises(grpc.RpcError) as e:
            describe(f"{other}/c.pem", f"{other}/c.key", 0)
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)
        # The cluster still serves.
        self.assertEqual(self.generate(PROMPTS[2], self.keys["bob"]), self.greedy[PROMPTS[2]])

    def test_7_key_file_changes_without_restart(self):
        self.assertEqual(self.generate(PROMPTS[0], self.keys["carol"]), self.greedy[PROMPTS[0]])
        refused_before = self.metric("verdict_credential_reloads_refused_total")
        replace_file(self.key_file, "\n".join(self.key_lines[:2]) + "\n")  # carol revoked

        def carol_refused():
            try:
                self.generate(PROMPTS[0], self.keys["carol"], timeout=30)
                return False
            except grpc.RpcError as e:
                return e.code() == grpc.StatusCode.UNAUTHENTICATED
        wait_for(carol_refused, "carol's key is revoked")
        with self.assertRaises(openai.AuthenticationError):
            self.openai_client(self.keys["carol"]).completions.create(model="arith-target", prompt=PROMPTS[0],
                                                                      max_tokens=4)
        # A broken file is refused: the keys in use stay.
        replace_file(self.key_file, "bob my-plain-key-not-a-hash\n")
        wait_for(lambda: self.metric("verdict_credential_reloads_refused_total") > refused_before,
                 "the broken key file is refused")
        self.assertEqual(self.generate(PROMPTS[1], self.keys["bob"]), self.greedy[PROMPTS[1]])
        replace_file(self.key_file, "\n".join(self.key_lines) + "\n")
        wait_for(lambda: not carol_refused(), "carol's key is back")

    def test_8_certificate_rotation_under_load(self):
        server_pem = os.path.join(self.certs, "server.pem")
        old_serial = serial_of(server_pem)
        self.assertEqual(presented_serial(self.grpc_addr, alpn="h2"), old_serial)
        self.assertEqual(presented_serial(self.admin), old_serial)
        # A new server certificate from the same CA (dev-certs into another directory would make a
        # new CA; sign with this one through openssl instead).
        new = os.path.join(self.tmp.name, "rotated")
        os.makedirs(new, exist_ok=True)
        subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-subj", "/CN=rotated", "-keyout", f"{new}/server.key", "-out", f"{new}/server.csr"],
                       check=True, capture_output=True)
        with open(f"{new}/ext", "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth,clientAuth\n")
        subprocess.run(["openssl", "x509", "-req", "-in", f"{new}/server.csr", "-CA", self.ca,
                        "-CAkey", os.path.join(self.certs, "ca.key"), "-CAcreateserial", "-days", "2",
                        "-extfile", f"{new}/ext", "-out", f"{new}/server.pem"], check=True, capture_output=True)
        new_serial = serial_of(f"{new}/server.pem")
        self.assertNotEqual(new_serial, old_serial)

        prompts = [PROMPTS[i % len(PROMPTS)] for i in range(16)]
        channel = self.tls_channel()
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(self.generate, p, self.keys["bob"], channel) for p in prompts]
            with open(f"{new}/server.key") as k, open(f"{new}/server.pem") as c:
                key, cert = k.read(), c.read()
            # Key first, then certificate: the pair in between is refused, the old one kept.
            replace_file(os.path.join(self.certs, "server.key"), key)
            replace_file(server_pem, cert)
            texts = [f.result(timeout=300) for f in futures]
        for p, t in zip(prompts, texts):
            self.assertEqual(t, self.greedy[p])
        wait_for(lambda: presented_serial(self.grpc_addr, alpn="h2") == new_serial,
                 "the gRPC API presents the new certificate")
        wait_for(lambda: presented_serial(self.admin) == new_serial, "the admin endpoint presents the new certificate")
        wait_for(lambda: presented_serial(self.http) == new_serial, "the HTTP API presents the new certificate")
        self.assertEqual(self.generate(PROMPTS[0], self.keys["bob"]), self.greedy[PROMPTS[0]])
        self.assertGreaterEqual(self.metric("verdict_credential_reloads_total"), 1)


    def post_admin(self, path, body, token=None):
        ctx = ssl.create_default_context(cafile=self.ca)
        req = urllib.request.Request(f"https://{self.admin}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=120, context=ctx) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            body = e.read()
            return e.code, json.loads(body) if e.headers.get_content_type() == "application/json" else body

    def judge_stream(self, prompt, channel):
        """A judge-decoding generation: (text, the judge head its statistics name)."""
        stub = pb_grpc.VerdictStub(channel)
        req = pb.GenerateRequest(prompt=prompt, max_tokens=MAX_TOKENS)
        req.speculation.policy = spec_pb.VERIFICATION_POLICY_JUDGE
        text, head = "", None
        for r in stub.Generate(req, metadata=[("authorization", f"Bearer {self.keys['bob']}")], timeout=300):
            if r.HasField("chunk"):
                text += r.chunk.text
            else:
                head = r.final.stats.judge_head
        return text, head

    def test_9_judge_reload_under_load(self):
        # Head B: the shipped head with another threshold in its file (another hash); head X: the
        # shipped head claiming another target.
        from safetensors.numpy import load_file, save_file
        from safetensors import safe_open
        with safe_open(HEAD, "np") as f:
            meta = dict(f.metadata())
        tensors = load_file(HEAD)
        head_b, head_x = os.path.join(self.tmp.name, "head-b.safetensors"), os.path.join(self.tmp.name, "head-x.safetensors")
        save_file(tensors, head_b, metadata=dict(meta, threshold="0.9"))
        save_file(tensors, head_x, metadata=dict(meta, target_fingerprint="llama-v1:0000000000000000"))
        base = ["--draft", local_cluster.DRAFT, "--k", "8"]
        refs = {}  # head id -> {prompt: single-process judge text}

        def reference(head_id, *args):
            refs[head_id] = {p: local_cluster.generate_reference(BIN, p, *base, *args, max_tokens=MAX_TOKENS)
                             for p in PROMPTS}

        status, body = self.admin_get(self.admin, "/v1/status", self.admin_token)
        head_a = json.loads(body)["models"][0]["judge_head"]
        self.assertRegex(head_a, r"^[0-9a-f]{16}@0\.449")
        reference(head_a, "--judge", HEAD)

        # Only with the admin token; a bad file and a head of another target are refused.
        self.assertEqual(self.post_admin("/v1/admin/judge", {"path": head_b})[0], 401)
        self.assertEqual(self.post_admin("/v1/admin/judge", {"path": head_b}, self.keys["bob"])[0], 401)
        code, answer = self.post_admin("/v1/admin/judge", {"path": head_x}, self.admin_token)
        self.assertEqual(code, 409, answer)
        self.assertIn("target", answer["error"])
        code, answer = self.post_admin("/v1/admin/judge", {"path": "/nonexistent/head.safetensors"}, self.admin_token)
        self.assertIn(code, (400, 404), answer)
        self.assertEqual(self.judge_stream(PROMPTS[0], self.tls_channel()), (refs[head_a][PROMPTS[0]], head_a))

        channel = self.tls_channel()
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            before = [pool.submit(self.judge_stream, PROMPTS[i % 3], channel) for i in range(16)]
            code, info = self.post_admin("/v1/admin/judge", {"path": head_b}, self.admin_token)
            self.assertEqual(code, 200, info)
            head_b_id = info["id"]
            self.assertRegex(head_b_id, r"^[0-9a-f]{16}@0\.9$")
            after_b = [pool.submit(self.judge_stream, PROMPTS[i % 3], channel) for i in range(16)]
            done_before = [f.result(timeout=300) for f in before]
            code, info = self.post_admin("/v1/admin/judge", {"path": HEAD, "threshold": 0.7}, self.admin_token)
            self.assertEqual(code, 200, info)
            head_c_id = info["id"]
            self.assertEqual(head_c_id.split("@")[0], head_a.split("@")[0])  # same file, new threshold
            after_c = [pool.submit(self.judge_stream, PROMPTS[i % 3], channel) for i in range(16)]
            done_b = [f.result(timeout=300) for f in after_b]
            done_c = [f.result(timeout=300) for f in after_c]
        reference(head_b_id, "--judge", head_b)
        reference(head_c_id, "--judge", HEAD, "--judge-threshold", "0.7")
        prompts = [PROMPTS[i % 3] for i in range(16)]
        for p, (text, head) in zip(prompts, done_before):
            self.assertIn(head, (head_a, head_b_id))  # opened before or after the swap
            self.assertEqual(text, refs[head][p], (p, head))
        for p, (text, head) in zip(prompts, done_b):
            self.assertEqual(head, head_b_id)  # started after the swap returned
            self.assertEqual(text, refs[head][p], p)
        for p, (text, head) in zip(prompts, done_c):
            self.assertEqual(head, head_c_id)
            self.assertEqual(text, refs[head][p], p)
        # The head in use is what /v1/status and the last shard's metrics say.
        status, body = self.admin_get(self.admin, "/v1/status", self.admin_token)
        self.assertEqual(json.loads(body)["models"][0]["judge_head"], head_c_id)
        status, metrics = self.admin_get(self.shard_admins[-1], "/metrics", self.admin_token)
        self.assertIn(f'verdict_judge_head_info{{id="{head_c_id}"', metrics)
        self.assertIn("verdict_judge_reloads_total 2", metrics)


class ClientCertificateTest(unittest.TestCase):
    """client_tls.client_ca_file: every client-facing port asks for a client certificate from that CA."""

    def test_client_certificates_are_required(self):
        load_stubs()
        with tempfile.TemporaryDirectory() as tmp:
            d = os.path.join(tmp, "certs")
            security = (f'client_tls {{ cert_file: "{d}/server.pem" key_file: "{d}/server.key" '
                        f'client_ca_file: "{d}/ca.pem" ca_file: "{d}/ca.pem" }}')
            config, addr = write_config(tmp, 2, "grpc", security=security)
            admin = write_config.admin
            verdict("security", "dev-certs", "--config", config, "--out", d, "--days", "2")
            cluster = local_cluster.Cluster(BIN, config)
            try:
                with open(f"{d}/ca.pem", "rb") as ca, open(f"{d}/client.pem", "rb") as c, \
                        open(f"{d}/client.key", "rb") as k:
                    ca, cert, key = ca.read(), c.read(), k.read()
                prompt = PROMPTS[0]
                expected = local_cluster.generate_reference(BIN, prompt, max_tokens=MAX_TOKENS)
                req = pb.GenerateRequest(prompt=prompt, max_tokens=MAX_TOKENS)
                without = grpc.secure_channel(addr, grpc.ssl_channel_credentials(root_certificates=ca))
                with self.assertRaises(grpc.RpcError) as e:
                    list(pb_grpc.VerdictStub(without).Generate(req, timeout=10))
                self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)
                with_cert = grpc.secure_channel(addr, grpc.ssl_channel_credentials(
                    root_certificates=ca, private_key=key, certificate_chain=cert))
                text = "".join(r.chunk.text for r in pb_grpc.VerdictStub(with_cert).Generate(req, timeout=60)
                               if r.HasField("chunk"))
                self.assertEqual(text, expected)
                ctx = ssl.create_default_context(cafile=f"{d}/ca.pem")
                with self.assertRaises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
                    urllib.request.urlopen(f"https://{admin}/healthz", timeout=10, context=ctx).read()
                ctx.load_cert_chain(f"{d}/client.pem", f"{d}/client.key")
                with urllib.request.urlopen(f"https://{admin}/healthz", timeout=10, context=ctx) as r:
                    self.assertEqual(r.status, 200)
                r = subprocess.run([os.path.join(BIN, "verdict"), "client", "generate", "--addr", addr,
                                    "--tls-ca", f"{d}/ca.pem", "--tls-cert", f"{d}/client.pem",
                                    "--tls-key", f"{d}/client.key", "--prompt", prompt,
                                    "--max-tokens", str(MAX_TOKENS), "--quiet"],
                                   capture_output=True, text=True, timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stdout.rstrip("\n"), prompt + expected)
            finally:
                cluster.stop()


def http_client_errors():
    import http.client
    return http.client.HTTPException


if __name__ == "__main__":
    BIN = sys.argv.pop(1)
    unittest.main(verbosity=2)
