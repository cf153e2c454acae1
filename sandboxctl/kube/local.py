"""The local proof: the CPU overlay and the Job played with ``podman kube play`` (4.3.1).

Podman 4.3.1 plays Pods, Deployments and PersistentVolumeClaims; it does not play
Services or NetworkPolicies, panics on a pod that mounts a ``secret`` volume, pulls
``localhost/`` images unless told not to, and cannot run a native sidecar. So the objects
``kubectl kustomize kube/overlays/cpu`` and ``kube/job`` build are adapted, openly, and
nothing else is changed (the containers, their hardening, limits, environment and
mounts stay as built):

- each Deployment's pod template is played as a Pod named ``PREFIX-SERVICE``, with
  ``imagePullPolicy: Never``;
- Services: each pod joins the Podman networks of its Compose service (internal, as in
  Compose) at a fixed address, and every pod that calls a service gets a ``hostAliases``
  entry mapping the service's name to that address, so ``http://model-server:8080``
  resolves as on a cluster, without relying on the engine's DNS; a Service's link
  variable (``$(MODEL_SERVER_SERVICE_HOST)``, which a kubelet expands to the Service's
  address) becomes the service's name, which those entries resolve;
- the egress component (``EGRESS_ALLOW``) is not played: the proof is the CPU overlay
  without it (its NetworkPolicies, like all of them, need a cluster);
- NetworkPolicies are not enforced: the internal networks stand in (no egress; the tools
  pod shares no network with the model server);
- the projected Secret volume becomes one read-only ``hostPath`` file per secret, from the
  sandbox's ``secrets/``, at the same path (``/run/secrets/NAME``);
- claims are prefixed (``PREFIX-logs``) so they cannot meet another stack's volumes;
- the Job runs its first index as a Pod: the tools sidecar becomes an ordinary container
  of the pod, ``JOB_COMPLETION_INDEX=0``, and the task list ConfigMap a read-only
  ``hostPath`` folder.
"""

from __future__ import annotations

import copy
import io
import ipaddress
import json
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sandboxctl._proc import Result, Runner
from sandboxctl.errors import SandboxError
from sandboxctl.kube import convert
from sandboxctl.kube.convert import Edge, Obj
from sandboxctl.stack.networks import NetworkSpec, create_argv
from sandboxctl.stack.project import probe_intervals

SUBNET_POOL = "10.231.0.0/16"
"""Where the proof's internal networks take their /24s (the first ones no network uses)."""
FIRST_HOST = 10
KUBE_DEFAULT_NETWORK = "podman-default-kube-network"


class LocalError(SandboxError, RuntimeError):
    """The local proof could not be played, or its task did not run; says what to do."""


@dataclass
class LocalPod:
    """One pod to play: its document and its networks (Compose name -> address)."""

    name: str
    doc: Obj
    addresses: dict[str, str] = field(default_factory=dict)


@dataclass
class LocalPlan:
    """Everything the proof creates, named from ``prefix``."""

    prefix: str
    networks: dict[str, str]
    """Compose network -> Podman network name."""
    subnets: dict[str, str]
    claims: list[Obj]
    pods: list[LocalPod]
    job_pod: LocalPod

    @property
    def volumes(self) -> list[str]:
        """The Podman volumes the claims become."""
        return [str(c["metadata"]["name"]) for c in self.claims]

    def all_pods(self) -> list[LocalPod]:
        """Every pod, in start order (the Job's last)."""
        return [*self.pods, self.job_pod]


def free_subnets(used: Sequence[str], count: int, pool: str = SUBNET_POOL) -> list[str]:
    """Return ``count`` /24s of ``pool`` that overlap none of ``used``."""
    taken = [ipaddress.ip_network(u, strict=False) for u in used]
    found = []
    for candidate in ipaddress.ip_network(pool).subnets(new_prefix=24):
        if not any(candidate.overlaps(t) for t in taken):
            found.append(str(candidate))
            if len(found) == count:
                return found
    raise LocalError(f"no free /24 left in {pool} for the proof's networks")


def _secret_mounts(spec: Obj, secrets_dir: Path) -> None:
    """Replace the projected Secret volume by one hostPath file per item (same paths)."""
    projected = {v["name"]: v for v in spec["volumes"] if "projected" in v}
    if not projected:
        return
    spec["volumes"] = [v for v in spec["volumes"] if v["name"] not in projected]
    for box in [*spec.get("initContainers", []), *spec["containers"]]:
        mounts = []
        for mount in box.get("volumeMounts", []):
            if mount["name"] not in projected:
                mounts.append(mount)
                continue
            for source in projected[mount["name"]]["projected"]["sources"]:
                for item in source["secret"]["items"]:
                    name = f"{mount['name']}-{convert.k8s_name(item['key'])}"
                    mounts.append(
                        {
                            "name": name,
                            "mountPath": f"{mount['mountPath']}/{item['path']}",
                            "readOnly": True,
                        }
                    )
                    volume = {
                        "name": name,
                        "hostPath": {"path": str(secrets_dir / item["key"]), "type": "File"},
                    }
                    if volume not in spec["volumes"]:
                        spec["volumes"].append(volume)
        box["volumeMounts"] = mounts


def adapt_pod(
    name: str, template: Obj, *, prefix: str, secrets_dir: Path, aliases: Mapping[str, str]
) -> Obj:
    """Return the Pod document podman 4.3.1 plays for a pod ``template`` (see module doc)."""
    spec = copy.deepcopy(template["spec"])
    for box in [*spec.get("initContainers", []), *spec["containers"]]:
        box["imagePullPolicy"] = "Never"
    for volume in spec["volumes"]:
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]
            claim["claimName"] = f"{prefix}-{claim['claimName']}"
    _secret_mounts(spec, secrets_dir)
    links = {convert.service_link(host): host for host in aliases}
    for box in [*spec.get("initContainers", []), *spec["containers"]]:
        for entry in box.get("env", []):
            for link, ip in links.items():
                entry["value"] = str(entry.get("value", "")).replace(link, ip)
    if aliases:
        spec["hostAliases"] = [
            {"ip": ip, "hostnames": [host]} for host, ip in sorted(aliases.items())
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict(template["metadata"].get("labels", {}))},
        "spec": spec,
    }


def adapt_job(job: Obj, *, tasks_dir: Path) -> Obj:
    """Return the Job's pod template as index 0 would run it, sidecar as a container."""
    template: Obj = copy.deepcopy(job["spec"]["template"])
    spec = template["spec"]
    for sidecar in spec.pop("initContainers", []):
        if sidecar.pop("restartPolicy", None) != "Always":
            raise LocalError(f"init container {sidecar['name']} is not a sidecar")
        sidecar.pop("startupProbe", None)
        spec["containers"].append(sidecar)
    main = spec["containers"][0]
    main["env"] = [*main.get("env", []), {"name": "JOB_COMPLETION_INDEX", "value": "0"}]
    for volume in spec["volumes"]:
        if "configMap" in volume:
            del volume["configMap"]
            volume["hostPath"] = {"path": str(tasks_dir), "type": "Directory"}
    return template


def plan(
    project: Mapping[str, Any],
    overlay: Sequence[Obj],
    job_objects: Sequence[Obj],
    *,
    prefix: str,
    secrets_dir: Path,
    tasks_dir: Path,
    subnets: Mapping[str, str],
) -> LocalPlan:
    """Lay out the proof: networks with addresses, claims, pods (see the module doc).

    ``project`` is the Compose model (networks of each service), ``overlay`` what the CPU
    overlay builds, ``job_objects`` what ``kube/job`` builds, ``subnets`` a /24 per
    Compose network.
    """
    services: Mapping[str, Any] = project["services"]
    networks = sorted(project.get("networks") or {})
    if set(subnets) != set(networks):
        raise LocalError(f"need one subnet per network {networks}, got {sorted(subnets)}")
    links = convert.edges(project)
    deployments = {o["metadata"]["name"]: o for o in overlay if o["kind"] == "Deployment"}
    order = sorted(deployments, key=lambda n: (n != convert.MODEL_SERVICE, n))
    addresses: dict[str, dict[str, str]] = {}
    for index, name in enumerate([*order, convert.JOB_NAME]):
        joined = sorted(services[name].get("networks") or {}) if name in services else []
        if name == convert.JOB_NAME:
            reach = {e.server for e in convert.job_edges(links)}
            joined = sorted(
                n for n in networks if any(n in (services[s].get("networks") or {}) for s in reach)
            )
        addresses[name] = {
            n: str(ipaddress.ip_network(subnets[n])[FIRST_HOST + index]) for n in joined
        }

    def aliases(client: str, edges: Sequence[Edge]) -> dict[str, str]:
        found = {}
        for edge in edges:
            if edge.client == client:
                shared = sorted(set(addresses[client]) & set(addresses[edge.server]))
                if not shared:
                    raise LocalError(f"{client} and {edge.server} share no network")
                found[edge.server] = addresses[edge.server][shared[0]]
        return found

    pods = [
        LocalPod(
            f"{prefix}-{name}",
            adapt_pod(
                f"{prefix}-{name}",
                deployments[name]["spec"]["template"],
                prefix=prefix,
                secrets_dir=secrets_dir,
                aliases=aliases(name, links),
            ),
            addresses[name],
        )
        for name in order
    ]
    job = next(o for o in job_objects if o["kind"] == "Job")
    job_doc = adapt_pod(
        f"{prefix}-{convert.JOB_NAME}",
        adapt_job(job, tasks_dir=tasks_dir),
        prefix=prefix,
        secrets_dir=secrets_dir,
        aliases=aliases(convert.JOB_NAME, convert.job_edges(links)),
    )
    claims = []
    for obj in overlay:
        if obj["kind"] == "PersistentVolumeClaim":
            claim = copy.deepcopy(obj)
            claim["metadata"]["name"] = f"{prefix}-{obj['metadata']['name']}"
            claims.append(claim)
    return LocalPlan(
        prefix=prefix,
        networks={n: f"{prefix}-{n}" for n in networks},
        subnets=dict(subnets),
        claims=claims,
        pods=pods,
        job_pod=LocalPod(f"{prefix}-{convert.JOB_NAME}", job_doc, addresses[convert.JOB_NAME]),
    )


def to_yaml(*docs: Obj) -> str:
    """A YAML stream of ``docs``."""
    return "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)


@dataclass
class Player:
    """Plays a :class:`LocalPlan` with podman and takes it down again."""

    plan: LocalPlan
    workdir: Path
    runner: Runner = field(default_factory=Runner)
    log: Callable[[str], None] = print

    def podman(self, *args: str, timeout: float = 300) -> Result:
        """Run podman; raise :class:`LocalError` naming the command when it fails."""
        result = self.runner.run(["podman", *args], timeout=timeout)
        if not result.ok:
            detail = (result.stderr or result.stdout).strip()[-800:]
            raise LocalError(f"podman {' '.join(args[:3])} ... failed: {detail}")
        return result

    def play(self, pod: LocalPod) -> None:
        """``podman kube play`` one pod on its networks at its addresses."""
        path = self.workdir / f"{pod.name}.yaml"
        path.write_text(to_yaml(pod.doc), encoding="utf-8")
        networks = [
            f"--network={self.plan.networks[n]}:ip={ip}" for n, ip in sorted(pod.addresses.items())
        ]
        self.podman("kube", "play", *networks, str(path))
        self.log(f"played {pod.name} on {', '.join(pod.addresses) or 'no network'}")

    def create(self) -> None:
        """Networks (internal), then the claims (Podman volumes)."""
        for compose_name, name in sorted(self.plan.networks.items()):
            spec = NetworkSpec(
                key=compose_name,
                name=name,
                internal=True,
                subnet=self.plan.subnets[compose_name],
                labels=(("sandboxctl.kube", self.plan.prefix),),
            )
            self.podman(*create_argv(spec))  # no resolver, as `up` makes the stack's
        claims = self.workdir / "claims.yaml"
        claims.write_text(to_yaml(*self.plan.claims), encoding="utf-8")
        self.podman("kube", "play", str(claims))

    def import_into(self, claim: str, tarball: Path) -> None:
        """Fill the claim's volume from a tarball (the model into model-data)."""
        self.podman("volume", "import", f"{self.plan.prefix}-{claim}", str(tarball))

    def exec_ok(self, container: str, *command: str) -> bool:
        """Whether ``command`` succeeds in ``container``."""
        return self.runner.run(["podman", "exec", container, *command], timeout=60).ok

    def wait_exec(self, container: str, command: Sequence[str], deadline_s: float) -> float:
        """Wait until ``command`` succeeds in ``container``; return the seconds it took.
        Tried every 0.25 s at first, backing off to every 2 s."""
        start = time.monotonic()
        intervals = probe_intervals(0.25, 2.0)
        while not self.exec_ok(container, *command):
            if time.monotonic() - start > deadline_s:
                logs = self.runner.run(["podman", "logs", "--tail", "20", container])
                raise LocalError(
                    f"{container}: {' '.join(command)} did not succeed in {deadline_s:.0f} s; "
                    f"last log lines:\n{(logs.stdout + logs.stderr).strip()}"
                )
            time.sleep(next(intervals))
        return time.monotonic() - start

    def wait_exit(self, container: str, deadline_s: float) -> int:
        """Wait until ``container`` has exited; return its exit code. Looked at every
        0.25 s at first, backing off to every 2 s."""
        start = time.monotonic()
        intervals = probe_intervals(0.25, 2.0)
        while True:
            state = self.podman(
                "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", container
            ).stdout.split()
            if state and state[0] in ("exited", "stopped"):
                return int(state[1])
            if time.monotonic() - start > deadline_s:
                raise LocalError(f"{container} still {state[0]} after {deadline_s:.0f} s")
            time.sleep(next(intervals))

    def read_volume(self, claim: str, suffix: str = ".jsonl") -> dict[str, str]:
        """Return the text of each file ending in ``suffix`` in a claim's volume."""
        code, data, errors = self.runner.run_bytes(
            ["podman", "volume", "export", f"{self.plan.prefix}-{claim}"]
        )
        if code != 0:
            raise LocalError(f"podman volume export failed: {errors.strip()}")
        found = {}
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                handle = tar.extractfile(member) if member.isfile() else None
                if handle is not None and member.name.endswith(suffix):
                    found[member.name.lstrip("./")] = handle.read().decode("utf-8")
        return found

    def down(self) -> list[str]:
        """Remove every pod, volume and network of the plan that exists; return what was
        removed. Never raises for what is already gone."""
        removed = []
        for pod in reversed(self.plan.all_pods()):
            if self.runner.run(["podman", "pod", "exists", pod.name]).ok:
                # Stopped first: `kube play` gives its pods the exit policy "stop", and
                # Podman 4.3 then spends 3 s in `pod rm -f` of a running pod; stopped, the
                # removal takes a tenth of a second (DEV-0011).
                self.runner.run(["podman", "pod", "stop", "-t", "5", pod.name], timeout=120)
                self.runner.run(["podman", "pod", "rm", "-f", "-t", "5", pod.name], timeout=120)
                removed.append(f"pod {pod.name}")
        for volume in self.plan.volumes:
            if self.runner.run(["podman", "volume", "exists", volume]).ok:
                self.runner.run(["podman", "volume", "rm", "-f", volume], timeout=120)
                removed.append(f"volume {volume}")
        for name in self.plan.networks.values():
            if self.runner.run(["podman", "network", "exists", name]).ok:
                self.runner.run(["podman", "network", "rm", "-f", name], timeout=120)
                removed.append(f"network {name}")
        # `podman kube play` creates its default network even when every pod is given
        # networks; it is podman's own, made again on demand: remove it once unused.
        if self.runner.run(["podman", "network", "exists", KUBE_DEFAULT_NETWORK]).ok:
            users = self.runner.run(
                ["podman", "ps", "-aq", "--filter", f"network={KUBE_DEFAULT_NETWORK}"]
            )
            if users.ok and not users.stdout.strip():
                self.runner.run(["podman", "network", "rm", KUBE_DEFAULT_NETWORK], timeout=120)
                removed.append(f"network {KUBE_DEFAULT_NETWORK}")
        return removed

    def leftovers(self) -> list[str]:
        """What of the plan still exists (empty after :meth:`down`)."""
        left = [
            f"pod {p.name}"
            for p in self.plan.all_pods()
            if self.runner.run(["podman", "pod", "exists", p.name]).ok
        ]
        left += [
            f"volume {v}"
            for v in self.plan.volumes
            if self.runner.run(["podman", "volume", "exists", v]).ok
        ]
        left += [
            f"network {n}"
            for n in self.plan.networks.values()
            if self.runner.run(["podman", "network", "exists", n]).ok
        ]
        return left


def used_subnets(runner: Runner) -> list[str]:
    """The subnets of the engine's existing networks."""
    result = runner.run(["podman", "network", "ls", "--format", "json"])
    if not result.ok:
        raise LocalError(f"podman network ls failed: {result.stderr.strip()}")
    used = []
    for network in json.loads(result.stdout or "[]"):
        for subnet in network.get("subnets") or []:
            used.append(str(subnet.get("subnet")))
    return used
