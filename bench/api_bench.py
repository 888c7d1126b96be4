#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The client APIs under load: the same local cluster (`verdict up`, 2 target shards, the
arithmetic-world models, session limit 256) streamed through its OpenAI-compatible HTTP API and
through its gRPC API (Python stubs generated from proto/verdict/v1 with grpcio-tools), with clients
nobody here wrote.

Prints, per API:
- N concurrent streaming requests (default 256): wall time, whether every text equals the target's
  greedy output, and time to first token (TTFT) and inter-chunk latency (a chunk is the text one
  target pass commits) at p50 and p99;
- sequential requests one at a time: mean request time, and the HTTP path's overhead per generated
  token in microseconds ((HTTP - gRPC) / tokens).

Usage (after bash scripts/build.sh):  .venv/bin/python bench/api_bench.py [--streams 256] [--sequential 40]
"""
import argparse
import http.client
import json
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

MAX_TOKENS = 96


def percentile(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def http_stream(addr, prompt, window):
    """(text, ttft seconds, inter-chunk gaps, total seconds) of one streamed completion."""
    body = json.dumps({"prompt": prompt, "max_tokens": MAX_TOKENS, "temperature": 0, "stream": True,
                       "verdict": {"draft_window": window}})
    start = time.perf_counter()
    conn = http.client.HTTPConnection(*addr.split(":"), timeout=600)
    conn.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    text, first, gaps, last = "", None, [], None
    buffer = b""
    while True:
        line = resp.readline()
        if not line:
            break
        buffer += line
        if line != b"\n":
            continue
        event, buffer = buffer.decode().strip(), b""
        if event == "data: [DONE]":
            break
        chunk = json.loads(event[len("data: "):])
        piece = "".join(c.get("text", "") for c in chunk.get("choices", []))
        if piece:
            now = time.perf_counter()
            if first is None:
                first = now - start
            else:
                gaps.append(now - last)
            last = now
            text += piece
    conn.close()
    return text, first, gaps, time.perf_counter() - start


def grpc_stream(stub, pb, prompt, window):
    request = pb.GenerateRequest(prompt=prompt, max_tokens=MAX_TOKENS)
    request.sampling.temperature = 0
    request.speculation.draft_window = window
    start = time.perf_counter()
    text, first, gaps, last = "", None, [], None
    for response in stub.Generate(request, timeout=600):
        if response.HasField("chunk") and response.chunk.text:
            now = time.perf_counter()
            if first is None:
                first = now - start
            else:
                gaps.append(now - last)
            last = now
            text += response.chunk.text
    return text, first, gaps, time.perf_counter() - start


def concurrent(run, prompts, streams, greedy):
    results = [None] * streams

    def one(i):
        try:
            results[i] = run(prompts[i % len(prompts)], 1 + i % 16) + (prompts[i % len(prompts)],)
        except Exception as e:  # reported as a failed stream
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    failed = [r for r in results if not isinstance(r, tuple)]
    ok = [r for r in results if isinstance(r, tuple)]
    correct = sum(1 for text, _, _, _, p in ok if text == greedy[p])
    ttft = [r[1] for r in ok if r[1] is not None]
    gaps = [g for r in ok for g in r[2]]
    return wall, len(failed), correct, ttft, gaps


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=256)
    parser.add_argument("--sequential", type=int, default=40)
    parser.add_argument("--bin", default=os.path.join(REPO, "build", "bin"))
    args = parser.parse_args()

    import grpc
    local_cluster.grpc_stubs()
    from verdict.v1 import generation_pb2 as pb  # noqa: E402
    from verdict.v1 import generation_pb2_grpc as pb_grpc  # noqa: E402

    prompts = [arith_world.prompt(p) for p in arith_world.unique_problems(seed=37, split="eval", count=16)]
    with tempfile.TemporaryDirectory() as tmp:
        config, grpc_addr = write_config(tmp, 2, "ucx", http=True, max_sessions=max(args.streams, 64))
        http_addr = write_config.http
        cluster = Cluster(args.bin, config)
        try:
            channel = grpc.insecure_channel(grpc_addr)
            stub = pb_grpc.VerdictStub(channel)
            greedy = {p: grpc_stream(stub, pb, p, 8)[0] for p in prompts}
            http_run = lambda p, w: http_stream(http_addr, p, w)  # noqa: E731
            grpc_run = lambda p, w: grpc_stream(stub, pb, p, w)  # noqa: E731
            for _ in range(2):  # warm-up: first allocations, connections
                http_run(prompts[0], 8)
                grpc_run(prompts[0], 8)
            print(f"{args.streams} concurrent streams (max_tokens {MAX_TOKENS}, windows 1..16, greedy), "
                  f"arith-target over 2 shards + draft, one 2-core machine")
            print(f"{'api':<6} {'wall s':>7} {'failed':>6} {'correct':>8} {'ttft p50 ms':>12} {'ttft p99 ms':>12} "
                  f"{'chunk p50 ms':>13} {'chunk p99 ms':>13}")
            for name, run in (("http", http_run), ("grpc", grpc_run)):
                wall, failed, correct, ttft, gaps = concurrent(run, prompts, args.streams, greedy)
                print(f"{name:<6} {wall:7.2f} {failed:6d} {correct:5d}/{args.streams:<3d} "
                      f"{1e3 * percentile(ttft, 50):12.1f} {1e3 * percentile(ttft, 99):12.1f} "
                      f"{1e3 * percentile(gaps, 50):13.2f} {1e3 * percentile(gaps, 99):13.2f}")
            # Sequential: the per-token cost of the HTTP path itself (JSON, SSE framing, its threads).
            seconds = {"http": [], "grpc": []}
            for i in range(args.sequential):
                p = prompts[i % len(prompts)]
                for name, run in (("http", http_run), ("grpc", grpc_run)):
                    seconds[name].append(run(p, 8)[3])
            # Tokens per request from the server's usage report.
            counted = []
            for p in prompts:
                conn = http.client.HTTPConnection(*http_addr.split(":"), timeout=60)
                conn.request("POST", "/v1/completions", body=json.dumps({"prompt": p, "max_tokens": MAX_TOKENS,
                                                                         "temperature": 0}),
                             headers={"Content-Type": "application/json"})
                counted.append(json.loads(conn.getresponse().read())["usage"]["completion_tokens"])
                conn.close()
            mean_tokens = statistics.mean(counted)
            h, g = statistics.mean(seconds["http"]), statistics.mean(seconds["grpc"])
            print(f"sequential, {args.sequential} requests each: http {1e3 * h:.2f} ms, grpc {1e3 * g:.2f} ms per "
                  f"request ({mean_tokens:.1f} tokens); HTTP overhead {1e6 * (h - g) / mean_tokens:+.1f} us per token")
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
