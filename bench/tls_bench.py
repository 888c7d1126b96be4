#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""What security costs: two local clusters (`verdict up`, 2 target shards, activations over gRPC,
the same models and limits), one plaintext and one with TLS on the client API, mutual TLS with
identity checks between every member, and API keys, driven by the same client load (Python grpcio
stubs generated from proto/verdict/v1) in interleaved rounds so that both see the same machine.

Prints per cluster the median over rounds of: generated tokens per second, per-token latency
(request time / tokens, mean over requests), time to first token (p50) and request latency (p50,
p99); then secured / plaintext ratios.

Usage (after bash scripts/build.sh):
  .venv/bin/python bench/tls_bench.py [--rounds 5] [--requests 48] [--streams 8] [--policy exact|judge]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))
import arith_world  # noqa: E402
import local_cluster  # noqa: E402
from local_cluster import Cluster, write_config  # noqa: E402

import grpc  # noqa: E402


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def run_round(target, prompts, streams, policy, pb, pb_grpc, spec_pb):
    """`len(prompts)` requests from `streams` threads; returns per-request (seconds, ttft, tokens)."""
    channel = target["channel"]()
    stub = pb_grpc.VerdictStub(channel)
    results, lock, queue = [], threading.Lock(), list(prompts)

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                prompt = queue.pop()
            req = pb.GenerateRequest(prompt=prompt, max_tokens=96)
            if policy == "judge":
                req.speculation.policy = spec_pb.VERIFICATION_POLICY_JUDGE
            start, first, tokens = time.perf_counter(), None, 0
            for r in stub.Generate(req, metadata=target["metadata"], timeout=300):
                if r.HasField("chunk") and first is None:
                    first = time.perf_counter()
                if r.HasField("final"):
                    tokens = r.final.usage.completion_tokens
            with lock:
                results.append((time.perf_counter() - start, (first or time.perf_counter()) - start, tokens))

    threads = [threading.Thread(target=worker) for _ in range(streams)]
    wall = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - wall, results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(REPO, "build", "bin"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=48, help="requests per round and cluster")
    ap.add_argument("--streams", type=int, default=8, help="concurrent client streams")
    ap.add_argument("--policy", choices=("exact", "judge"), default="exact")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory()
    verdict = os.path.join(args.bin, "verdict")
    key = "bench-" + "k" * 40
    key_file = os.path.join(tmp.name, "keys")
    line = subprocess.run([verdict, "security", "hash-key", "--name", "bench"], input=key, capture_output=True,
                          text=True, check=True).stdout
    with open(key_file, "w") as f:
        f.write(line)
    certs = os.path.join(tmp.name, "certs")
    security = (f'client_tls {{ cert_file: "{certs}/server.pem" key_file: "{certs}/server.key" }} '
                f'member_tls {{ ca_file: "{certs}/ca.pem" cert_file: "{certs}/{{role}}.pem" '
                f'key_file: "{certs}/{{role}}.key" verify_identity: true }} api_keys_file: "{key_file}"')
    plain_dir, secure_dir = os.path.join(tmp.name, "plain"), os.path.join(tmp.name, "secure")
    os.makedirs(plain_dir)
    os.makedirs(secure_dir)
    plain_config, plain_addr = write_config(plain_dir, 2, "grpc", max_sessions=64)
    secure_config, secure_addr = write_config(secure_dir, 2, "grpc", max_sessions=64, security=security)
    subprocess.run([verdict, "security", "dev-certs", "--config", secure_config, "--out", certs], check=True,
                   capture_output=True)
    with open(os.path.join(certs, "ca.pem"), "rb") as f:
        ca = f.read()

    local_cluster.grpc_stubs()
    from verdict.v1 import generation_pb2 as pb, generation_pb2_grpc as pb_grpc  # noqa: E402
    from verdict.v1 import speculation_pb2 as spec_pb  # noqa: E402

    clusters = {}
    try:
        clusters["plaintext"] = Cluster(args.bin, plain_config)
        clusters["TLS+mTLS+keys"] = Cluster(args.bin, secure_config)
        targets = {
            "plaintext": {"channel": lambda: grpc.insecure_channel(plain_addr), "metadata": []},
            "TLS+mTLS+keys": {"channel": lambda: grpc.secure_channel(
                secure_addr, grpc.ssl_channel_credentials(root_certificates=ca)),
                "metadata": [("authorization", f"Bearer {key}")]},
        }
        problems = arith_world.unique_problems(seed=41, split="eval", count=args.requests)
        prompts = [arith_world.prompt(p) for p in problems]
        for name, target in targets.items():  # warm-up: connections, caches
            run_round(target, prompts[:8], 4, args.policy, pb, pb_grpc, spec_pb)
        figures = {name: {"tok_s": [], "per_token_ms": [], "ttft_ms": [], "p50_ms": [], "p99_ms": []}
                   for name in targets}
        for r in range(args.rounds):
            order = list(targets) if r % 2 == 0 else list(reversed(targets))
            for name in order:
                wall, results = run_round(targets[name], prompts, args.streams, args.policy, pb, pb_grpc, spec_pb)
                tokens = sum(t for _, _, t in results)
                f = figures[name]
                f["tok_s"].append(tokens / wall)
                f["per_token_ms"].append(1e3 * statistics.mean(s / max(t, 1) for s, _, t in results))
                f["ttft_ms"].append(1e3 * percentile([ft for _, ft, _ in results], 0.5))
                f["p50_ms"].append(1e3 * percentile([s for s, _, _ in results], 0.5))
                f["p99_ms"].append(1e3 * percentile([s for s, _, _ in results], 0.99))
        print(f"policy {args.policy}, {args.rounds} rounds x {args.requests} requests, {args.streams} streams, "
              "2 shards, activations over gRPC; medians over rounds")
        print(f"{'cluster':<16}{'tokens/s':>10}{'ms/token':>10}{'TTFT p50':>10}{'p50 ms':>10}{'p99 ms':>10}")
        med = {n: {k: statistics.median(v) for k, v in f.items()} for n, f in figures.items()}
        for name, m in med.items():
            print(f"{name:<16}{m['tok_s']:>10.1f}{m['per_token_ms']:>10.2f}{m['ttft_ms']:>10.1f}"
                  f"{m['p50_ms']:>10.1f}{m['p99_ms']:>10.1f}")
        a, b = med["plaintext"], med["TLS+mTLS+keys"]
        print(f"{'secured/plain':<16}{b['tok_s'] / a['tok_s']:>10.3f}{b['per_token_ms'] / a['per_token_ms']:>10.3f}"
              f"{b['ttft_ms'] / a['ttft_ms']:>10.3f}{b['p50_ms'] / a['p50_ms']:>10.3f}{b['p99_ms'] / a['p99_ms']:>10.3f}")
    finally:
        for c in clusters.values():
            c.stop()
        tmp.cleanup()


if __name__ == "__main__":
    main()
