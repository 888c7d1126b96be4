# SPDX-License-Identifier: Apache-2.0
"""A simulated multi-node Slurm cluster on this machine, for testing the deploy/slurm job scripts for
real: one slurmctld, one slurmd per simulated node, each node in its own network namespace (own
address on a private bridge, own loopback, own host name and /etc/hosts), and a private munged.
Nothing under /etc is edited: every Slurm command finds the private config through SLURM_CONF.
Needs root and Debian's slurmctld, slurmd, slurm-client, munge and iproute2 (scripts/setup.sh
--test). Every daemon is started here and stopped by PID; the namespaces and links are removed.
Facts this relies on are in ../shared/notes/deploy-harness.md (measured on this kind of machine)."""
import os
import shutil
import signal
import subprocess
import time

from emulated_network import EmulatedNetwork, StartStop, run as _run

SLURM_PACKAGES = ("slurmctld", "slurmd", "sbatch", "munged", "nsenter", "unshare", "ip")


def missing_tools():
    return [t for t in SLURM_PACKAGES if shutil.which(t) is None and not os.path.exists(f"/usr/sbin/{t}")]


class SimulatedSlurm(StartStop):
    """`nodes` simulated nodes n1..nN at 10.<subnet>.0.11.. on a bridge whose root-namespace end is
    10.<subnet>.0.1 (the controller's address). Use as a context manager."""

    def __init__(self, workdir, nodes=4, cpus=2, subnet=231):
        self.dir = os.path.abspath(workdir)
        self.nodes = [f"n{k}" for k in range(1, nodes + 1)]
        self.cpus = cpus
        self.net = f"10.{subnet}.0"
        self.network = EmulatedNetwork(f"vs{os.getpid() % 100000}", self.net)
        self.netns, self.address = {}, {}
        self.conf = os.path.join(self.dir, "slurm.conf")
        self.procs = []  # (name, Popen)
        self.logs = []
        self.env = dict(os.environ, SLURM_CONF=self.conf)

    # ---- lifetime ---------------------------------------------------------------------------------
    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        self._network()
        self._munge()
        self._write_config()
        log = open(os.path.join(self.dir, "slurmctld.out"), "w")
        # Its own UTS namespace: slurmctld insists that its host name is the configured one.
        self._spawn("slurmctld", ["unshare", "--uts", "--", "sh", "-c",
                                  f"hostname ctl && exec slurmctld -D -i -f {self.conf}"], log)
        for n in self.nodes:
            log = open(os.path.join(self.dir, f"slurmd-{n}.out"), "w")
            # nsenter --net, not `ip netns exec`: the latter remounts /sys and slurmd then refuses to
            # start. unshare gives the node its host name and its own /etc/hosts.
            self._spawn(f"slurmd-{n}", [
                "nsenter", f"--net=/run/netns/{self.netns[n]}", "--", "unshare", "--uts", "--mount", "--", "sh", "-c",
                f"hostname {n} && mount --bind {self.dir}/hosts /etc/hosts && exec slurmd -D -N {n} -f {self.conf}"], log)
        deadline = time.time() + 60
        while time.time() < deadline:
            for name, p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited ({p.returncode}); logs in {self.dir}")
            r = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, text=True, env=self.env)
            states = dict(line.split() for line in r.stdout.splitlines() if line.strip())
            if r.returncode == 0 and len(states) == len(self.nodes) and all(s == "idle" for s in states.values()):
                return
            time.sleep(0.5)
        raise RuntimeError(f"the simulated nodes did not become idle: {r.stdout} {r.stderr}")

    def stop(self):
        # Jobs first (their steps run under the slurmds), then the daemons, then whatever is still
        # running inside a node's namespace (a job step the daemons did not get to kill).
        if any(name == "slurmctld" and p.poll() is None for name, p in self.procs):
            r = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, env=self.env, timeout=30)
            jobs = r.stdout.split()
            if jobs:
                subprocess.run(["scancel", "--signal=KILL", "--full", *jobs], env=self.env, timeout=30,
                               capture_output=True)
                deadline = time.time() + 30
                while time.time() < deadline and subprocess.run(
                        ["squeue", "-h", "-o", "%i"], capture_output=True, text=True, env=self.env,
                        timeout=30).stdout.split():
                    time.sleep(0.5)
        for name, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p in reversed(self.procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        self.procs = []
        for log in self.logs:
            log.close()
        self.logs = []
        self.network.destroy()  # and whatever a job left running on a node

    # ---- parts ------------------------------------------------------------------------------------
    def _spawn(self, name, argv, log):
        self.logs.append(log)
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        self.procs.append((name, p))
        return p

    def _network(self):
        self.network.create()
        for k, n in enumerate(self.nodes, 1):
            self.netns[n], self.address[n] = self.network.add_machine(10 + k)
        with open(os.path.join(self.dir, "hosts"), "w") as f:
            f.write("127.0.0.1 localhost\n::1 localhost\n")
            f.write(f"{self.net}.1 ctl\n")
            for n in self.nodes:
                f.write(f"{self.address[n]} {n}\n")

    def _munge(self):
        key = os.path.join(self.dir, "munge.key")
        with open(key, "wb") as f:
            f.write(os.urandom(1024))
        os.chmod(key, 0o400)
        self.munge_socket = os.path.join(self.dir, "munge.socket")
        log = open(os.path.join(self.dir, "munged.out"), "w")
        self._spawn("munged", ["munged", "-F", "--force", f"--key-file={key}", f"--socket={self.munge_socket}",
                               f"--pid-file={self.dir}/munged.pid", f"--log-file={self.dir}/munged.log",
                               f"--seed-file={self.dir}/munged.seed"], log)
        deadline = time.time() + 20
        while not os.path.exists(self.munge_socket):
            if time.time() > deadline:
                raise RuntimeError("munged did not start")
            time.sleep(0.1)

    def _write_config(self):
        d = self.dir
        for sub in ("state", "spool"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        lines = [
            "ClusterName=verdicttest",
            f"SlurmctldHost=ctl({self.net}.1)",
            "SlurmctldPort=16817", "SlurmdPort=16818",
            "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={self.munge_socket}",
            "SlurmUser=root", "SlurmdUser=root",
            f"StateSaveLocation={d}/state", f"SlurmdSpoolDir={d}/spool/%n",
            f"SlurmctldPidFile={d}/slurmctld.pid", f"SlurmdPidFile={d}/slurmd-%n.pid",
            f"SlurmctldLogFile={d}/slurmctld.log", f"SlurmdLogFile={d}/slurmd-%n.log",
            # No cgroups here: process groups track the steps.
            "ProctrackType=proctrack/pgid", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU",
            # Heterogeneous jobs start only from the backfill scheduler; the default interval is 30 s.
            "SchedulerType=sched/backfill", "SchedulerParameters=bf_interval=1",
            "ReturnToService=2", "MpiDefault=none", "SwitchType=switch/none",
            "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
            "KillWait=5", "MinJobAge=600", "InactiveLimit=0",
        ]
        for n in self.nodes:
            lines.append(f"NodeName={n} NodeAddr={self.address[n]} CPUs={self.cpus} RealMemory=2000 State=UNKNOWN")
        lines.append("PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    # ---- jobs -------------------------------------------------------------------------------------
    def sbatch(self, *args, env=None, cwd=None):
        """Submits a job; returns its id."""
        r = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, timeout=60,
                           env=dict(self.env, **(env or {})), cwd=cwd)
        if r.returncode != 0:
            raise RuntimeError(f"sbatch failed: {r.stderr}")
        return r.stdout.strip().split(";")[0]

    def job_state(self, job_id):
        """(JobState, ExitCode) of a job, e.g. ("RUNNING", "0:0"); for a heterogeneous job, its leader."""
        r = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True,
                           env=self.env, timeout=30)
        fields = dict(kv.split("=", 1) for kv in r.stdout.split("\n")[0].split() if "=" in kv)
        return fields.get("JobState", "UNKNOWN"), fields.get("ExitCode", "")

    def wait_job_end(self, job_id, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            state, code = self.job_state(job_id)
            if state not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING"):
                return state, code
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} still {self.job_state(job_id)} after {timeout} s")

    def scancel(self, *args):
        subprocess.run(["scancel", *args], env=self.env, timeout=30, capture_output=True)
