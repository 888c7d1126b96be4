# SPDX-License-Identifier: Apache-2.0
"""Runs rendered Kubernetes Deployments and StatefulSets as processes, the way a kubelet would,
where no API server can run: each pod in its own network namespace (own address on a private
bridge), with its own host name, an /etc/hosts that plays cluster DNS (Service and StatefulSet
pod names -> pod addresses), its volumes bind-mounted where the manifest mounts them (ConfigMap
data written out, hostPath and emptyDir directories, the image's binaries from a local
directory), the manifest's env (literal and downward API) with $(VAR) expanded in command and
args, its securityContext's user and group, and its startup, readiness and liveness probes polled
over HTTP from the "node" (the root namespace), restarting a container whose liveness fails or
that exits (restartPolicy Always).

A ClusterIP Service gets a virtual address of its own that no pod holds, as on Kubernetes; its
name resolves to it, and nftables rules in every pod's namespace translate it to a ready-or-not
backing pod (kube-proxy's job; one backend per Service). Not emulated: scheduling, resource limits,
NetworkPolicy enforcement, image pulls, a read-only root file system. Needs root, iproute2, util-linux (nsenter, unshare,
setpriv) and nftables. Every process is started here and stopped by PID; mount points created on the host for
the pods' mounts are removed again."""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request

from emulated_network import EmulatedNetwork, StartStop, run as _run

# Started in the pod's namespaces as `sh -c SCRIPT pod-name mount-spec... -- command...` ($0 is the
# pod's name; each mount is SOURCE TARGET ro|rw).
_POD_SHELL = r'''
set -e
hostname "$0"
mount --make-rprivate /
while [ "$1" != "--" ]; do
  src="$1"; dst="$2"; mode="$3"; shift 3
  mount --bind "$src" "$dst"
  if [ "$mode" = ro ]; then mount -o remount,bind,ro "$dst"; fi
done
shift
exec "$@"
'''


class Pod:
    def __init__(self, name, namespace, spec, labels, ip, subdomain=None):
        self.name, self.namespace, self.spec, self.labels, self.ip = name, namespace, spec, labels, ip
        self.subdomain = subdomain
        self.container = spec["containers"][0]
        self.proc = None
        self.netns = None
        self.log_path = None
        self.started = False  # startup probe passed
        self.ready = False
        self.restarts = 0
        self.exits = []  # exit codes of past runs


class PodEmulator(StartStop):
    """manifests: the rendered objects (dicts). volumes: {hostPath or PVC claim name: local dir}.
    image_dirs: {path inside the image: local dir} (e.g. {"/opt/verdict/bin": build/bin})."""

    def __init__(self, manifests, workdir, volumes, image_dirs, cluster_domain="cluster.local", subnet=232,
                 patch_container=None):
        self.objects = manifests
        self.dir = os.path.abspath(workdir)
        self.volumes = volumes
        self.image_dirs = image_dirs
        self.domain = cluster_domain
        self.net = f"10.{subnet}.0"
        self.vip_net = f"10.96.{subnet}"  # Service addresses
        self.services = []  # (virtual address, pod address, [(service port, container port)])
        self.network = EmulatedNetwork(f"pe{os.getpid() % 100000}", self.net)
        self.pods = []
        self.created_dirs = []
        self.stop_event = threading.Event()
        self.threads = []
        self.lock = threading.Lock()
        self.patch_container = patch_container  # f(pod_name, container) for negative tests
        self._next_ip = 10

    # ---- lifetime ---------------------------------------------------------------------------------
    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        self.network.create()
        for obj in self.objects:
            if obj["kind"] == "Deployment":
                for i in range(obj["spec"].get("replicas", 1)):
                    self._add_pod(f"{obj['metadata']['name']}-{i}", obj, {})
            elif obj["kind"] == "StatefulSet":
                for i in range(obj["spec"].get("replicas", 1)):
                    self._add_pod(f"{obj['metadata']['name']}-{i}", obj,
                                  {"apps.kubernetes.io/pod-index": str(i),
                                   "statefulset.kubernetes.io/pod-name": f"{obj['metadata']['name']}-{i}"},
                                  subdomain=obj["spec"]["serviceName"])
        self._write_hosts()
        for pod in self.pods:
            self._kube_proxy(self._netns(pod))
        self.client_ns()  # set up now, settled before the first request
        for pod in self.pods:  # like a kubelet: every pod at once, no ordering
            self._launch(pod)
            t = threading.Thread(target=self._probe_loop, args=(pod,), daemon=True)
            t.start()
            self.threads.append(t)

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=30)
        for pod in self.pods:
            self._kill(pod)
        self.network.destroy()
        for d in reversed(self.created_dirs):
            try:
                os.rmdir(d)
            except OSError:
                pass

    # ---- pods ---------------------------------------------------------------------------------------
    def _netns(self, pod):
        return pod.netns

    def _add_pod(self, name, workload, extra_labels, subdomain=None, workload_pod=True):
        template = workload["spec"]["template"]
        labels = dict(template["metadata"].get("labels", {}), **extra_labels)
        pod = Pod(name, workload["metadata"].get("namespace", self.namespace_default()), template["spec"], labels,
                  None, subdomain)
        pod.netns, pod.ip = self.network.add_machine(self._next_ip, default_route=True)  # route: Service addresses
        self._next_ip += 1
        if workload_pod:
            self.pods.append(pod)
        return pod

    def namespace_default(self):
        return "default"

    def pod(self, prefix):
        return next(p for p in self.pods if p.name.startswith(prefix))

    def _selected(self, selector):
        return [p for p in self.pods if all(p.labels.get(k) == v for k, v in selector.items())]

    def _write_hosts(self):
        """Cluster DNS as a hosts file: Services (to their pods), StatefulSet pods by subdomain."""
        lines = ["127.0.0.1 localhost", "::1 localhost"]
        for obj in self.objects:
            if obj["kind"] != "Service":
                continue
            svc, ns = obj["metadata"]["name"], obj["metadata"].get("namespace", "default")
            fqdn = f"{svc}.{ns}.svc.{self.domain}"
            names = f"{fqdn} {svc}.{ns}.svc {svc}.{ns} {svc}"
            backends = self._selected(obj["spec"]["selector"])
            if not backends:
                raise AssertionError(f"Service {svc} selects no pod")
            ports = []  # (service port, container port)
            for port in obj["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                for p in backends:
                    cport = next((c["containerPort"] for c in p.container.get("ports", []) if c["name"] == target or
                                  c["containerPort"] == target), None)
                    if cport is None:
                        raise AssertionError(f"Service {svc} port {port['name']} targets {target}, which pod {p.name} "
                                             "does not expose")
                ports.append((port["port"], cport))
            if obj["spec"].get("clusterIP") == "None":  # headless: names resolve to the pods themselves
                for p in backends:
                    if p.subdomain == svc:
                        lines.append(f"{p.ip} {p.name}.{fqdn} {p.name}.{svc}.{ns}.svc {p.name}.{svc}")
                lines.append(f"{backends[0].ip} {names}")
            else:
                if len(backends) != 1:
                    raise AssertionError(f"Service {svc}: {len(backends)} backends; only one is emulated")
                vip = f"{self.vip_net}.{len(self.services) + 10}"
                self.services.append((vip, backends[0].ip, ports))
                lines.append(f"{vip} {names}")
        for p in self.pods:
            lines.append(f"{p.ip} {p.name}")
        self.hosts = os.path.join(self.dir, "hosts")
        with open(self.hosts, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.resolv = os.path.join(self.dir, "resolv.conf")
        with open(self.resolv, "w") as f:  # no reachable name server: names come from the hosts file
            f.write(f"search default.svc.{self.domain} svc.{self.domain} {self.domain}\noptions ndots:5\n")

    def _kube_proxy(self, netns):
        """DNAT from each Service's virtual address to its pod, for connections made in `netns`."""
        rules = [f"ip daddr {vip} tcp dport {sport} dnat to {pod_ip}:{cport}"
                 for vip, pod_ip, ports in self.services for sport, cport in ports]
        script = "table ip kube-proxy {\n  chain output {\n    type nat hook output priority -100;\n" + \
                 "".join(f"    {r}\n" for r in rules) + "  }\n}\n"
        path = os.path.join(self.dir, "kube-proxy.nft")
        with open(path, "w") as f:
            f.write(script)
        _run("nsenter", f"--net=/run/netns/{netns}", "--", "nft", "-f", path)

    def _mkdir(self, path):
        missing = []
        p = path
        while not os.path.exists(p):
            missing.append(p)
            p = os.path.dirname(p)
        for d in reversed(missing):
            os.mkdir(d)
            self.created_dirs.append(d)

    def _volume_dir(self, pod, volume):
        d = os.path.join(self.dir, "volumes", pod.name, volume["name"])
        if "configMap" in volume:
            cm = next(o for o in self.objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] ==
                      volume["configMap"]["name"])
            os.makedirs(d, exist_ok=True)
            for key, text in cm.get("data", {}).items():
                with open(os.path.join(d, key), "w") as f:
                    f.write(text)
            return d
        if "emptyDir" in volume:
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o1777)
            return d
        if "hostPath" in volume:
            return self.volumes[volume["hostPath"]["path"]]
        if "persistentVolumeClaim" in volume:
            return self.volumes[volume["persistentVolumeClaim"]["claimName"]]
        raise AssertionError(f"volume {volume['name']}: kind not emulated ({list(volume)})")

    def _env(self, pod, container):
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME": pod.name,
               "HOME": "/tmp"}
        for e in container.get("env", []):
            if "value" in e:
                value = e["value"]
            else:
                field = e["valueFrom"]["fieldRef"]["fieldPath"]
                m = re.fullmatch(r"metadata\.labels\['([^']+)'\]", field)
                if m:
                    value = pod.labels.get(m.group(1), "")
                elif field == "metadata.name":
                    value = pod.name
                elif field == "metadata.namespace":
                    value = pod.namespace
                elif field == "status.podIP":
                    value = pod.ip
                else:
                    raise AssertionError(f"fieldRef {field} not emulated")
            env[e["name"]] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), value)
        return env

    def _launch(self, pod):
        container = json.loads(json.dumps(pod.container))
        if self.patch_container:
            self.patch_container(pod.name, container)
        env = self._env(pod, container)
        expand = lambda s: re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), s)
        argv = [expand(a) for a in container.get("command", []) + container.get("args", [])]
        mounts = []
        volumes = {v["name"]: v for v in pod.spec.get("volumes", [])}
        for inside, local in self.image_dirs.items():
            self._mkdir(inside)
            mounts += [local, inside, "ro"]
        for m in container.get("volumeMounts", []):
            src = self._volume_dir(pod, volumes[m["name"]])
            self._mkdir(m["mountPath"])
            mounts += [src, m["mountPath"], "ro" if m.get("readOnly") else "rw"]
        mounts += [self.hosts, "/etc/hosts", "ro", self.resolv, "/etc/resolv.conf", "ro"]
        # A mount over a directory that holds other mounts' sources (an emptyDir on /tmp, where
        # this emulator's files may live) goes last, or it would hide them.
        triples = [mounts[i:i + 3] for i in range(0, len(mounts), 3)]
        hides = lambda t: any(o[0].startswith(t[1].rstrip("/") + "/") for o in triples if o is not t)
        mounts = [x for t in sorted(triples, key=hides) for x in t]
        security = dict(pod.spec.get("securityContext", {}), **container.get("securityContext", {}))
        user = []
        if "runAsUser" in security:
            user = ["setpriv", f"--reuid={security['runAsUser']}", f"--regid={security.get('runAsGroup', 0)}",
                    "--clear-groups", "--"]
        pod.log_path = os.path.join(self.dir, f"{pod.name}.log")
        log = open(pod.log_path, "a")
        pod.proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self._netns(pod)}", "--", "unshare", "--mount", "--uts", "--",
             "sh", "-c", _POD_SHELL, pod.name, *mounts, "--", *user, *argv],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd="/", start_new_session=True)
        log.close()
        pod.started = pod.ready = False

    def _kill(self, pod, sig=signal.SIGKILL):
        if pod.proc is not None and pod.proc.poll() is None:
            try:
                os.killpg(pod.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                pod.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(pod.proc.pid, signal.SIGKILL)
                pod.proc.wait(timeout=10)

    def _http_probe(self, pod, probe):
        get = probe["httpGet"]
        port = get["port"]
        if isinstance(port, str):
            port = next(c["containerPort"] for c in pod.container["ports"] if c["name"] == port)
        scheme = get.get("scheme", "HTTP").lower()
        try:
            with urllib.request.urlopen(f"{scheme}://{pod.ip}:{port}{get['path']}", timeout=1) as r:
                return 200 <= r.status < 400
        except Exception:
            return False

    def _probe_loop(self, pod):
        c = pod.container
        failures = 0
        while not self.stop_event.is_set():
            if pod.proc.poll() is not None:  # restartPolicy Always
                with self.lock:
                    pod.exits.append(pod.proc.returncode)
                    pod.restarts += 1
                if self.stop_event.wait(min(10, 0.5 * 2 ** min(pod.restarts, 5))):  # back-off
                    return
                self._launch(pod)
                failures = 0
                continue
            if not pod.started:
                probe = c.get("startupProbe")
                ok = probe is None or self._http_probe(pod, probe)
                failures = 0 if ok else failures + 1
                if ok:
                    pod.started = True
                elif failures >= probe["failureThreshold"]:
                    self._kill(pod, signal.SIGTERM)
                    continue
                self.stop_event.wait(probe["periodSeconds"] if probe else 0.2)
                continue
            readiness, liveness = c.get("readinessProbe"), c.get("livenessProbe")
            pod.ready = readiness is None or self._http_probe(pod, readiness)
            if liveness is not None and not self._http_probe(pod, liveness):
                failures += 1
                if failures >= liveness["failureThreshold"]:
                    self._kill(pod, signal.SIGTERM)
                    continue
            else:
                failures = 0
            self.stop_event.wait(min(p["periodSeconds"] for p in (readiness, liveness) if p) if (readiness or liveness) else 1)

    # ---- for tests ------------------------------------------------------------------------------------
    def wait_ready(self, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if all(p.ready for p in self.pods):
                return
            time.sleep(0.2)
        raise AssertionError("pods not ready: " + ", ".join(
            f"{p.name} (started {p.started}, ready {p.ready}, restarts {p.restarts}, exits {p.exits}): "
            f"{self.log_tail(p)}" for p in self.pods if not p.ready))

    def log_tail(self, pod, lines=5):
        try:
            with open(pod.log_path) as f:
                return " | ".join(f.read().splitlines()[-lines:])
        except OSError:
            return ""

    def client_ns(self):
        """A client pod's network namespace and hosts file (for commands run "inside the cluster")."""
        if not hasattr(self, "_client"):
            pod = self._add_pod("client", {"metadata": {"name": "client"},
                                           "spec": {"template": {"metadata": {}, "spec": {"containers": [{}]}}}}, {},
                                workload_pod=False)
            self._client = pod
            self._kube_proxy(self._netns(pod))
        return self._netns(self._client)

    def run_in_cluster(self, argv, timeout=120):
        """Runs argv in a client pod (its namespace, the cluster's hosts file)."""
        ns = self.client_ns()
        return subprocess.run(["nsenter", f"--net=/run/netns/{ns}", "--", "unshare", "--mount", "--", "sh", "-c",
                               'mount --make-rprivate / && mount --bind "$0" /etc/hosts && mount --bind "$1" '
                               '/etc/resolv.conf && shift && exec "$@"', self.hosts, self.resolv, *argv],
                              capture_output=True, text=True, timeout=timeout)
