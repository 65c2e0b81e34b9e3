"""The real API server the end-to-end tests need (tests/support/kubecluster.py) starts, stores objects through
kubectl, and stops without leaving processes behind. Needs etcd, kube-apiserver and kubectl
(scripts/install-peers.sh): skipped when they are missing, failed under CI=true."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import require_tool
from support.kubecluster import BINARIES, KubeCluster

pytestmark = [pytest.mark.peer("kube-apiserver"), pytest.mark.slow]


def test_cluster_stores_a_configmap_and_stops(tmp_path: Path) -> None:
    for tool in BINARIES:
        require_tool(tool)

    with KubeCluster(tmp_path / "kube") as cluster:
        assert cluster.running
        print(f"etcd healthy in {cluster.timings['etcd']:.2f} s, "
              f"kube-apiserver ready in {cluster.timings['apiserver']:.2f} s")
        cluster.kubectl("create", "namespace", "smoke")
        cluster.kubectl("create", "configmap", "greeting", "--namespace=smoke", "--from-literal=hello=air gap")
        stored = cluster.get_json("configmap", "greeting", "--namespace=smoke")
        assert stored["data"] == {"hello": "air gap"}
        assert stored["metadata"]["namespace"] == "smoke"

        missing = cluster.kubectl("get", "configmap", "absent", "--namespace=smoke", check=False)
        assert missing.returncode != 0 and "NotFound" in missing.stderr

        processes = cluster.processes
        assert sorted(processes) == ["etcd", "kube-apiserver"]

    assert not cluster.running
    for name, popen in processes.items():
        assert popen.returncode is not None, f"{name} (pid {popen.pid}) still running after stop()"
