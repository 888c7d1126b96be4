# SPDX-License-Identifier: Apache-2.0
"""The container image's runtime stage installs what the binaries load: every shared library that
`ldd` lists for verdict, verdict-shard, verdict-draft and verdict-coordinator belongs to a Debian
package the Containerfile's runtime stage installs, to one of their dependencies (apt-cache), or to
debian:12-slim itself. CUDA libraries are out of scope (the image is built with VERDICT_CUDA=OFF).
The image itself cannot be built here (no container runtime).
Usage: container_test.py BIN_DIR"""
import os
import re
import subprocess
import sys
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(REPO, "build", "bin")
CONTAINERFILE = os.path.join(REPO, "deploy", "container", "Containerfile")
BASE = {"libc6", "libstdc++6", "libgcc-s1", "zlib1g"}  # in debian:12-slim


def runtime_packages():
    with open(CONTAINERFILE) as f:
        text = f.read()
    runtime = text[text.rindex("FROM debian:12-slim"):]
    install = re.search(r"apt-get install -y --no-install-recommends(.*?)&&", runtime, re.S).group(1)
    return set(install.replace("\\", " ").split())


def with_dependencies(packages):
    r = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
                        "--no-breaks", "--no-replaces", "--no-enhances", *packages], capture_output=True, text=True)
    found = set(packages)
    for line in r.stdout.splitlines():
        m = re.match(r"\s*(?:\|)?(?:Pre)?Depends: <?([^ >]+)>?", line)
        if m:
            found.add(m.group(1).split(":")[0])
        elif line and not line.startswith(" "):
            found.add(line.strip().split(":")[0])
    return found


class ContainerTest(unittest.TestCase):
    def test_runtime_stage_provides_every_shared_library(self):
        provided = with_dependencies(sorted(runtime_packages())) | BASE
        missing = {}
        for binary in ("verdict", "verdict-shard", "verdict-draft", "verdict-coordinator"):
            ldd = subprocess.run(["ldd", os.path.join(BIN, binary)], capture_output=True, text=True, check=True).stdout
            for lib in re.findall(r"=> (/\S+)", ldd):
                if "/cuda" in lib:
                    continue
                real = os.path.realpath(lib)
                owner = None
                for path in (lib, real, real.replace("/usr/lib/", "/lib/"), real.replace("/lib/", "/usr/lib/", 1)):
                    r = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
                    if r.returncode == 0:
                        owner = r.stdout.split(":")[0]
                        break
                self.assertIsNotNone(owner, f"{binary}: no Debian package owns {lib}")
                if owner not in provided:
                    missing.setdefault(owner, set()).add(f"{binary}: {lib}")
        self.assertEqual(missing, {}, "add these packages to the Containerfile's runtime stage")


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
