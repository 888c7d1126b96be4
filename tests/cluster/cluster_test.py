#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Real multi-process clusters on 127.0.0.1 (`verdict up`: coordinator, draft worker and target
shards as separate processes) against single-process `verdict generate`, with the shipped
arithmetic-world models:

- greedy text through 2 and 3 shards, over UCX and over the gRPC fallback, equals the target alone
  (and judge decoding equals single-process judge decoding with the same window), for several
  prompts and windows;
- 32 concurrent streaming requests each equal their single-request output;
- killing the draft worker: streams still complete (target-only, flagged degraded); killing a shard:
  the affected requests fail with UNAVAILABLE naming the shard, and requests succeed again once
  `verdict up` has restarted it;
- bad input over the wire gets the right status code, and the cluster keeps serving.

Every process is started by the test and stopped by PID (process group); ports come from the OS.
Usage: cluster_test.py BUILD_BIN_DIR
"""
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools"))
import arith_world  # noqa: E402
from local_cluster import DRAFT, HEAD, TARGET, write_config  # noqa: E402
import local_cluster  # noqa: E402

BIN = None
PROMPTS = [arith_world.prompt(p) for p in arith_world.unique_problems(seed=23, split="eval", count=6)]


def client(addr, prompt, *args, timeout=120):
    r = subprocess.run([os.path.join(BIN, "verdict"), "client", "generate", "--addr", addr, "--prompt", prompt,
                        "--json", *args], capture_output=True, text=True, timeout=timeout)
    return r


def http_get(addr, path):
    try:
        with urllib.request.urlopen(f"http://{addr}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(text, name, labels=""):
    for line in text.splitlines():
        if line.startswith(name + labels + " ") or (not labels and line.startswith(name + " ")):
            return float(line.split()[-1])
    return None


def reference(prompt, *args):
    return local_cluster.generate_reference(BIN, prompt, *args, max_tokens=96)


def safetensors_parameters(path):
    """Elements of every tensor of a safetensors file, read from its header (the format's spec: an
    8-byte little-endian length, then a JSON table of dtype, shape and offsets)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    total = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        count = 1
        for d in entry["shape"]:
            count *= d
        total += count
    return total


def Cluster(bin_dir, config, extra=()):
    return local_cluster.Cluster(bin_dir, config, extra)


class ClusterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.greedy = {p: reference(p) for p in PROMPTS}
        cls.judge16 = {p: reference(p, "--draft", DRAFT, "--judge", HEAD, "--k", "16") for p in PROMPTS[:3]}

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def check_outputs(self, addr, what):
        for k in ("1", "4", "16"):
            for p in PROMPTS:
                r = client(addr, p, "--k", k)
                self.assertEqual(r.returncode, 0, r.stderr)
                out = json.loads(r.stdout)
                self.assertEqual(out["text"], self.greedy[p], f"{what}, k {k}, prompt {p!r}")
                self.assertEqual(out["finish_reason"], "FINISH_REASON_STOP")
                self.assertLess(out["target_passes"], out["completion_tokens"])
        for p, expected in self.judge16.items():
            r = client(addr, p, "--k", "16", "--policy", "judge")
            self.assertEqual(r.returncode, 0, r.stderr)
            out = json.loads(r.stdout)
            self.assertEqual(out["text"], expected, f"{what}, judge, prompt {p!r}")

    def test_distributed_equals_single_process(self):
        for shards, transport in ((2, "ucx"), (2, "grpc"), (3, "ucx"), (3, "grpc"), (2, "ucx-shm")):
            config, addr = write_config(self.tmp.name, shards, transport)
            cluster = Cluster(BIN, config)
            try:
                self.check_outputs(addr, f"{shards} shards over {transport}")
            finally:
                cluster.stop()

    def test_concurrency_faults_and_bad_input(self):
        # The coordinator opens only the tokenizer (here named on its own); the rest of the model's
        # facts come from the shards (checked against the checkpoint's files below).
        config, addr = write_config(self.tmp.name, 2, "ucx", tokenizer=os.path.join(TARGET, "tokenizer.json"))
        cluster = Cluster(BIN, config, ["--restart-delay", "3"])
        try:
            def rss_mb():
                total = 0
                for pattern in ("verdict-coordinator", "verdict-draft", "verdict-shard"):
                    out = subprocess.run(["pgrep", "-g", str(cluster.proc.pid), "-f", pattern],
                                         capture_output=True, text=True).stdout.split()
                    for pid in out:
                        with open(f"/proc/{pid}/status") as f:
                            total += int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
                return total / 1024

            # 32 concurrent streams, each equal to its solo output, with bounded memory.
            client(addr, PROMPTS[0])  # warm-up: first allocations
            rss_before = rss_mb()
            results = [None] * 32
            def run(i):
                results[i] = client(addr, PROMPTS[i % len(PROMPTS)], "--k", str(1 + i % 16))
            threads = [threading.Thread(target=run, args=(i,)) for i in range(32)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=300)
            for i, r in enumerate(results):
                self.assertIsNotNone(r)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(json.loads(r.stdout)["text"], self.greedy[PROMPTS[i % len(PROMPTS)]], f"stream {i}")
            rss_after = rss_mb()
            print(f"cluster RSS {rss_before:.0f} MB -> {rss_after:.0f} MB after 32 concurrent streams", file=sys.stderr)
            self.assertLess(rss_after - rss_before, 256, "memory grew too much for 32 small sessions")

            # Admin endpoints: health, readiness, Prometheus metrics, status JSON, dashboard.
            admin, shard_admin = write_config.admin, write_config.shard_admin
            self.assertEqual(http_get(admin, "/healthz")[0], 200)
            self.assertEqual(http_get(admin, "/readyz")[0], 200)
            code, text = http_get(admin, "/metrics")
            self.assertEqual(code, 200)
            self.assertGreaterEqual(metric(text, "verdict_requests_total"), 32)
            self.assertGreater(metric(text, "verdict_tokens_total"), 32 * 10)
            self.assertGreater(metric(text, "verdict_accepted_tokens_total", '{rule="exact"}'), 0)
            self.assertIn("verdict_accepted_per_pass_bucket", text)
            self.assertEqual(metric(text, "verdict_member_up", '{member="shard1"}'), 1)
            code, body = http_get(admin, "/v1/status")
            status = json.loads(body)
            self.assertEqual([m["healthy"] for m in status["members"]], [True] * 4)
            self.assertTrue(status["models"][0]["judge"])
            model = status["models"][0]
            with open(os.path.join(TARGET, "config.json")) as f:
                hf_config = json.load(f)
            self.assertEqual(int(model["parameters"]), safetensors_parameters(os.path.join(TARGET, "model.safetensors")))
            self.assertEqual(model["context_length"], hf_config["max_position_embeddings"])
            self.assertEqual(model["vocab_size"], hf_config["vocab_size"])
            shard_members = [m for m in status["members"] if m["role"].startswith("shard")]
            self.assertTrue(all(m["forward_ms_mean"] > 0 for m in shard_members), shard_members)
            self.assertEqual(status["sessions"], [])
            code, page = http_get(admin, "/dashboard")
            self.assertEqual(code, 200)
            self.assertIn("<canvas", page)
            # The dashboard in headless Chromium: the page loads, shows the cluster and updates.
            def dashboard_dom():
                r = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                    "--virtual-time-budget=3000", "--dump-dom", f"http://{admin}/dashboard"],
                                   capture_output=True, text=True, timeout=120)
                self.assertEqual(r.returncode, 0, r.stderr[-2000:])
                return r.stdout
            dom = dashboard_dom()
            self.assertIn('Verdict cluster "test"', dom)
            self.assertIn("shard 1", dom)
            self.assertIn(">up<", dom)
            self.assertIn("forward ms", dom)
            self.assertGreaterEqual(int(re.search(r'data-updates="(\d+)"', dom).group(1)), 2)  # it polls
            before = int(re.search(r"requests (\d+)", dom).group(1))
            self.assertEqual(client(addr, PROMPTS[0]).returncode, 0)
            after = int(re.search(r"requests (\d+)", dashboard_dom()).group(1))
            self.assertEqual(after, before + 1)

            code, text = http_get(shard_admin[1], "/metrics")
            self.assertGreater(metric(text, "verdict_shard_forward_passes_total", '{shard="1"}'), 0)
            # Greedy and judge verification so far: decided from the backend's logits summaries.
            self.assertEqual(metric(text, "verdict_shard_logits_rows_to_host_total", '{shard="1"}'), 0)
            code, text = http_get(shard_admin[0], "/metrics")
            self.assertGreater(metric(text, "verdict_transport_bytes_total", '{shard="0"}'), 0)

            # A request cancelled by its deadline releases every piece of its state.
            r = client(addr, PROMPTS[0], "--ignore-eos", "--max-tokens", "200", "--k", "1", "--timeout", "0.02")
            self.assertIn("DEADLINE_EXCEEDED", r.stderr)
            released = False
            for _ in range(100):
                st = json.loads(http_get(admin, "/v1/status")[1])
                shard_sessions = [metric(http_get(a, "/metrics")[1], "verdict_shard_sessions", f'{{shard="{i}"}}')
                                  for i, a in enumerate(shard_admin)]
                if st["sessions"] == [] and shard_sessions == [0, 0]:
                    released = True
                    break
                time.sleep(0.1)
            self.assertTrue(released, "the cancelled request's state was not released")

            # Sampling through the cluster (rejection sampling on the last shard): a fixed seed
            # repeats exactly.
            a = json.loads(client(addr, PROMPTS[4], "--temperature", "0.9", "--seed", "77", "--k", "6").stdout)
            b = json.loads(client(addr, PROMPTS[4], "--temperature", "0.9", "--seed", "77", "--k", "6").stdout)
            self.assertEqual(a["text"], b["text"])
            self.assertEqual(a["policy"], "sampled")
            # Rejection sampling is decided by the last shard's backend: no logits row reaches the
            # host (only the KL baseline needs them).
            code, text = http_get(shard_admin[1], "/metrics")
            self.assertEqual(metric(text, "verdict_shard_logits_rows_to_host_total", '{shard="1"}'), 0)

            # Bad input over the wire: clear codes, and the cluster keeps serving.
            cases = [
                (["--model", "nope"], "NOT_FOUND"),
                (["--k", "300"], "INVALID_ARGUMENT"),
                (["--temperature", "-1"], "INVALID_ARGUMENT"),
                (["--policy", "lossy-prob"], "PERMISSION_DENIED"),
                (["--max-tokens", "100000"], "INVALID_ARGUMENT"),
            ]
            for args, code in cases:
                r = client(addr, PROMPTS[0], *args)
                self.assertNotEqual(r.returncode, 0, args)
                self.assertIn(code, r.stderr, args)
            r = client(addr, "", timeout=60)
            self.assertIn("INVALID_ARGUMENT", r.stderr)
            r = client(addr, "Q: " + "Ann has 3 apples. " * 200 + "\nA:")
            self.assertIn("INVALID_ARGUMENT", r.stderr)
            self.assertIn("context", r.stderr)
            big = os.path.join(self.tmp.name, "big-prompt.txt")
            with open(big, "w") as f:
                f.write("Q: " + "x" * (5 << 20) + "\nA:")
            r = subprocess.run([os.path.join(BIN, "verdict"), "client", "generate", "--addr", addr, "--prompt-file", big,
                                "--json"], capture_output=True, text=True, timeout=120)
            self.assertIn("RESOURCE_EXHAUSTED", r.stderr)  # over the coordinator's 4 MiB message limit
            # A prompt that is not valid UTF-8 (bytes a client library would refuse to send; grpcio
            # with a raw serializer sends them): a clear INVALID_ARGUMENT, not gRPC's empty UNIMPLEMENTED.
            import grpc
            local_cluster.grpc_stubs()
            from verdict.v1 import generation_pb2 as pb
            good = pb.GenerateRequest(prompt="ab", max_tokens=2).SerializeToString()
            with grpc.insecure_channel(addr) as channel:
                generate = channel.unary_stream("/verdict.v1.Verdict/Generate", request_serializer=lambda b: b,
                                                response_deserializer=pb.GenerateResponse.FromString)
                for bad in (good.replace(b"ab", b"\xff\xfe"), b"\x12\xff\xff\xff\x0f"):
                    with self.assertRaises(grpc.RpcError) as e:
                        list(generate(bad, timeout=30))
                    self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
                    self.assertIn("UTF-8", e.exception.details())
                self.assertTrue(list(generate(good, timeout=60))[-1].HasField("final"))
            r = client(addr, PROMPTS[0])
            self.assertEqual(r.returncode, 0, r.stderr)

            # Garbage on the data path (shard 1's UCX port) and on a shard's gRPC port: refused,
            # nothing crashes, requests still give the same text.
            rng = random.Random(5)
            with open(cluster.config) as f:
                ports = [int(p) for p in re.findall(r'data_listen: "127.0.0.1:(\d+)"', f.read())]
                f.seek(0)
                grpc_ports = [int(p) for p in re.findall(r'shards \{ listen: "127.0.0.1:(\d+)"', f.read())]
            for port in (ports[1], grpc_ports[1]):
                for size in (16, 4096, 1 << 16):
                    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                        try:
                            sock.sendall(bytes(rng.getrandbits(8) for _ in range(size)))
                        except OSError:
                            pass  # the peer may close first
            r = client(addr, PROMPTS[3])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(json.loads(r.stdout)["text"], self.greedy[PROMPTS[3]])

            # The draft worker dies: requests still complete, target-only, flagged degraded, with the
            # same greedy text; once `verdict up` has restarted it, speculation resumes.
            pid = cluster.member_pid("verdict-draft")
            self.assertIsNotNone(pid)
            os.kill(pid, signal.SIGKILL)
            for p in PROMPTS[:3]:
                r = client(addr, p, "--k", "8")
                self.assertEqual(r.returncode, 0, r.stderr)
                out = json.loads(r.stdout)
                self.assertEqual(out["text"], self.greedy[p])
                self.assertTrue(out["degraded"], out)
                self.assertEqual(out["target_only_passes"], out["target_passes"])
            resumed = False
            for _ in range(60):
                time.sleep(0.5)
                out = json.loads(client(addr, PROMPTS[1], "--k", "8").stdout)
                self.assertEqual(out["text"], self.greedy[PROMPTS[1]])
                if not out["degraded"] and out["draft_tokens_proposed"] > 0:
                    resumed = True
                    break
            self.assertTrue(resumed, "speculation did not resume after the draft worker came back")

            # A target shard dies: requests fail with UNAVAILABLE naming it; once `verdict up` has
            # restarted it, requests succeed again.
            pid = cluster.member_pid("verdict-shard --config .* --shard 1")
            self.assertIsNotNone(pid)
            os.kill(pid, signal.SIGKILL)
            r = client(addr, PROMPTS[2])
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("UNAVAILABLE", r.stderr)
            self.assertIn("target shard 1", r.stderr)
            ok_again = False
            for _ in range(60):
                time.sleep(0.5)
                r = client(addr, PROMPTS[2])
                if r.returncode == 0:
                    self.assertEqual(json.loads(r.stdout)["text"], self.greedy[PROMPTS[2]])
                    ok_again = True
                    break
                self.assertIn("UNAVAILABLE", r.stderr)
            self.assertTrue(ok_again, "requests did not succeed after the shard restarted")
        finally:
            cluster.stop()


if __name__ == "__main__":
    BIN = sys.argv.pop(1)
    unittest.main(verbosity=2)
