"""airgap's webhook deployed into a real API server (tests/support/kubecluster.py), for the end-to-end tests,
scripts/bench_cluster.py and the demo.

The objects are the ones airgap renders (``airgap webhook manifests``, or the Helm chart), applied with kubectl as
they are, with ONE deviation: each webhook's ``clientConfig.service`` becomes ``clientConfig.url`` to the webhook
on loopback, since no kube-proxy (nor kubelet) runs. What the webhook then runs is read back from the cluster:
:func:`stored_deployment` takes the image, args and env of the stored Deployment and writes the trust directory
and TLS files from the stored ConfigMap (through the volume's ``items``) and Secret, so the webhook serves
exactly what the API server holds. A runner starts it: :class:`ProcessRunner` (``python -m airgap.cli`` with
those args) or :class:`ContainerRunner` (the image itself with podman: ``--network=host``, ``--read-only``, user
65532, the files mounted where the Deployment mounts them). The only arguments changed are where it listens
(``--host 127.0.0.1 --port P``) and, for a process, the mount paths (the materialized directories instead).

Every wait has a deadline; runners always stop what they started (SIGTERM, then SIGKILL / ``podman rm -f``).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from support.kubecluster import KubeCluster, free_port

HOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
WEBHOOK_UID = 65532
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    resources: [{group: "", resources: [pods]}, {group: apps, resources: [deployments]}]
  - level: None
"""


def audit_args(directory: Path) -> tuple[str, ...]:
    """kube-apiserver flags that write an audit log (pods and Deployments, metadata level: webhook audit
    annotations included) to ``directory/audit.log``; read it with :func:`audit_events`."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "audit-policy.yaml").write_text(AUDIT_POLICY)
    return (f"--audit-policy-file={directory / 'audit-policy.yaml'}", f"--audit-log-path={directory / 'audit.log'}",
            "--audit-log-mode=blocking", "--audit-log-format=json")


def audit_events(directory: Path) -> list[dict[str, Any]]:
    path = directory / "audit.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---- objects --------------------------------------------------------------------------------------------------

def airgap_cli(*args: str, input: str | None = None, env: dict[str, str] | None = None,
               timeout: float = 300) -> str:
    """Run ``airgap ARGS`` (this interpreter's airgap) and return its stdout; raise with stderr on failure."""
    proc = subprocess.run([sys.executable, "-m", "airgap.cli", *args], capture_output=True, text=True, input=input,
                          env={**os.environ, **(env or {})}, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"airgap {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def load_objects(text: str) -> list[dict[str, Any]]:
    import yaml

    return [doc for doc in yaml.safe_load_all(text) if doc]


def rendered(*args: str) -> list[dict[str, Any]]:
    """The objects ``airgap webhook manifests ARGS`` prints."""
    return load_objects(airgap_cli("webhook", "manifests", *args))


def helm_rendered(helm: str, chart: Path, namespace: str, values: Path, *sets: str,
                  home: Path | None = None) -> list[dict[str, Any]]:
    """The objects ``helm template`` renders from ``chart`` with ``values`` (and ``--set`` ``sets``)."""
    env = dict(os.environ)
    if home is not None:
        env.update(HELM_CACHE_HOME=str(home / "cache"), HELM_CONFIG_HOME=str(home / "config"),
                   HELM_DATA_HOME=str(home / "data"))
    argv = [helm, "template", "airgap", str(chart), "--namespace", namespace, "-f", str(values)]
    for item in sets:
        argv += ["--set", item]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"helm template failed: {proc.stderr.strip()}")
    return load_objects(proc.stdout)


def on_loopback(objects: Iterable[dict[str, Any]], port: int) -> list[dict[str, Any]]:
    """The objects with each webhook's ``clientConfig.service`` replaced by ``url: https://127.0.0.1:PORT/PATH``
    (same path, same caBundle): the one deviation from what was rendered."""
    out = copy.deepcopy(list(objects))
    for obj in out:
        if obj["kind"] in HOOK_KINDS:
            for hook in obj["webhooks"]:
                client = hook["clientConfig"]
                path = client["service"].get("path", "/")
                hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": client["caBundle"]}
    return out


def apply(cluster: KubeCluster, objects: Sequence[dict[str, Any]]) -> str:
    """``kubectl apply -f -`` of ``objects`` (server-side field manager as kubectl's default)."""
    import yaml

    return cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects, sort_keys=False)).stdout


def find(objects: Iterable[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind)


# ---- what the stored Deployment runs ----------------------------------------------------------------------------

@dataclass
class StoredDeployment:
    """The webhook container as the cluster stores it, and its volumes written out under ``root``."""

    image: str
    args: list[str]
    env: dict[str, str]
    mounts: dict[str, Path]  # mount path in the container -> the directory written here
    ca: Path  # the webhook configurations' caBundle, as a file (to check the webhook's certificate)

    def local_args(self, port: int) -> list[str]:
        """``args`` for a process on this host: mount paths replaced by the directories, listening on loopback."""
        out = []
        for arg in self.args:
            for mount, directory in self.mounts.items():
                if arg == mount or arg.startswith(mount + "/"):
                    arg = str(directory) + arg[len(mount):]
            out.append(arg)
        return listen_on(out, port)


def listen_on(args: list[str], port: int) -> list[str]:
    """``args`` with ``--port`` set to ``port`` and ``--host 127.0.0.1`` (the only other change made)."""
    out = list(args)
    if "--port" in out:
        out[out.index("--port") + 1] = str(port)
    else:
        out += ["--port", str(port)]
    return [*out, "--host", "127.0.0.1"]


def stored_deployment(cluster: KubeCluster, name: str, namespace: str, root: Path) -> StoredDeployment:
    """Read the Deployment ``name`` back from the cluster and write its ConfigMap and Secret volumes under ``root``
    (fresh), as the kubelet would: ConfigMap ``items`` key -> path, Secret keys as files, readable by the
    webhook's user (65532, the pod's fsGroup)."""
    deploy = cluster.get_json("deployment", name, f"--namespace={namespace}")
    pod = deploy["spec"]["template"]["spec"]
    container = pod["containers"][0]
    volumes = {v["name"]: v for v in pod["volumes"]}
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    mounts: dict[str, Path] = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        target = root / mount["name"]
        target.mkdir()
        if "configMap" in volume:
            data = cluster.get_json("configmap", volume["configMap"]["name"], f"--namespace={namespace}")["data"]
            items = volume["configMap"].get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                path = target / item["path"]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(data[item["key"]])
        elif "secret" in volume:
            secret = cluster.get_json("secret", volume["secret"]["secretName"], f"--namespace={namespace}")
            for key, value in secret["data"].items():
                (target / key).write_bytes(base64.b64decode(value))
        elif "emptyDir" in volume:
            continue  # the container's own /tmp (podman --read-only gives a tmpfs there)
        else:
            raise ValueError(f"volume {mount['name']}: not a ConfigMap, Secret or emptyDir")
        mounts[mount["mountPath"]] = target
    for directory in mounts.values():
        for path in [directory, *directory.rglob("*")]:
            os.chown(path, 0, WEBHOOK_UID)
            path.chmod(0o750 if path.is_dir() else 0o640)
    hooks = cluster.get_json("validatingwebhookconfiguration", name)["webhooks"]
    ca = root / "ca.crt"
    ca.write_bytes(base64.b64decode(hooks[0]["clientConfig"]["caBundle"]))
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    return StoredDeployment(container["image"], list(container["args"]), env, mounts, ca)


# ---- runners ----------------------------------------------------------------------------------------------------

def https_get(port: int, path: str, ca: Path, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET over HTTPS from the webhook on loopback, checking its certificate against ``ca`` (for 127.0.0.1)."""
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}{path}", timeout=timeout,  # noqa: S310 - loopback
                                    context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Runner(Protocol):
    """Starts the stored Deployment's webhook on a loopback port; ``stop`` ends it."""

    port: int
    ready_after: float | None

    @property
    def pid(self) -> int: ...

    def start(self, deployment: StoredDeployment) -> None: ...

    def stop(self) -> None: ...

    def output(self) -> str: ...


def _wait_ready(port: int, ca: Path, alive: Callable[[], bool], output: Callable[[], str], timeout: float) -> float:
    """Seconds until ``/readyz`` answered 200; raises with the output when the webhook exits or is late."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        if not alive():
            raise RuntimeError(f"the webhook exited before it was ready:\n{output()[-4000:]}")
        try:
            if https_get(port, "/readyz", ca, timeout=1.0)[0] == 200:
                return time.monotonic() - started
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the webhook was not ready within {timeout:g} s:\n{output()[-4000:]}")
        time.sleep(0.02)


@dataclass
class ProcessRunner:
    """``python -m airgap.cli`` with the stored Deployment's args (this checkout's airgap)."""

    port: int
    log_dir: Path
    timeout: float = 60.0
    ready_after: float | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log: Path | None = field(default=None, repr=False)

    def start(self, deployment: StoredDeployment) -> None:
        if self._proc is not None:
            raise RuntimeError("already running")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_dir / f"webhook-{uuid.uuid4().hex[:8]}.log"
        argv = [sys.executable, "-m", "airgap.cli", *deployment.local_args(self.port)]
        setpriv = shutil.which("setpriv")
        if setpriv:  # killed by the kernel if the test run dies
            argv = [setpriv, "--pdeathsig", "KILL", "--", *argv]
        began = time.monotonic()
        with self._log.open("wb") as sink:
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                                          env={**os.environ, **deployment.env})
        try:
            _wait_ready(self.port, deployment.ca, lambda: self._proc is not None and self._proc.poll() is None,
                        self.output, self.timeout)
        except BaseException:
            self.stop()
            raise
        self.ready_after = time.monotonic() - began

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def output(self) -> str:
        return self._log.read_text(errors="replace") if self._log and self._log.exists() else ""

    @property
    def pid(self) -> int:
        return self._proc.pid if self._proc is not None else 0


@dataclass
class ContainerRunner:
    """The webhook image with podman, as the Deployment runs it: ``--read-only``, user 65532, no capabilities,
    the ConfigMap and Secret mounted read-only where the Deployment mounts them, ``--network=host`` (the API
    server reaches it on loopback)."""

    port: int
    podman: Any  # support.podman.Podman
    log_dir: Path
    timeout: float = 60.0
    ready_after: float | None = None
    _container: Any = field(default=None, repr=False)

    def start(self, deployment: StoredDeployment) -> None:
        from support.podman import Container

        if self._container is not None:
            raise RuntimeError("already running")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        name = f"airgap-e2e-{uuid.uuid4().hex[:10]}"
        log = self.log_dir / f"{name}.log"
        options = ["--network=host", "--read-only", "--user", f"{WEBHOOK_UID}:{WEBHOOK_UID}", "--cap-drop=ALL",
                   "--security-opt=no-new-privileges"]
        for mount, directory in deployment.mounts.items():
            options += ["-v", f"{directory}:{mount}:ro"]
        for key, value in deployment.env.items():
            options += ["-e", f"{key}={value}"]
        began = time.monotonic()
        with log.open("wb") as sink:
            process = self.podman.popen("run", "--rm", "--name", name, *options, deployment.image,
                                        *listen_on(deployment.args, self.port),
                                        stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT)
        self._container = Container(name, process, log, began)
        try:
            _wait_ready(self.port, deployment.ca, lambda: process.poll() is None, self.output, self.timeout)
        except BaseException:
            self.stop()
            raise
        self.ready_after = time.monotonic() - began

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (``podman run`` passes it on), wait until the container is no longer running (at most ``grace``
        seconds), then ``podman rm -f``. Not support.podman.stop_container, which waits for ``podman run`` itself:
        on this kind of machine that returns ~20 s after its container exited (podman's own clean-up step
        stalls), which would add those seconds to every restart."""
        container, self._container = self._container, None
        if container is None:
            return
        process = container.process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while process.poll() is None and time.monotonic() < deadline:
            state = self.podman.run("inspect", "--format", "{{.State.Running}}", container.name, check=False,
                                    timeout=30)
            if state.returncode != 0 or state.stdout.strip() != b"true":
                break
            time.sleep(0.1)
        self.podman.run("rm", "-f", "-t", "0", "--ignore", container.name, check=False, timeout=60)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def output(self) -> str:
        return self._container.output() if self._container is not None else ""

    @property
    def pid(self) -> int:
        """The container's first process, as the host sees it (conmon, not ``podman run``, is its parent)."""
        if self._container is None:
            return 0
        state = self.podman.run("inspect", "--format", "{{.State.Pid}}", self._container.name, check=False)
        return int(state.stdout.strip() or 0) if state.returncode == 0 else 0


# ---- the webhook in the cluster ---------------------------------------------------------------------------------

@dataclass
class WebhookInCluster:
    """Deploy rendered objects into ``cluster`` and run what they say with ``runner``."""

    cluster: KubeCluster
    runner: Runner
    work: Path
    name: str = "airgap-webhook"
    namespace: str = "airgap-system"
    applied: list[dict[str, Any]] = field(default_factory=list)
    deployment: StoredDeployment | None = None

    def deploy(self, objects: Sequence[dict[str, Any]], *, probe_namespace: str, probe_image: str,
               timeout: float = 60.0) -> None:
        """Apply ``objects`` (webhooks on loopback), (re)start the webhook from the stored Deployment, and wait
        until the API server calls it (a server-side dry run reaches ``/mutate``)."""
        self.runner.stop()
        self.applied = on_loopback(objects, self.runner.port)
        apply(self.cluster, self.applied)
        self.deployment = stored_deployment(self.cluster, self.name, self.namespace, self.work / "volumes")
        self.start(probe_namespace=probe_namespace, probe_image=probe_image, timeout=timeout)

    def start(self, *, probe_namespace: str, probe_image: str, timeout: float = 60.0) -> None:
        if self.deployment is None:
            raise RuntimeError("nothing deployed")
        self.runner.start(self.deployment)
        self.wait_called(probe_namespace, probe_image, timeout)

    def stop(self) -> None:
        self.runner.stop()

    def metrics(self) -> dict[str, float]:
        """The webhook's /metrics, as {name{labels}: value}."""
        assert self.deployment is not None
        status, body = https_get(self.runner.port, "/metrics", self.deployment.ca)
        assert status == 200, body
        out = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def reviews(self) -> float:
        """Mutating plus validating reviews answered so far."""
        m = self.metrics()
        return sum(v for k, v in m.items() if k.startswith(("airgap_webhook_mutations_total",
                                                            "airgap_webhook_decisions_total")))

    def wait_called(self, namespace: str, image: str, timeout: float = 60.0) -> None:
        """Poll a server-side dry run of a pod in ``namespace`` until the API server has called the webhook (the
        configurations are picked up asynchronously); raise with kubectl's last answer at the deadline."""
        before = self.reviews()
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            result = self.cluster.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-",
                                          input=json.dumps(pod("probe", namespace, [image])), check=False)
            last = (result.stderr or result.stdout)[-2000:]
            if self.reviews() > before:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the API server did not call the webhook within {timeout:g} s; kubectl said: "
                                   f"{last}\nwebhook output:\n{self.runner.output()[-3000:]}")
            time.sleep(0.2)


def pod(name: str, namespace: str, images: Sequence[str], *, init: Sequence[str] = ()) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]}
    if init:
        spec["initContainers"] = [{"name": f"i{i}", "image": image} for i, image in enumerate(init)]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def deployment(name: str, namespace: str, images: Sequence[str]) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": pod(name, namespace, images)["spec"]}}}


__all__ = ["AUDIT_POLICY", "ContainerRunner", "ProcessRunner", "Runner", "StoredDeployment", "WebhookInCluster",
           "airgap_cli", "apply", "audit_args", "audit_events", "deployment", "find", "free_port", "helm_rendered",
           "on_loopback", "pod", "rendered", "stored_deployment"]
