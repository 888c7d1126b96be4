# SPDX-License-Identifier: Apache-2.0
"""`verdict config check|render` and the members' address handling, from the command line:
rendered configs check and carry the allocation's hosts; broken configs get one clear line each
(overlapping or missing layers, malformed or repeated addresses, a shard index that is empty);
a member binds a wildcard while peers dial its name; a coordinator whose shard never answers (or
whose name does not resolve) fails after its bounded wait, naming the shard.
Usage: config_cli_test.py BIN_DIR"""
import os
import re
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tools"))
import local_cluster  # noqa: E402

BIN = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(REPO, "build", "bin")
TEMPLATE = os.path.join(REPO, "deploy", "slurm", "cluster.template.textproto")


def verdict(*args, timeout=60):
    return subprocess.run([os.path.join(BIN, "verdict"), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)


def member(binary, *args, timeout=60, env=None):
    return subprocess.run([os.path.join(BIN, binary), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env=dict(os.environ, **(env or {})))


class ConfigCliTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def write(self, name, text):
        path = os.path.join(self.tmp.name, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_render_then_check(self):
        out = os.path.join(self.tmp.name, "c.textproto")
        r = verdict("config", "render", "--template", TEMPLATE, "--shard-hosts", "node-a\nnode-b node-c",
                    "--draft-host", "node-d", "--coordinator-host", "node-d", "--bind-host", "0.0.0.0", "--out", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out) as f:
            text = f.read()
        self.assertIn("`verdict config render`", text)
        for i, host in enumerate(("node-a", "node-b", "node-c")):
            self.assertIn(f'listen: "{host}:{50071 + i}"', text)
        self.assertIn('bind: "0.0.0.0:50051"', text)
        # The arithmetic target has 4 layers (read from the model): 3 shards get 2, 1, 1.
        self.assertIn("layer_begin: 2\n  layer_end: 3", text)
        r = verdict("config", "check", out, "--files", "--for", "shard-2")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^ok: .*3 shards \(layers \[0, 2\) \[2, 3\) \[3, 4\) of 4\)")
        # JSON renders too, and checks the same.
        r = verdict("config", "render", "--template", TEMPLATE, "--shard-hosts", "a,b", "--draft-host", "d",
                    "--coordinator-host", "d", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = verdict("config", "check", self.write("c.json", r.stdout))
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_broken_configs_get_one_clear_line(self):
        base = f'target {{ path: "{local_cluster.TARGET}" }} coordinator {{ listen: "c:1" }} '
        cases = {
            'shards { listen: "a:2" layer_begin: 0 layer_end: 3 } shards { listen: "b:2" data_listen: "b:3" layer_begin: 2 layer_end: 4 }':
                "overlaps the layers before it",
            'shards { listen: "a:2" layer_begin: 0 layer_end: 2 } shards { listen: "b:2" data_listen: "b:3" layer_begin: 3 layer_end: 4 }':
                "leaves layers [2, 3) to no shard",
            'shards { listen: "a:2" layer_begin: 0 layer_end: 3 }': "the shards cover layers [0, 3) but the target has 4",
            'shards { listen: "a" layer_begin: 0 layer_end: 4 }': 'shards[0].listen: address "a" has no port',
            'shards { listen: "a:2" admin_listen: "a:2" layer_begin: 0 layer_end: 4 }': "is used twice",
            'shards { listen: "0.0.0.0:2" layer_begin: 0 layer_end: 4 }': "which peers cannot dial",
            'shards { listen: "a:2" layer_begin: 0 layer_end: 4 } bogus: 1': "bogus",
        }
        for body, why in cases.items():
            r = verdict("config", "check", self.write("bad.textproto", base + body))
            self.assertEqual(r.returncode, 1, body)
            self.assertIn(why, r.stderr, body)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        r = verdict("config", "check", self.write("files.textproto", base.replace(local_cluster.TARGET, "/nope") +
                                                  'shards { listen: "a:2" layer_begin: 0 layer_end: 4 }'), "--files")
        self.assertEqual(r.returncode, 1)
        self.assertIn("target.path: /nope does not exist on this host", r.stderr)

    def test_shard_index_must_be_given(self):
        config, _ = local_cluster.write_config(self.tmp.name, 2, "grpc")
        for bad in ("", "x", "2"):
            r = member("verdict-shard", "--config", config, "--shard", bad)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("--shard", r.stderr)
        self.assertIn("is empty", member("verdict-shard", "--config", config, "--shard", "").stderr)

    def test_member_binds_a_wildcard_and_is_dialed_by_name(self):
        # Shard and coordinator bind 0.0.0.0 (flags and config) while the config names them by
        # "localhost": a generation through them works.
        config, addr = local_cluster.write_config(self.tmp.name, 2, "grpc")
        with open(config) as f:
            text = f.read().replace('"127.0.0.1:', '"localhost:')
        text, binds = re.subn(r'(?<![a-z_])listen: "localhost:(\d+)"', r'listen: "localhost:\1" bind: "0.0.0.0:\1"', text)
        self.assertEqual(binds, 4)  # coordinator, draft, two shards
        config = self.write("named.textproto", text)
        cluster = local_cluster.Cluster(BIN, config)
        try:
            r = subprocess.run([os.path.join(BIN, "verdict"), "client", "generate", "--addr",
                                addr.replace("127.0.0.1", "localhost"), "--prompt", "Q: 1+1=?\nA:", "--max-tokens", "8"],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
        finally:
            cluster.stop()

    def test_unreachable_or_unresolvable_shard_fails_the_coordinator_naming_it(self):
        port = local_cluster.free_ports(1)[0]
        for host in ("127.0.0.1", "verdict-shard-0.no-such-service.invalid"):
            config = self.write("c.textproto", f'''
                target {{ path: "{local_cluster.TARGET}" }}
                coordinator {{ listen: "127.0.0.1:{local_cluster.free_ports(1)[0]}" member_wait_seconds: 3 }}
                shards {{ listen: "{host}:{port}" layer_begin: 0 layer_end: 4 }}
                transport {{ kind: KIND_GRPC }}''')
            r = member("verdict-coordinator", "--config", config, timeout=60, env={"GRPC_DNS_RESOLVER": "native"})
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn(f"target shard 0 ({host}:{port}) did not describe itself", r.stderr)
            self.assertIn(f"waiting for target shard 0 ({host}:{port})", r.stderr)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
