# SPDX-License-Identifier: Apache-2.0
"""The Helm chart (deploy/helm/verdict), offline and as running pods.

Offline: strict `helm lint` (the Helm v4 library, helm-python-sdk) of the defaults and every
example for three Kubernetes versions; every rendered manifest validated strictly against the
Kubernetes JSON schemas of those versions (kubernetes-validate); every file in helm_invalid/
refused by values.schema.json; the multi-node rules (replicas = shards, anti-affinity, headless
Service publishing not-ready pods, probes on every container, GPU limits, no literal secrets,
secrets mounted by reference, a config checksum that rolls the pods when the config changes, and
a cluster config that `verdict config check` accepts).

Running: the CPU example rendered and run by pod_emulator.py (pods as processes in network
namespaces with cluster DNS names in their hosts files, ConfigMap and volumes mounted, env and
probes honoured); a client inside the cluster gets judge-decoded answers through the coordinator's
Service name equal to the single-process output, over gRPC and over the OpenAI HTTP API (curl); a
shard pod that dies is restarted and serving resumes; a coordinator that binds its own Service
name (no --bind-host) fails to start, as it would on Kubernetes.
Usage: helm_test.py BIN_DIR   (the running part needs root; skipped without it)"""
import copy
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tools"))
sys.path.insert(0, HERE)
import arith_world  # noqa: E402
import local_cluster  # noqa: E402

BIN = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(REPO, "build", "bin")
CHART = os.path.join(REPO, "deploy", "helm", "verdict")
EXAMPLES = {name: os.path.join(CHART, "examples", f"{name}.yaml") for name in ("cpu-test", "one-node-8gpu", "multi-node")}
KUBE_VERSIONS = ("1.28.0", "1.31.0", "1.34.0")
NAMESPACE = "verdict"


def load_values(path):
    with open(path) as f:
        return yaml.safe_load(f) or {}


def render(values, name="v"):
    import helm_python as helm
    chart = helm.Chart.load(CHART)
    files = chart.render(values, name=name, namespace=NAMESPACE)
    objects = []
    for path, text in sorted(files.items()):
        if not path.endswith(".yaml"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("metadata", {}).setdefault("namespace", NAMESPACE)
                objects.append(doc)
    return files, objects


def merged(values):
    """The chart's defaults with `values` over them (what the templates saw)."""
    import helm_python as helm
    return helm.Chart.load(CHART).merge_values(values)


def find(objects, kind, component=None):
    return [o for o in objects if o["kind"] == kind and (
        component is None or o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component)]


class ChartOfflineTest(unittest.TestCase):
    def test_strict_lint_for_three_kubernetes_versions(self):
        import helm_python as helm
        for name, path in [("defaults", None), *EXAMPLES.items()]:
            values = load_values(path) if path else None
            for version in KUBE_VERSIONS:
                report = helm.lint(CHART, values, strict=True, kube_version=f"v{version}")
                problems = [m for m in report["messages"] if m["severity"] >= 2] + report.get("errors", [])
                self.assertEqual(problems, [], f"{name} on {version}")

    def test_manifests_validate_strictly_against_kubernetes_schemas(self):
        import kubernetes_validate
        for name, path in EXAMPLES.items():
            _, objects = render(load_values(path))
            kinds = {o["kind"] for o in objects}
            self.assertTrue({"StatefulSet", "Deployment", "Service", "ConfigMap", "NetworkPolicy",
                             "PodDisruptionBudget"} <= kinds, f"{name}: {kinds}")
            for obj in objects:
                if obj["apiVersion"].startswith("monitoring.coreos.com/"):
                    # A CRD the schemas do not know: check the fields the Prometheus Operator needs.
                    self.assertEqual(obj["kind"], "ServiceMonitor")
                    self.assertEqual(obj["spec"]["endpoints"][0]["port"], "admin")
                    continue
                for version in KUBE_VERSIONS:
                    try:
                        kubernetes_validate.validate(obj, version, strict=True)
                    except kubernetes_validate.ValidationError as e:
                        self.fail(f"{name}: {obj['kind']}/{obj['metadata']['name']} on {version}: "
                                  f"{'.'.join(map(str, e.path))}: {e.message}")

    def test_invalid_values_are_refused(self):
        import helm_python as helm
        chart = helm.Chart.load(CHART)
        invalid = sorted(os.listdir(os.path.join(HERE, "helm_invalid")))
        self.assertGreaterEqual(len(invalid), 8)
        for file in invalid:
            values = load_values(os.path.join(HERE, "helm_invalid", file))
            with self.assertRaises(Exception, msg=file) as e:
                chart.validate_schema(values)
            self.assertTrue(str(e.exception), file)
            with self.assertRaises(Exception, msg=file):
                chart.render(values, name="v", namespace=NAMESPACE)
        for path in EXAMPLES.values():
            chart.validate_schema(load_values(path))  # the examples are valid

    def test_multi_node_rules(self):
        for name, path in EXAMPLES.items():
            values = merged(load_values(path))
            files, objects = render(load_values(path))
            shards = values["shards"]
            sts = find(objects, "StatefulSet", "shard")
            self.assertEqual(len(sts), 1, name)
            sts = sts[0]
            self.assertEqual(sts["spec"]["replicas"], shards["count"], name)
            self.assertEqual(sts["spec"]["podManagementPolicy"], "Parallel")
            headless = next(s for s in find(objects, "Service", "shard"))
            self.assertEqual(sts["spec"]["serviceName"], headless["metadata"]["name"])
            self.assertEqual(headless["spec"]["clusterIP"], "None")
            self.assertTrue(headless["spec"]["publishNotReadyAddresses"])
            anti = sts["spec"]["template"]["spec"].get("affinity", {}).get("podAntiAffinity", {})
            if shards["antiAffinity"] == "required":
                terms = anti["requiredDuringSchedulingIgnoredDuringExecution"]
                self.assertEqual(terms[0]["topologyKey"], "kubernetes.io/hostname", name)
                self.assertEqual(terms[0]["labelSelector"]["matchLabels"]["app.kubernetes.io/component"], "shard")
            elif shards["antiAffinity"] == "none":
                self.assertEqual(anti, {}, name)
            pdb = find(objects, "PodDisruptionBudget")[0]
            self.assertEqual(pdb["spec"]["selector"]["matchLabels"], sts["spec"]["selector"]["matchLabels"])
            config_hash = hashlib.sha256(files["verdict/templates/configmap.yaml"].encode()).hexdigest()
            for workload in find(objects, "StatefulSet") + find(objects, "Deployment"):
                pod = workload["spec"]["template"]
                self.assertEqual(pod["metadata"]["annotations"]["checksum/config"], config_hash, name)
                self.assertTrue(pod["spec"]["securityContext"]["runAsNonRoot"])
                for c in pod["spec"]["containers"]:
                    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                        self.assertEqual(c[probe]["httpGet"]["port"], "admin", f"{name} {c['name']} {probe}")
                    self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
                    component = workload["metadata"]["labels"]["app.kubernetes.io/component"]
                    gpus = {"shard": shards["gpus"], "draft": values["draft"]["gpus"]}.get(component, 0)
                    limits = c.get("resources", {}).get("limits", {})
                    if gpus:
                        self.assertEqual(limits.get("nvidia.com/gpu"), gpus, f"{name} {component}")
                    else:
                        self.assertNotIn("nvidia.com/gpu", limits, f"{name} {component}")
                    for e in c.get("env", []):  # literal values only for non-secrets
                        self.assertNotRegex(e["name"], "(?i)key|token|secret|password", name)
            # Secrets: referenced by name, never created or inlined by the chart.
            self.assertEqual(find(objects, "Secret"), [], name)
            referenced = {v["secret"]["secretName"] for w in find(objects, "StatefulSet") + find(objects, "Deployment")
                          for v in w["spec"]["template"]["spec"]["volumes"] if "secret" in v}
            wanted = {s["existingSecret"] for s in values["security"].values() if s["existingSecret"]}
            self.assertEqual(referenced, wanted, name)
            # The cluster config checks.
            config = find(objects, "ConfigMap")[0]["data"]["cluster.textproto"]
            with tempfile.NamedTemporaryFile("w", suffix=".textproto") as f:
                f.write(config)
                f.flush()
                r = subprocess.run([os.path.join(BIN, "verdict"), "config", "check", f.name, "--num-layers",
                                    str(values["models"]["target"]["numLayers"])], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, f"{name}: {r.stderr}\n{config}")
            self.assertIn(f"{shards['count']} shard", r.stdout)

    def test_config_changes_roll_the_pods_and_nothing_else_does(self):
        base = load_values(EXAMPLES["cpu-test"])

        def checksum(values):
            _, objects = render(values)
            return find(objects, "Deployment", "coordinator")[0]["spec"]["template"]["metadata"]["annotations"][
                "checksum/config"]
        more_tokens = copy.deepcopy(base)
        more_tokens["coordinator"]["defaultMaxTokens"] = 200
        more_memory = copy.deepcopy(base)
        more_memory["shards"]["resources"]["limits"]["memory"] = "2Gi"
        self.assertNotEqual(checksum(base), checksum(more_tokens))
        self.assertEqual(checksum(base), checksum(more_memory))


@unittest.skipUnless(os.geteuid() == 0, "pod emulation needs root (network and mount namespaces)")
class ChartRunningTest(unittest.TestCase):
    """The CPU example as running pods."""

    @classmethod
    def setUpClass(cls):
        import pod_emulator
        cls.prompts = [arith_world.prompt(p) for p in arith_world.unique_problems(seed=31, split="eval", count=2)]
        cls.reference = {p: local_cluster.generate_reference(BIN, p, "--draft", local_cluster.DRAFT, "--judge",
                                                             local_cluster.HEAD, "--k", "16") for p in cls.prompts}
        cls.tmp = tempfile.TemporaryDirectory(prefix="verdict-pods-")
        values = load_values(EXAMPLES["cpu-test"])
        _, cls.objects = render(values)
        cls.cluster = pod_emulator.PodEmulator(
            cls.objects, cls.tmp.name, volumes={values["models"]["volume"]["hostPath"]: os.path.join(REPO, "assets", "models")},
            image_dirs={"/opt/verdict/bin": BIN})
        cls.cluster.__enter__()
        cls.service = f"v-verdict-coordinator.{NAMESPACE}.svc.cluster.local"

    @classmethod
    def tearDownClass(cls):
        cls.cluster.__exit__(None, None, None)
        cls.tmp.cleanup()

    def generate(self, prompt):
        # A connection refused right after the pods turned ready (seen once in CTest, never alone)
        # is retried a few times, as a client with wait-for-ready would.
        for attempt in range(5):
            r = self.cluster.run_in_cluster([os.path.join(BIN, "verdict"), "client", "generate", "--addr",
                                             f"{self.service}:50051", "--prompt", prompt, "--policy", "judge", "--k",
                                             "16", "--json"])
            if r.returncode == 0 or "UNAVAILABLE" not in r.stderr:
                break
            time.sleep(1)
        self.assertEqual(r.returncode, 0, r.stderr + "\n" + "\n".join(
            f"{p.name}: {self.cluster.log_tail(p)}" for p in self.cluster.pods))
        return json.loads(r.stdout)

    def test_answers_through_the_service_name_then_a_shard_restarts(self):
        self.cluster.wait_ready(timeout=120)
        for prompt in self.prompts:
            out = self.generate(prompt)
            self.assertEqual(out["text"], self.reference[prompt], prompt)
            self.assertLess(out["target_passes"], out["completion_tokens"])
        # An independent client over the OpenAI-compatible API, by the Service's name.
        body = json.dumps({"model": "arith-target", "prompt": self.prompts[0], "max_tokens": 96, "temperature": 0})
        r = self.cluster.run_in_cluster(["curl", "-sS", "--fail-with-body", "-H", "Content-Type: application/json",
                                         "-d", body, f"http://{self.service}:8000/v1/completions"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(json.loads(r.stdout)["choices"][0]["finish_reason"], "stop")

        # A shard pod's process dies: the "kubelet" restarts it at the same name, the coordinator
        # reconnects, and the same answers come back.
        shard = self.cluster.pod("v-verdict-shard-1")
        shard.proc.kill()
        self.cluster.wait_ready(timeout=120)
        answered = False
        for _ in range(60):
            r = self.cluster.run_in_cluster([os.path.join(BIN, "verdict"), "client", "generate", "--addr",
                                             f"{self.service}:50051", "--prompt", self.prompts[1], "--policy", "judge",
                                             "--k", "16", "--json"])
            if r.returncode == 0 and json.loads(r.stdout)["text"] == self.reference[self.prompts[1]]:
                answered = True
                break
            time.sleep(1)
        self.assertTrue(answered, r.stderr)
        self.assertGreaterEqual(shard.restarts, 1)


@unittest.skipUnless(os.geteuid() == 0, "pod emulation needs root (network and mount namespaces)")
class ChartMistakeTest(unittest.TestCase):
    def test_a_coordinator_binding_its_service_name_fails_to_start(self):
        import pod_emulator

        def drop_bind_host(pod, container):
            if pod.startswith("v-verdict-coordinator"):
                container["args"] = [a for a in container["args"] if a not in ("--bind-host", "0.0.0.0")]

        values = load_values(EXAMPLES["cpu-test"])
        _, objects = render(values)
        with tempfile.TemporaryDirectory(prefix="verdict-pods-") as tmp, pod_emulator.PodEmulator(
                objects, tmp, volumes={values["models"]["volume"]["hostPath"]: os.path.join(REPO, "assets", "models")},
                image_dirs={"/opt/verdict/bin": BIN}, subnet=233, patch_container=drop_bind_host) as cluster:
            coordinator = cluster.pod("v-verdict-coordinator")
            deadline = time.time() + 60
            while not coordinator.exits and time.time() < deadline:
                time.sleep(0.2)
            self.assertTrue(coordinator.exits, cluster.log_tail(coordinator))
            self.assertNotEqual(coordinator.exits[0], 0)
            self.assertFalse(coordinator.ready)
            self.assertIn("cannot", cluster.log_tail(coordinator))


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
