#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Speculative decoding on a real model: SmolLM2-135M-Instruct (Q4_1 GGUF) with the draft distilled
from it (assets/models/smollm2-draft, tools/train_smollm2_draft.py), on this CPU.

On held-out chat prompts (topics and task templates the draft never saw in training) it measures:
1. acceptance: for k = 2..16, the mean number of draft tokens accepted per target pass, tokens per
   pass and the acceptance rate of each draft position (the probability that position i is
   accepted when position i - 1 was), greedy and sampled (temperature 0.8);
2. wall-clock speed in one process (`verdict generate --stats-json`): the target alone vs
   speculative decoding at every k, the best k, and where a pass's time goes (draft, verification,
   the rest); greedy outputs are checked identical to the target alone's;
3. with --cluster: the same through a local cluster (`verdict up`: draft worker, two target
   shards over UCX, coordinator), called with the `openai` package on its OpenAI-compatible HTTP
   API: the target alone vs the best k, tokens/s from the server's own timing.

Usage (repository root, after scripts/build.sh):
    .venv/bin/python bench/smollm2_speedup.py [--prompts 16] [--cluster] [--json out.json]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))
from train_smollm2_draft import prompt_set  # noqa: E402

BIN = os.path.join(REPO, "build", "bin", "verdict")
TARGET = os.path.join(REPO, "models", "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
DRAFT = os.path.join(REPO, "assets", "models", "smollm2-draft", "smollm2-draft.Q8_0.gguf")
SAMPLED_TEMPERATURE = 0.8


def generate(prompt, args, threads, max_tokens, temperature, seed=0, draft=None, k=None):
    cmd = [BIN, "generate", "--model", args.target, "--chat", "--prompt", prompt, "--max-tokens", str(max_tokens),
           "--threads", str(threads), "--temperature", str(temperature), "--seed", str(seed), "--stats-json",
           "--quiet"]
    if draft:
        cmd += ["--draft", draft, "--k", str(k)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr}")
    stats = json.loads(r.stderr.strip().splitlines()[-1])
    return r.stdout, stats


def summarize(runs):
    tokens = sum(s["tokens"] for _, s in runs)
    passes = sum(s["target_passes"] for _, s in runs)
    seconds = sum(s["seconds"] for _, s in runs)
    out = {"tokens": tokens, "target_passes": passes, "seconds": seconds, "tok_s": tokens / seconds,
           "tokens_per_pass": tokens / passes}
    if "accepted_length_histogram" in runs[0][1]:
        hist = [0] * max(len(s["accepted_length_histogram"]) for _, s in runs)
        for _, s in runs:
            for i, c in enumerate(s["accepted_length_histogram"]):
                hist[i] += c
        blocks = sum(hist)
        out["histogram"] = hist
        out["mean_accepted"] = sum(i * c for i, c in enumerate(hist)) / blocks
        # P(position i accepted | position i - 1 accepted), i = 1..k.
        rates = []
        for i in range(1, len(hist)):
            reached = sum(hist[i - 1:])
            rates.append(sum(hist[i:]) / reached if reached else float("nan"))
        out["position_rates"] = rates
        draft_s = sum(s.get("draft_seconds", 0) for _, s in runs)
        verify_s = sum(s.get("verify_seconds", 0) for _, s in runs)
        prefill_s = sum(s.get("prefill_seconds", 0) for _, s in runs)
        # The draft runs on its own engine thread, partly while the target verifies (optimistic
        # drafting), so draft + verify can exceed the wall time of a pass.
        wall = (seconds - prefill_s) / passes
        out["per_pass_ms"] = {"wall": 1e3 * wall, "draft": 1e3 * draft_s / passes, "verify": 1e3 * verify_s / passes,
                              "draft_hidden": 1e3 * max(0.0, (draft_s + verify_s) / passes - wall)}
        out["optimistic_hits"] = sum(s.get("optimistic_hits", 0) for _, s in runs)
        out["optimistic_blocks"] = sum(s.get("optimistic_blocks", 0) for _, s in runs)
    return out


def in_process(args, prompts):
    results = {}
    for mode, temperature in (("greedy", 0.0), ("sampled", SAMPLED_TEMPERATURE)):
        base = [generate(p, args, args.threads, args.max_tokens, temperature, seed=i + 1)
                for i, p in enumerate(prompts)]
        results[(mode, "target")] = summarize(base)
        # Speculative decoding runs the draft on an engine thread of its own: the target alone gets
        # the same number of cores too.
        wide = [generate(p, args, 2 * args.threads, args.max_tokens, temperature, seed=i + 1)
                for i, p in enumerate(prompts)]
        results[(mode, "target-wide")] = summarize(wide)
        print(f"{mode:8s} target alone: {results[(mode, 'target')]['tok_s']:.1f} tok/s ({args.threads} thread(s)), "
              f"{results[(mode, 'target-wide')]['tok_s']:.1f} tok/s ({2 * args.threads})", flush=True)
        for k in args.ks:
            runs = [generate(p, args, args.threads, args.max_tokens, temperature, seed=i + 1, draft=args.draft, k=k)
                    for i, p in enumerate(prompts)]
            if mode == "greedy":
                differ = sum(a[0] != b[0] for a, b in zip(base, runs))
                if differ:
                    raise SystemExit(f"greedy speculative output differs from the target alone's on {differ} prompts")
            s = summarize(runs)
            results[(mode, k)] = s
            print(f"{mode:8s} k={k:2d}: {s['tok_s']:6.1f} tok/s ({s['tok_s'] / results[(mode, 'target')]['tok_s']:.2f}x), "
                  f"{s['tokens_per_pass']:.2f} tokens/pass, mean accepted {s['mean_accepted']:.2f}, per pass "
                  f"{s['per_pass_ms']['wall']:.1f} ms: verify {s['per_pass_ms']['verify']:.1f} ms, draft "
                  f"{s['per_pass_ms']['draft']:.1f} ms (>= {s['per_pass_ms']['draft_hidden']:.1f} ms of it during "
                  f"verification)", flush=True)
    return results


def cluster_run(args, prompts, best_k):
    from openai import OpenAI
    from local_cluster import Cluster, free_ports
    ports = free_ports(9)
    half = 15  # SmolLM2 has 30 layers
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "smollm2.textproto")
        with open(config, "w") as f:
            f.write(f'''name: "smollm2"
target {{ name: "smollm2" path: "{args.target}" }}
coordinator {{ listen: "127.0.0.1:{ports[0]}" http_listen: "127.0.0.1:{ports[1]}" admin_listen: "127.0.0.1:{ports[2]}"
  default_draft_window: {best_k} default_max_tokens: {args.max_tokens} max_sessions: 8 pipelined: true }}
draft {{ listen: "127.0.0.1:{ports[3]}" model {{ path: "{args.draft}" }} threads: 1 }}
shards {{ listen: "127.0.0.1:{ports[4]}" data_listen: "127.0.0.1:{ports[5]}" layer_begin: 0 layer_end: {half} threads: 1 }}
shards {{ listen: "127.0.0.1:{ports[6]}" data_listen: "127.0.0.1:{ports[7]}" layer_begin: {half} layer_end: 30 threads: 1 }}
transport {{ kind: KIND_UCX ucx_tls: "tcp" }}
''')
        cluster = Cluster(os.path.dirname(BIN), config)
        try:
            client = OpenAI(base_url=f"http://127.0.0.1:{ports[1]}/v1", api_key="unused", timeout=600)
            results = {}
            for mode, temperature in (("greedy", 0.0), ("sampled", SAMPLED_TEMPERATURE)):
                for label, controls in (("target", {"speculate": False}),
                                        (best_k, {"draft_window": best_k})):
                    tokens = passes = 0
                    server_s = wall_s = 0.0
                    for i, p in enumerate(prompts):
                        start = time.time()
                        r = client.chat.completions.create(
                            model="smollm2", messages=[{"role": "user", "content": p}], max_tokens=args.max_tokens,
                            temperature=temperature, seed=i + 1, extra_body={"verdict": controls})
                        wall_s += time.time() - start
                        v = r.model_extra["verdict"]
                        tokens += r.usage.completion_tokens
                        passes += v.get("target_passes", r.usage.completion_tokens)
                        server_s += v["seconds"]
                    results[(mode, label)] = {"tokens": tokens, "tok_s": tokens / server_s, "wall_tok_s": tokens / wall_s,
                                              "tokens_per_pass": tokens / max(1, passes)}
                    print(f"cluster {mode:8s} {'target alone' if label == 'target' else f'k={label}'}: "
                          f"{tokens / server_s:.1f} tok/s (server), {tokens / wall_s:.1f} tok/s (client wall), "
                          f"{tokens / max(1, passes):.2f} tokens/pass", flush=True)
            return results
        finally:
            cluster.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default=TARGET)
    ap.add_argument("--draft", default=DRAFT)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--ks", type=int, nargs="+", default=[2, 3, 4, 6, 8, 12, 16])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cluster", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    _, held = prompt_set()
    prompts = [p["text"] for p in held if p["kind"] == "chat"][: args.prompts]
    print(f"{len(prompts)} held-out chat prompts, {args.max_tokens} tokens each, {args.threads} thread(s); "
          f"target {os.path.basename(args.target)}, draft {os.path.basename(args.draft)}", flush=True)
    results = in_process(args, prompts)
    report = {"prompts": len(prompts), "max_tokens": args.max_tokens, "threads": args.threads, "in_process": {}}
    for mode in ("greedy", "sampled"):
        base = results[(mode, "target")]
        best = max(args.ks, key=lambda k: results[(mode, k)]["tok_s"])
        report["in_process"][mode] = {"target": base, "target_wide": results[(mode, "target-wide")], "best_k": best,
                                      "by_k": {str(k): results[(mode, k)] for k in args.ks}}
        wide = results[(mode, "target-wide")]
        print(f"\n{mode}: best k = {best}: {results[(mode, best)]['tok_s']:.1f} tok/s vs the target alone "
              f"{base['tok_s']:.1f} tok/s ({args.threads} thread(s)) = {results[(mode, best)]['tok_s'] / base['tok_s']:.2f}x, "
              f"{wide['tok_s']:.1f} tok/s ({2 * args.threads}) = {results[(mode, best)]['tok_s'] / wide['tok_s']:.2f}x")
        kmax = max(args.ks)
        rates = results[(mode, kmax)]["position_rates"]
        print(f"{mode}: acceptance by draft position (k = {kmax}): " + " ".join(f"{r:.2f}" for r in rates))
    print(f"\n| k | greedy: mean accepted / tokens per pass / tok/s / vs target alone on {args.threads} and "
          f"{2 * args.threads} threads | sampled (T=0.8): the same |")
    print("|---|---|---|")
    for label in ("target", "target-wide"):
        cells = [f"- / 1.00 / {results[(m, label)]['tok_s']:.1f} / -" for m in ("greedy", "sampled")]
        threads = args.threads if label == "target" else 2 * args.threads
        print(f"| target alone, {threads} thread(s) | {cells[0]} | {cells[1]} |")
    for k in args.ks:
        cells = []
        for mode in ("greedy", "sampled"):
            s, b, w = results[(mode, k)], results[(mode, "target")], results[(mode, "target-wide")]
            cells.append(f"{s['mean_accepted']:.2f} / {s['tokens_per_pass']:.2f} / {s['tok_s']:.1f} / "
                         f"{s['tok_s'] / b['tok_s']:.2f}x, {s['tok_s'] / w['tok_s']:.2f}x")
        print(f"| {k} | {cells[0]} | {cells[1]} |")
    if args.cluster:
        best = report["in_process"]["greedy"]["best_k"]
        c = cluster_run(args, prompts, best)
        report["cluster"] = {f"{m}/{l}": v for (m, l), v in c.items()}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
