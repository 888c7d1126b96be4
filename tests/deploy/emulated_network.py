# SPDX-License-Identifier: Apache-2.0
"""Machines emulated on one host for the deploy tests: a Linux bridge in the root network namespace
(address NET.1, which the root namespace uses to reach them) and one network namespace per
machine, attached by a veth pair whose inside end is eth0 with address NET.N. Root only
(iproute2). Shared by slurm_harness.py (simulated nodes) and pod_emulator.py (pods)."""
import os
import signal
import subprocess


def run(*cmd, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r


class StartStop:
    """Context manager over start() and stop(); stop() also runs when start() fails part-way."""

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()


class EmulatedNetwork:
    def __init__(self, tag, net):
        """tag: a short prefix for interface and namespace names (interface names have 15
        characters at most); net: the /24's first three octets, e.g. "10.231.0"."""
        self.tag, self.net = tag, net
        self.bridge = f"{tag}br"
        self.namespaces = []

    def create(self):
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run("ip", "addr", "add", f"{self.net}.1/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")

    def add_machine(self, index, default_route=False):
        """A namespace `<tag>-<index>` at NET.<index> (index 2..254); returns its name and address."""
        ns, veth, address = f"{self.tag}-{index}", f"{self.tag}v{index}", f"{self.net}.{index}"
        run("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        run("ip", "link", "set", veth, "master", self.bridge, "up")
        run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        if default_route:
            run("ip", "-n", ns, "route", "add", "default", "via", f"{self.net}.1")
        return ns, address

    def destroy(self):
        """Kills whatever still runs in the namespaces, then removes them and the bridge."""
        for ns in self.namespaces:
            for pid in run("ip", "netns", "pids", ns, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            run("ip", "netns", "del", ns, check=False)  # takes the veth pair along
        self.namespaces = []
        run("ip", "link", "del", self.bridge, check=False)
