# SPDX-License-Identifier: Apache-2.0
"""The deploy/slurm job scripts, run for real on a simulated multi-node Slurm cluster
(slurm_harness.py: one slurmctld, a slurmd per network namespace). For each layout the job renders
its config from the allocation, starts one srun step per member on distinct nodes, and an
independent client (grpcio stubs generated from proto/verdict/v1) gets through judge decoding
exactly what `verdict generate` gives in one process. `scancel --signal=TERM` stops a job cleanly
(COMPLETED); a shard killed with SIGKILL fails the job (FAILED) and no member is left running.
Usage: slurm_test.py BIN_DIR   (root; exits 77, skipped, without root or the Slurm packages)"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tools"))
sys.path.insert(0, HERE)
import arith_world  # noqa: E402
import local_cluster  # noqa: E402
import slurm_harness  # noqa: E402

BIN = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(REPO, "build", "bin")
PROMPTS = [arith_world.prompt(p) for p in arith_world.unique_problems(seed=29, split="eval", count=2)]


def members_running(run_dir):
    """PIDs of verdict members whose command line names this job's config."""
    r = subprocess.run(["pgrep", "-f", os.path.join(run_dir, "cluster.textproto")], capture_output=True, text=True)
    return [int(p) for p in r.stdout.split()]


def wait_for(path, job_id, slurm, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path):
            return
        state, code = slurm.job_state(job_id)
        if state not in ("PENDING", "RUNNING", "CONFIGURING"):
            raise AssertionError(f"job {job_id} ended ({state} {code}) before {path} appeared")
        time.sleep(0.5)
    raise AssertionError(f"{path} did not appear in {timeout} s (job {slurm.job_state(job_id)})")


def generate(grpc_address, prompt):
    """One judge-decoding request (k = 16) from an independent client: grpcio with stubs generated
    from proto/verdict/v1. Returns (text, final)."""
    import grpc
    from verdict.v1 import generation_pb2 as pb
    from verdict.v1 import generation_pb2_grpc as pb_grpc
    from verdict.v1 import speculation_pb2 as spec
    with grpc.insecure_channel(grpc_address) as channel:
        stub = pb_grpc.VerdictStub(channel)
        request = pb.GenerateRequest(prompt=prompt, max_tokens=96)
        request.speculation.policy = spec.VERIFICATION_POLICY_JUDGE
        request.speculation.draft_window = 16
        text = ""
        for response in stub.Generate(request, timeout=120):
            if response.HasField("chunk"):
                text += response.chunk.text
            else:
                return text, response.final
    raise AssertionError("the stream ended without a final message")


class SlurmDeployTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="verdict-slurm-")
        cls.slurm = slurm_harness.SimulatedSlurm(os.path.join(cls.tmp, "slurm"), nodes=4)
        cls.slurm.__enter__()
        local_cluster.grpc_stubs()
        cls.reference = {p: local_cluster.generate_reference(BIN, p, "--draft", local_cluster.DRAFT, "--judge",
                                                             local_cluster.HEAD, "--k", "16") for p in PROMPTS}

    @classmethod
    def tearDownClass(cls):
        cls.slurm.__exit__(None, None, None)
        for pid in members_running(cls.tmp):  # a failed test must not leave members behind
            os.kill(pid, 9)
        if not cls.failed:
            shutil.rmtree(cls.tmp, ignore_errors=True)  # kept (logs, configs) when a test failed
        else:
            print(f"job logs and configs kept in {cls.tmp}", file=sys.stderr)

    failed = False

    def run(self, result=None):
        result = super().run(result)
        if result is not None and (result.failures or result.errors):
            type(self).failed = True
        return result

    def submit(self, name, *sbatch_args):
        run_dir = os.path.join(self.tmp, name)
        env = {"VERDICT_ROOT": REPO, "VERDICT_BIN": BIN, "VERDICT_RUN_DIR": run_dir,
               "VERDICT_IFACE": "eth0", "VERDICT_UCX_NET_DEVICES": "eth0", "VERDICT_READY_TIMEOUT": "120",
               "VERDICT_STOP_GRACE": "15", "VERDICT_SMOKE_PROMPT": PROMPTS[0], "VERDICT_SMOKE_POLICY": "judge",
               "GRPC_DNS_RESOLVER": "native"}
        job = self.slurm.sbatch(f"--output={self.tmp}/{name}.out", *sbatch_args, env=env, cwd=REPO)
        self.addCleanup(self.slurm.scancel, "--signal=KILL", job)  # no-op once the job has ended
        wait_for(os.path.join(run_dir, "endpoints"), job, self.slurm, timeout=180)
        with open(os.path.join(run_dir, "endpoints")) as f:
            endpoints = dict(line.strip().split("=", 1) for line in f if "=" in line)
        return job, run_dir, endpoints

    def job_log(self, name):
        with open(os.path.join(self.tmp, f"{name}.out")) as f:
            return f.read()

    def check_cluster(self, run_dir, endpoints, shards):
        # The rendered config puts every shard on its own node, the draft and coordinator on another.
        with open(os.path.join(run_dir, "cluster.textproto")) as f:
            config = f.read()
        hosts = {a for a in self.slurm.address.values() if f'"{a}:' in config}
        self.assertEqual(len(hosts), shards + 1, config)
        for prompt in PROMPTS:
            text, final = generate(endpoints["grpc"], prompt)
            self.assertEqual(text, self.reference[prompt], prompt)
            self.assertIn("judge", final.policy)
            self.assertFalse(final.degraded)
            self.assertLess(final.stats.target_passes, final.stats.tokens)  # the draft was used

    def test_heterogeneous_job_two_shards_then_clean_stop(self):
        job, run_dir, endpoints = self.submit("het2", "--nodes=2", ":", "--nodes=1", "deploy/slurm/verdict-het.sbatch")
        self.check_cluster(run_dir, endpoints, shards=2)
        self.assertIn("smoke request answered", self.job_log("het2"))
        self.slurm.scancel("--signal=TERM", job)
        state, code = self.slurm.wait_job_end(job, timeout=90)
        self.assertEqual((state, code), ("COMPLETED", "0:0"), self.job_log("het2"))
        self.assertIn("stopped cleanly", self.job_log("het2"))
        self.assertEqual(members_running(run_dir), [])
        for member in ("shard-0", "shard-1", "draft", "coordinator"):
            with open(os.path.join(run_dir, f"{member}.log")) as f:
                self.assertIn("stopped", f.read(), member)

    def test_homogeneous_job_three_shards_then_a_shard_killed(self):
        job, run_dir, endpoints = self.submit("homog3", "--nodes=4", "deploy/slurm/verdict.sbatch")
        self.check_cluster(run_dir, endpoints, shards=3)
        shard1 = subprocess.run(["pgrep", "-f", f"^{BIN}/verdict-shard --config {run_dir}/cluster.textproto --shard 1$"],
                                capture_output=True, text=True).stdout.split()
        self.assertEqual(len(shard1), 1)
        os.kill(int(shard1[0]), 9)
        state, code = self.slurm.wait_job_end(job, timeout=90)
        self.assertEqual(state, "FAILED", self.job_log("homog3"))
        self.assertIn("shard-1 failed", self.job_log("homog3"))
        deadline = time.time() + 30
        while members_running(run_dir) and time.time() < deadline:
            time.sleep(0.5)
        self.assertEqual(members_running(run_dir), [])


if __name__ == "__main__":
    if os.geteuid() != 0 or slurm_harness.missing_tools():
        print(f"skipped: needs root and {slurm_harness.missing_tools()}")
        sys.exit(77)
    unittest.main(argv=sys.argv[:1], verbosity=2)
