#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The OpenAI-compatible HTTP API of a real local cluster (`verdict up`, 2 shards), driven by clients
nobody here wrote: the official `openai` Python package and `curl -N`.

- greedy completions through HTTP, streamed and not, equal `verdict generate` on the target alone,
  and so do chat completions, rendered with the model's own chat template;
  judge decoding through HTTP (Verdict's "verdict" extension object) equals judge decoding in one
  process and through the gRPC API; the speculation statistics come back beside `usage`;
- raw Server-Sent Events framing (`data: {...}` events, `data: [DONE]` last, the usage chunk of
  stream_options.include_usage);
- each bad request gets its HTTP status and an OpenAI-format error (400, 403, 404, 413, 429 with
  Retry-After), and a streaming client that disconnects cancels its session on every member; after
  all of that the server still answers correctly; a request past the server's timeout is 504, and
  one that needs a dead shard is 503 until `verdict up` has restarted it;
- 256 concurrent streaming requests all complete with the target's text (none starved).

Every process is started by the test and stopped by PID (process group); ports come from the OS.
Usage: openai_api_test.py BUILD_BIN_DIR
"""
import http.client
import json
import os
import signal
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
import local_cluster  # noqa: E402
from local_cluster import DRAFT, HEAD, TARGET, write_config  # noqa: E402

import openai  # noqa: E402

BIN = None
PROMPTS = [arith_world.prompt(p) for p in arith_world.unique_problems(seed=29, split="eval", count=4)]
MAX_TOKENS = 96
LEASE_SECONDS = 2  # the workers release a silent coordinator's sessions after this


def reference(prompt, *args):
    return local_cluster.generate_reference(BIN, prompt, *args, max_tokens=MAX_TOKENS)


def post(addr, body, timeout=60):
    """POST /v1/completions with urllib (no client library): (status, headers, parsed JSON)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{addr}/v1/completions", data=data,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


class OpenAiApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.greedy = {p: reference(p) for p in PROMPTS}
        cls.judge16 = {p: reference(p, "--draft", DRAFT, "--judge", HEAD, "--k", "16") for p in PROMPTS[:2]}
        config, cls.grpc_addr = write_config(cls.tmp.name, 2, "ucx", http=True, max_sessions=4, http_timeout=4,
                                             session_lease=LEASE_SECONDS)
        cls.http, cls.admin, cls.shard_admins = write_config.http, write_config.admin, write_config.shard_admin
        cls.draft_admin = write_config.draft_admin
        cls.cluster = local_cluster.Cluster(BIN, config)
        cls.client = openai.OpenAI(base_url=f"http://{cls.http}/v1", api_key="unused", max_retries=0, timeout=120)

    @classmethod
    def tearDownClass(cls):
        cls.cluster.stop()
        cls.tmp.cleanup()

    @staticmethod
    def shard_sessions(admin, index):
        return local_cluster.read_metric(admin, "verdict_shard_sessions", f'{{shard="{index}"}}')

    def member_sessions(self, shards=None):
        """Open sessions on the draft worker and on each shard (the first `shards` of them)."""
        admins = self.shard_admins[:shards] if shards is not None else self.shard_admins
        return [local_cluster.read_metric(self.draft_admin, "verdict_draft_sessions")] + [
            self.shard_sessions(admin, i) for i, admin in enumerate(admins)]

    def status(self):
        with urllib.request.urlopen(f"http://{self.admin}/v1/status", timeout=10) as r:
            return json.loads(r.read())

    def test_1_models(self):
        models = self.client.models.list()
        self.assertEqual([m.id for m in models.data], ["arith-target"])
        extra = models.data[0].model_extra["verdict"]
        self.assertTrue(extra["judge"])
        self.assertEqual(extra["draft_model"], "arith-draft")

    def test_2_greedy_and_judge_equal_single_process(self):
        for p in PROMPTS:
            c = self.client.completions.create(model="arith-target", prompt=p, max_tokens=MAX_TOKENS, temperature=0)
            self.assertEqual(c.choices[0].text, self.greedy[p], p)
            self.assertEqual(c.choices[0].finish_reason, "stop")
            self.assertEqual(c.object, "text_completion")
            self.assertGreater(c.usage.completion_tokens, 0)
            self.assertEqual(c.usage.total_tokens, c.usage.prompt_tokens + c.usage.completion_tokens)
            stats = c.model_extra["verdict"]
            self.assertLess(stats["target_passes"], c.usage.completion_tokens)  # speculation paid
            self.assertEqual(stats["tokens"], c.usage.completion_tokens)

            stream = self.client.completions.create(model="arith-target", prompt=p, max_tokens=MAX_TOKENS,
                                                    temperature=0, stream=True,
                                                    stream_options={"include_usage": True})
            chunks = list(stream)
            text = "".join(ch.choices[0].text for ch in chunks if ch.choices)
            self.assertEqual(text, self.greedy[p], p)
            finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
            self.assertEqual(finishes, ["stop"])
            self.assertEqual(chunks[-1].choices, [])
            self.assertEqual(chunks[-1].usage.completion_tokens, c.usage.completion_tokens)
        for p, expected in self.judge16.items():
            c = self.client.completions.create(model="arith-target", prompt=p, max_tokens=MAX_TOKENS, temperature=0,
                                               extra_body={"verdict": {"policy": "judge", "draft_window": 16}})
            self.assertEqual(c.choices[0].text, expected, p)
            self.assertEqual(c.model_extra["verdict"]["policy"], "greedy+judge")
            # The same request through the gRPC API of the same cluster.
            r = subprocess.run([os.path.join(BIN, "verdict"), "client", "generate", "--addr", self.grpc_addr,
                                "--prompt", p, "--max-tokens", str(MAX_TOKENS), "--k", "16", "--policy", "judge",
                                "--json"], capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(json.loads(r.stdout)["text"], c.choices[0].text, p)
        # Judge-shadow statistics survive the wire (issue 21: the count of tokens only the shadow
        # judge would accept was always 0 in a cluster): equal to one process's.
        p = PROMPTS[0]
        c = self.client.completions.create(model="arith-target", prompt=p, max_tokens=MAX_TOKENS, temperature=0,
                                           extra_body={"verdict": {"policy": "judge-shadow", "draft_window": 16}})
        r = subprocess.run([os.path.join(BIN, "verdict"), "generate", "--model", TARGET, "--prompt", p,
                            "--max-tokens", str(MAX_TOKENS), "--draft", DRAFT, "--judge", HEAD, "--k", "16",
                            "--policy", "judge-shadow", "--stats-json"], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        single = json.loads(r.stderr.strip().splitlines()[-1])
        self.assertEqual(c.choices[0].text, self.greedy[p])  # shadow mode is lossless
        self.assertGreater(single["shadow"]["judge_only"], 0)
        self.assertEqual(c.model_extra["verdict"]["shadow"], single["shadow"])
        # A long prompt that leaves less room than the default max_tokens (96), end-of-text ignored:
        # over gRPC the generation reports the context's end, not the length limit (issue 21).
        long_prompt = " ".join([PROMPTS[0]] * 6)
        r = subprocess.run([os.path.join(BIN, "verdict"), "client", "generate", "--addr", self.grpc_addr,
                            "--prompt", long_prompt, "--ignore-eos", "--json"], capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout)
        self.assertGreater(out["prompt_tokens"] + 96, 256, out)
        self.assertEqual(out["finish_reason"], "FINISH_REASON_CONTEXT", out)
        # Every context position was used: the last token, generated from position 255, needs none.
        self.assertIn(out["prompt_tokens"] + out["completion_tokens"], (256, 257), out)
        # A token-array prompt and a max_tokens cut: finish_reason "length".
        c = self.client.completions.create(model="arith-target", prompt=[1, 20, 21, 22], max_tokens=3, temperature=0)
        self.assertEqual(c.choices[0].finish_reason, "length")
        self.assertEqual(c.usage.completion_tokens, 3)

    def test_2b_chat_completions_use_the_models_template(self):
        # The arithmetic models' template turns a user turn into "Q: <question>\nA:", the prompt
        # format they were trained on: chat output equals `verdict generate` on that prompt.
        for p in PROMPTS[:2]:
            question = p[len("Q: "):-len("\nA:")]
            messages = [{"role": "user", "content": question}]
            c = self.client.chat.completions.create(model="arith-target", messages=messages, max_tokens=MAX_TOKENS,
                                                    temperature=0)
            self.assertEqual(c.object, "chat.completion")
            self.assertEqual(c.choices[0].message.role, "assistant")
            self.assertEqual(c.choices[0].message.content, self.greedy[p], p)
            self.assertEqual(c.choices[0].finish_reason, "stop")
            stream = self.client.chat.completions.create(model="arith-target", messages=messages,
                                                         max_tokens=MAX_TOKENS, temperature=0, stream=True,
                                                         stream_options={"include_usage": True},
                                                         extra_body={"verdict": {"policy": "judge"}})
            chunks = list(stream)
            self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
            text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
            self.assertTrue(text)
            self.assertEqual(chunks[-1].usage.prompt_tokens, c.usage.prompt_tokens)
        # The template's raise_exception is the request's error; so is an unsupported part.
        with self.assertRaises(openai.BadRequestError) as ctx:
            self.client.chat.completions.create(model="arith-target", max_tokens=4,
                                                messages=[{"role": "system", "content": "x"}])
        self.assertIn("user and assistant turns only", str(ctx.exception))
        with self.assertRaises(openai.BadRequestError):
            self.client.chat.completions.create(model="arith-target", max_tokens=4, messages=[
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}])

    def test_3_raw_sse_framing_with_curl(self):
        body = json.dumps({"model": "arith-target", "prompt": PROMPTS[0], "max_tokens": MAX_TOKENS, "temperature": 0,
                           "stream": True, "stream_options": {"include_usage": True}})
        r = subprocess.run(["curl", "-sSN", "-H", "Content-Type: application/json", "-d", body,
                            f"http://{self.http}/v1/completions"], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        events = r.stdout.split("\n\n")
        self.assertEqual(events[-1], "")  # every event ends with a blank line
        events = events[:-1]
        self.assertTrue(all(e.startswith("data: ") and "\n" not in e for e in events), events)
        self.assertEqual(events[-1], "data: [DONE]")
        payloads = [json.loads(e[len("data: "):]) for e in events[:-1]]
        self.assertEqual("".join(p["choices"][0]["text"] for p in payloads if p["choices"]), self.greedy[PROMPTS[0]])
        self.assertEqual(len({p["id"] for p in payloads}), 1)
        self.assertIn("usage", payloads[-1])
        self.assertIn("verdict", payloads[-2])

    def test_4_bad_requests_then_still_serving(self):
        cases = [
            (b"{not json", 400, None),
            ({"prompt": PROMPTS[0], "n": 2}, 400, "n"),
            ({"prompt": PROMPTS[0], "temperature": "hot"}, 400, "temperature"),
            ({"prompt": PROMPTS[0], "logprobs": 3}, 400, "logprobs"),
            ({"prompt": PROMPTS[0], "model": "gpt-4"}, 404, "model"),
            ({"prompt": PROMPTS[0], "verdict": {"policy": "lossy-prob"}}, 403, None),
            ({"prompt": [5] * 300, "max_tokens": 4}, 413, None),
            ({"prompt": [100000]}, 400, None),
            ({"prompt": PROMPTS[0], "verdict": {"draft_window": 1000}}, 400, None),
        ]
        for body, code, param in cases:
            status, _, err = post(self.http, body)
            self.assertEqual(status, code, (body, err))
            self.assertEqual(set(err["error"]), {"message", "type", "param", "code"}, err)
            self.assertTrue(err["error"]["message"])
            if param is not None:
                self.assertEqual(err["error"]["param"], param, err)
        self.assertEqual(post(self.http, {"prompt": [5] * 300, "max_tokens": 4})[2]["error"]["code"],
                         "context_length_exceeded")
        # The client library raises its own typed errors for them.
        with self.assertRaises(openai.NotFoundError):
            self.client.completions.create(model="gpt-4", prompt="x", max_tokens=2)
        with self.assertRaises(openai.PermissionDeniedError):
            self.client.completions.create(model="arith-target", prompt="x", max_tokens=2,
                                           extra_body={"verdict": {"policy": "lossy-prob"}})
        with self.assertRaises(openai.BadRequestError):
            self.client.completions.create(model="arith-target", prompt="x", max_tokens=2, n=3)
        c = self.client.completions.create(model="arith-target", prompt=PROMPTS[1], max_tokens=MAX_TOKENS, temperature=0)
        self.assertEqual(c.choices[0].text, self.greedy[PROMPTS[1]])

    def test_5_session_limit_and_disconnect(self):
        # Shard 1 frozen: sessions stay open. Four streams fill the limit (max_sessions 4); the fifth
        # request is 429 with Retry-After. Each streaming client then disconnects: its session is
        # cancelled, and once the shard runs again every member frees it.
        shard = self.cluster.member_pid("verdict-shard.*--shard 1")
        self.assertIsNotNone(shard)
        os.kill(shard, signal.SIGSTOP)
        conns = []
        try:
            body = json.dumps({"prompt": PROMPTS[2], "max_tokens": MAX_TOKENS, "temperature": 0, "stream": True})
            for _ in range(4):
                conn = http.client.HTTPConnection(*self.http.split(":"), timeout=30)
                conn.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
                conns.append(conn)
            deadline = time.time() + 20
            while time.time() < deadline and len(self.status()["sessions"]) < 4:
                time.sleep(0.1)
            self.assertEqual(len(self.status()["sessions"]), 4)
            status, headers, err = post(self.http, {"prompt": PROMPTS[0], "max_tokens": 4})
            self.assertEqual(status, 429, err)
            self.assertEqual(headers.get("Retry-After"), "1")
            self.assertEqual(err["error"]["type"], "rate_limit_error")
            for conn in conns:
                conn.close()
        finally:
            os.kill(shard, signal.SIGCONT)
        deadline = time.time() + 30
        while time.time() < deadline and self.status()["sessions"]:
            time.sleep(0.2)
        status = self.status()
        self.assertEqual(status["sessions"], [])
        self.assertGreaterEqual(int(status["requests_cancelled"]), 4)
        # Freed on every shard too (their session gauges go back to 0).
        for i, shard_admin in enumerate(self.shard_admins):
            deadline = time.time() + 20
            while time.time() < deadline and self.shard_sessions(shard_admin, i) != 0:
                time.sleep(0.2)
            self.assertEqual(self.shard_sessions(shard_admin, i), 0, f"shard {i}")
        c = self.client.completions.create(model="arith-target", prompt=PROMPTS[3], max_tokens=MAX_TOKENS, temperature=0)
        self.assertEqual(c.choices[0].text, self.greedy[PROMPTS[3]])

    def test_6_deadline_and_a_dead_shard(self):
        # A request that cannot finish (shard 1 frozen) is cancelled at the server's HTTP request
        # timeout (4 s here) and answered 504; a stream gets the error as its last event.
        shard = self.cluster.member_pid("verdict-shard.*--shard 1")
        os.kill(shard, signal.SIGSTOP)
        try:
            start = time.time()
            status, _, err = post(self.http, {"prompt": PROMPTS[0], "max_tokens": 8, "temperature": 0})
            self.assertEqual(status, 504, err)
            self.assertEqual((err["error"]["type"], err["error"]["code"]), ("server_error", "timeout"))
            self.assertLess(time.time() - start, 30)
            r = subprocess.run(["curl", "-sSN", "-d", json.dumps({"prompt": PROMPTS[0], "max_tokens": 8, "stream": True}),
                                f"http://{self.http}/v1/completions"], capture_output=True, text=True, timeout=60)
            events = [e for e in r.stdout.split("\n\n") if e]
            self.assertEqual(events[-1], "data: [DONE]")
            self.assertEqual(json.loads(events[-2][len("data: "):])["error"]["code"], "timeout")
        finally:
            os.kill(shard, signal.SIGCONT)
        # Shard 1 dies: a request fails with 503 naming it; once `verdict up` has restarted it,
        # requests succeed again.
        shard = self.cluster.member_pid("verdict-shard.*--shard 1")
        os.kill(shard, signal.SIGKILL)
        statuses = []
        for _ in range(80):
            status, _, body = post(self.http, {"prompt": PROMPTS[1], "max_tokens": MAX_TOKENS, "temperature": 0})
            statuses.append(status)
            if status == 200:
                self.assertEqual(body["choices"][0]["text"], self.greedy[PROMPTS[1]])
                break
            self.assertEqual(status, 503, body)
            self.assertEqual(body["error"]["type"], "server_error")
            self.assertIn("shard 1", body["error"]["message"])
            time.sleep(0.25)
        self.assertIn(503, statuses)
        self.assertEqual(statuses[-1], 200, "requests did not succeed after the shard restarted")

    def test_7_a_restarted_coordinator_does_not_collide_with_its_predecessor(self):
        # Issue 21's reproduction: shard 1 frozen, 3 requests open sessions on every member, the
        # coordinator dies, shard 1 resumes. The coordinator `verdict up` restarts must not reuse the
        # ids of the sessions left on the workers, and the workers release those sessions (and their
        # KV caches) once the dead coordinator's lease has run out.
        shard = self.cluster.member_pid("verdict-shard.*--shard 1")
        coordinator = self.cluster.member_pid("verdict-coordinator")
        os.kill(shard, signal.SIGSTOP)
        conns = []
        try:
            body = json.dumps({"prompt": PROMPTS[2], "max_tokens": 8, "temperature": 0, "stream": True})
            for _ in range(3):
                conn = http.client.HTTPConnection(*self.http.split(":"), timeout=30)
                conn.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
                conns.append(conn)
            deadline = time.time() + 20
            while time.time() < deadline and len(self.status()["sessions"]) < 3:
                time.sleep(0.1)
            deadline = time.time() + 20  # the draft and shard 0 open theirs; shard 1 is frozen
            while time.time() < deadline and self.member_sessions(shards=1) != [3, 3]:
                time.sleep(0.1)
            self.assertEqual(self.member_sessions(shards=1), [3, 3])
            os.kill(coordinator, signal.SIGKILL)
        finally:
            os.kill(shard, signal.SIGCONT)
            for conn in conns:
                conn.close()
        served = []
        deadline = time.time() + 60
        while time.time() < deadline and len(served) < 4:
            try:
                status, _, body = post(self.http, {"prompt": PROMPTS[3], "max_tokens": MAX_TOKENS, "temperature": 0},
                                       timeout=30)
            except (OSError, http.client.HTTPException):
                time.sleep(0.3)  # the coordinator is not back yet
                continue
            if served or status == 200:
                self.assertEqual(status, 200, body)  # once back, every request is served
                self.assertEqual(body["choices"][0]["text"], self.greedy[PROMPTS[3]])
                served.append(status)
            else:
                self.assertIn(status, (503,), body)  # members still reconnecting
                time.sleep(0.3)
        self.assertEqual(len(served), 4, "the restarted coordinator did not serve")
        # Every member ends with no session open: the dead coordinator's were released by lease, the
        # new coordinator's closed when their requests finished.
        deadline = time.time() + 10 * LEASE_SECONDS
        while time.time() < deadline and self.member_sessions() != [0, 0, 0]:
            time.sleep(0.2)
        self.assertEqual(self.member_sessions(), [0, 0, 0])
        released = [local_cluster.read_metric(self.draft_admin, "verdict_draft_sessions_released_by_lease_total")] + [
            local_cluster.read_metric(a, "verdict_shard_sessions_released_by_lease_total", f'{{shard="{i}"}}')
            for i, a in enumerate(self.shard_admins)]
        # Shard 1 was frozen while the opens were sent to it; gRPC drops requests whose connection
        # closed (the coordinator died) before the server read them, so it may never have had them.
        self.assertEqual(released[:2], [3, 3])
        self.assertIn(released[2], (0, 3))


class ManyStreamsTest(unittest.TestCase):
    """256 concurrent streaming HTTP requests on a cluster whose session limit admits them all: each
    completes with the text the target alone produces; none is starved or refused."""

    def test_256_concurrent_streams(self):
        prompts = [arith_world.prompt(p) for p in arith_world.unique_problems(seed=31, split="eval", count=8)]
        greedy = {p: reference(p) for p in prompts}
        with tempfile.TemporaryDirectory() as tmp:
            config, _ = write_config(tmp, 2, "ucx", http=True, max_sessions=256)
            addr = write_config.http
            cluster = local_cluster.Cluster(BIN, config)
            try:
                results = [None] * 256

                def run(i):
                    p = prompts[i % len(prompts)]
                    body = json.dumps({"prompt": p, "max_tokens": MAX_TOKENS, "temperature": 0, "stream": True,
                                       "verdict": {"draft_window": 1 + i % 16}})
                    conn = http.client.HTTPConnection(*addr.split(":"), timeout=300)
                    try:
                        conn.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
                        resp = conn.getresponse()
                        raw = resp.read().decode()
                        text, done = "", False
                        for event in raw.split("\n\n"):
                            if event == "data: [DONE]":
                                done = True
                            elif event.startswith("data: "):
                                chunk = json.loads(event[len("data: "):])
                                text += "".join(c["text"] for c in chunk.get("choices", []))
                        results[i] = (resp.status, text, done, p)
                    finally:
                        conn.close()

                threads = [threading.Thread(target=run, args=(i,)) for i in range(256)]
                start = time.time()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(timeout=600)
                print(f"256 concurrent HTTP streams in {time.time() - start:.1f} s", file=sys.stderr)
                for i, r in enumerate(results):
                    self.assertIsNotNone(r, f"stream {i} did not finish")
                    status, text, done, p = r
                    self.assertEqual(status, 200, f"stream {i}")
                    self.assertTrue(done, f"stream {i} has no [DONE]")
                    self.assertEqual(text, greedy[p], f"stream {i}")
            finally:
                cluster.stop()


if __name__ == "__main__":
    BIN = sys.argv.pop(1)
    unittest.main(verbosity=2)
