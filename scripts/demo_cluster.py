#!/usr/bin/env python3
"""The end of scripts/demo.sh: airgap's webhooks in a real API server admit a signed pod (pinned to the digest that
was verified) and refuse an unsigned one, shown through kubectl.

    scripts/demo_cluster.py --trust DIR --signed REF --unsigned REF --work DIR

Starts etcd + kube-apiserver on loopback (tests/support/kubecluster.py), makes the webhook's certificates with
`airgap webhook certs`, applies what `airgap webhook manifests` renders (clientConfig.url to loopback: no kube-proxy
runs here, nor a kubelet to run the Deployment), runs the webhook the stored Deployment describes as a process,
and creates the two pods with kubectl. Exit 0 when the signed pod was admitted pinned and the unsigned one
refused; everything it started is stopped on the way out. Exit 3 (nothing started) when etcd, kube-apiserver or
kubectl is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def show(command: str, output: str) -> None:
    print(f"    $ {command}")
    for line in output.strip().splitlines():
        print(f"      {line}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trust", required=True, type=Path)
    ap.add_argument("--signed", required=True)
    ap.add_argument("--unsigned", required=True)
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--image", default="", help="the webhook image the Deployment names [REGISTRY/airgap/webhook]")
    args = ap.parse_args()
    from support.kubecluster import KubeCluster, missing_binaries
    from support.webhookcluster import ProcessRunner, WebhookInCluster, airgap_cli, free_port, pod, rendered

    if missing := missing_binaries():
        print(f"{', '.join(missing)} not installed (scripts/install-peers.sh builds them)", file=sys.stderr)
        return 3
    image = args.image or f"{args.signed.split('/', 1)[0]}/airgap/webhook:0.1.0"
    certs = args.work / "certs"
    runner = ProcessRunner(free_port(), args.work / "logs")
    with KubeCluster(args.work / "kube") as cluster:
        try:
            print(f"    etcd + kube-apiserver ready in {sum(cluster.timings.values()):.1f} s ({cluster.url})")
            airgap_cli("webhook", "certs", "--service", "airgap-webhook", "--namespace", "airgap-system",
                       "--ip", "127.0.0.1", "-o", str(certs))
            cluster.kubectl("create", "namespace", "demo")
            objects = rendered("--image", image, "--trust", str(args.trust), "--certs", str(certs))
            print(f"    airgap webhook manifests: {', '.join(o['kind'] for o in objects)}")
            hook = WebhookInCluster(cluster, runner, args.work / "webhook")
            hook.deploy(objects, probe_namespace="demo", probe_image=args.signed)
            print(f"    webhook serving on 127.0.0.1:{runner.port} (ready in {runner.ready_after:.2f} s), "
                  f"called by the API server")
            ok = True
            for name, image_ref in (("signed", args.signed), ("unsigned", args.unsigned)):
                manifest = args.work / f"{name}-pod.json"
                manifest.write_text(json.dumps(pod(name, "demo", [image_ref]), indent=2))
                result = cluster.kubectl("create", "-f", str(manifest), check=False)
                show(f"kubectl create -f {manifest.name}   # image: {image_ref}", result.stdout + result.stderr)
                if name == "signed":
                    stored = cluster.get_json("pod", name, "--namespace=demo")["spec"]["containers"][0]["image"]
                    show("kubectl get pod signed -n demo -o jsonpath='{.spec.containers[0].image}'", stored)
                    ok &= result.returncode == 0 and stored.startswith(f"{image_ref}@sha256:")
                else:
                    ok &= result.returncode != 0 and "airgap denied" in result.stderr
            return 0 if ok else 1
        finally:
            runner.stop()


if __name__ == "__main__":
    sys.exit(main())
