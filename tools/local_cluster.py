# SPDX-License-Identifier: Apache-2.0
"""A local Verdict cluster for tests and benchmarks: a cluster config over free loopback ports with
the repository's arithmetic-world models, and `verdict up` run in its own process group (stopped and
reaped by PID)."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(REPO, "assets", "models")
TARGET = os.path.join(MODELS, "arith-target")
DRAFT = os.path.join(MODELS, "arith-draft")
HEAD = os.path.join(MODELS, "arith-judge", "judge-head.safetensors")


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def generate_reference(bin_dir, prompt, *args, max_tokens=96):
    """`verdict generate`'s continuation of `prompt` in one process (the target alone, or the decoding
    `args` name): what a cluster's output is compared with."""
    r = subprocess.run([os.path.join(bin_dir, "verdict"), "generate", "--model", TARGET, "--prompt", prompt,
                        "--max-tokens", str(max_tokens), "--quiet", *args], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(prompt), r.stdout
    return r.stdout[len(prompt):].rstrip("\n")


def write_config(tmp, shards, transport, pipelined=True, tokenizer=None, http=False, max_sessions=64,
                 http_timeout=None, session_lease=None, rpc_chaos=None, security=None):
    """transport: "ucx" (tcp, peer-failure handling), "ucx-shm" (shared memory, no peer-failure
    handling) or "grpc". tokenizer: the coordinator's tokenizer path (default: the target's).
    session_lease: seconds the workers keep a silent coordinator's sessions (default: the server's).
    rpc_chaos: fault injection on the coordinator's calls (clients/chaos/rpc_chaos.h), default off.
    security: the body of the config's `security { ... }` section (textproto), default none."""
    layers = {2: [(0, 2), (2, 4)], 3: [(0, 1), (1, 3), (3, 4)]}[shards]
    ports = free_ports(2 + 3 * shards + 3)
    lines = [
        'name: "test"',
        f'target {{ name: "arith-target" path: "{TARGET}"' + (f' tokenizer: "{tokenizer}"' if tokenizer else "") + ' }',
        f'coordinator {{ listen: "127.0.0.1:{ports[0]}" admin_listen: "127.0.0.1:{ports[-1]}" '
        'default_draft_window: 8 default_max_tokens: 96 '
        f'allowed_policies: [VERIFICATION_POLICY_JUDGE, VERIFICATION_POLICY_JUDGE_SHADOW] max_sessions: {max_sessions} '
        'draft_deadline_ms: 2000 '
        f'pipelined: {str(pipelined).lower()}' + (f' http_listen: "127.0.0.1:{ports[-2]}"' if http else "") +
        (f' http_request_timeout_seconds: {http_timeout}' if http_timeout else "") +
        (f' session_lease_seconds: {session_lease}' if session_lease else "") +
        (f' rpc_chaos: "{rpc_chaos}"' if rpc_chaos else "") + ' }',
        f'draft {{ listen: "127.0.0.1:{ports[1]}" admin_listen: "127.0.0.1:{ports[-3]}" model {{ path: "{DRAFT}" }} '
        'threads: 1 }',
    ]
    for i, (b, e) in enumerate(layers):
        judge = f' judge_head: "{HEAD}"' if i == shards - 1 else ""
        lines.append(f'shards {{ listen: "127.0.0.1:{ports[2 + 2 * i]}" data_listen: "127.0.0.1:{ports[3 + 2 * i]}" '
                     f'admin_listen: "127.0.0.1:{ports[2 + 2 * shards + i]}" '
                     f'layer_begin: {b} layer_end: {e} threads: 1{judge} }}')
    if transport == "ucx-shm":
        lines.append('transport { kind: KIND_UCX ucx_tls: "posix,sysv,cma,tcp" ucx_peer_failure_detection: false }')
    else:
        kind = "KIND_UCX" if transport == "ucx" else "KIND_GRPC"
        lines.append(f'transport {{ kind: {kind} ucx_tls: "tcp" }}')
    if security:
        lines.append(f"security {{ {security} }}")
    path = os.path.join(tmp, f"cluster-{shards}-{transport}-{int(pipelined)}.textproto")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    write_config.admin = f"127.0.0.1:{ports[-1]}"
    write_config.http = f"127.0.0.1:{ports[-2]}" if http else None
    write_config.draft_admin = f"127.0.0.1:{ports[-3]}"
    write_config.shard_admin = [f"127.0.0.1:{ports[2 + 2 * shards + i]}" for i in range(shards)]
    return path, f"127.0.0.1:{ports[0]}"


def grpc_stubs():
    """Python gRPC stubs generated from proto/verdict/v1 (grpcio-tools) into a temporary directory,
    as any client would make them: the verdict.v1 package with *_pb2 and *_pb2_grpc modules."""
    import tempfile
    from grpc_tools import protoc
    stubs = tempfile.mkdtemp()
    proto_dir = os.path.join(REPO, "proto")
    files = [os.path.join("verdict", "v1", f) for f in os.listdir(os.path.join(proto_dir, "verdict", "v1"))]
    if protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={stubs}", f"--grpc_python_out={stubs}", *files]) != 0:
        raise RuntimeError("protoc failed on proto/verdict/v1")
    sys.path.insert(0, stubs)
    return stubs


def read_metric(admin, name, labels=""):
    """The value of one Prometheus sample on a member's admin endpoint (None when it has none)."""
    with urllib.request.urlopen(f"http://{admin}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + labels + " "):
                return float(line.split()[-1])
    return None


class Cluster:
    """`verdict up` in its own process group; stopped (and reaped) by PID."""

    def __init__(self, bin_dir, config, extra=()):
        env = dict(os.environ, UCX_NET_DEVICES="lo")
        self.config = config
        self.proc = subprocess.Popen([os.path.join(bin_dir, "verdict"), "up", "--config", config, *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True, env=env)
        self.log = []
        deadline = time.time() + 120
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.log.append(line)
            if "ready:" in line:
                threading.Thread(target=self._drain, daemon=True).start()
                return
        self.stop()
        raise AssertionError("the cluster did not come up:\n" + "".join(self.log))

    def _drain(self):
        for line in self.proc.stdout:
            self.log.append(line)

    def member_pid(self, pattern):
        out = subprocess.run(["pgrep", "-g", str(self.proc.pid), "-f", pattern], capture_output=True, text=True)
        pids = [int(p) for p in out.stdout.split()]
        return pids[0] if pids else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # Nothing of the group may survive.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


