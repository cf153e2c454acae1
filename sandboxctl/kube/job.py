"""The agent Job: many agent tasks in parallel against the shared model server.

An Indexed Job (``completions`` = the number of tasks): index N runs task N of the
``agent-tasks`` ConfigMap with the supervisor service's container, and the tools service
as a native sidecar (an init container with ``restartPolicy: Always``, Kubernetes 1.29+)
that listens on localhost only and owns a fresh ``emptyDir`` workspace, so parallel tasks
never share files. Trajectories go to the logs claim, one file per index.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sandboxctl.kube.convert import (
    JOB_NAME,
    SUPERVISOR_SERVICE,
    TASKS_DIR,
    TASKS_FILE,
    TOOLS_SERVICE,
    ConvertError,
    Obj,
    container,
    edges,
    labels,
    pod_spec,
)
from sandboxctl.stack import FINISHED_EXIT_CODES


def set_env(body: Obj, **values: str) -> None:
    """Set environment variables of a container ``body`` (in place): each one given
    replaces one of that name, and the list stays sorted by name."""
    env = [e for e in body["env"] if e["name"] not in values]
    body["env"] = sorted(
        [*env, *({"name": k, "value": v} for k, v in values.items())], key=lambda e: e["name"]
    )


def job_script(job: str = JOB_NAME, tasks_dir: str = TASKS_DIR, logs_dir: str = "/logs") -> str:
    """The Job container's shell: pick task number JOB_COMPLETION_INDEX from the task list,
    run it, write its trajectory to LOGS/JOB/task-INDEX.jsonl. A run that ended on its own
    terms (done, budget spent, gave up) completes the index; others fail it."""
    finished = "|".join(str(code) for code in sorted(FINISHED_EXIT_CODES))
    pick = (
        f'import json, os; print(json.load(open("{tasks_dir}/{TASKS_FILE}"))'
        '[int(os.environ["JOB_COMPLETION_INDEX"])])'
    )
    return (
        "set -u\n"
        f"task=\"$(python3 -c '{pick}')\" || exit 2\n"
        f"mkdir -p {logs_dir}/{job}\n"
        f'sandbox-supervisor run --log "{logs_dir}/{job}/task-$JOB_COMPLETION_INDEX.jsonl" '
        '-- "$task"\n'
        "code=$?\n"
        f'case "$code" in {finished}) exit 0 ;; *) exit "$code" ;; esac\n'
    )


def agent_job(project: Mapping[str, Any], completions: int, parallelism: int) -> Obj:
    """The Indexed Job that runs ``completions`` agent tasks, ``parallelism`` at a time,
    each against the shared model server with its own tools sidecar and fresh workspace.

    The tools service runs as a native sidecar (an init container that keeps running,
    Kubernetes 1.29+) listening on localhost only; the task list comes from the
    ``agent-tasks`` ConfigMap; trajectories go to the logs claim.
    """
    if completions < 1 or parallelism < 1:
        raise ConvertError("a Job needs at least one task and a parallelism of at least 1")
    name = str(project["name"])
    services = project["services"]
    sup_spec, tools_spec = services[SUPERVISOR_SERVICE], services[TOOLS_SERVICE]
    tool_ports = sorted({e.port for e in edges(project) if e.server == TOOLS_SERVICE} or {8700})
    supervisor, sup_volumes = container(project, SUPERVISOR_SERVICE, sup_spec)
    tools, tools_volumes = container(project, TOOLS_SERVICE, tools_spec, tool_ports)
    logs_dir = str((sup_spec.get("environment") or {}).get("SUPERVISOR_LOG_DIR") or "/logs")
    # args, not command: the image's entrypoint (its init, tini) stays PID 1, as in Compose.
    supervisor["args"] = ["/bin/sh", "-c", job_script(logs_dir=logs_dir)]
    set_env(supervisor, SUPERVISOR_TOOLS_URL=f"http://127.0.0.1:{tool_ports[0]}")
    supervisor["volumeMounts"].append({"name": "tasks", "mountPath": TASKS_DIR, "readOnly": True})
    tools["args"] = [*tools.get("args", []), "--host", "127.0.0.1"]
    tools["restartPolicy"] = "Always"
    tools["startupProbe"] = {
        "tcpSocket": {"port": tool_ports[0]},
        "periodSeconds": 1,
        "failureThreshold": 60,
    }
    tools.pop("ports", None)
    # The sidecar's workspace is the pod's own: a fresh, empty one for each task.
    workspaces = {m["name"] for m in tools["volumeMounts"] if m["name"] not in ("tmp", "secrets")}
    tools_volumes = [
        {"name": v["name"], "emptyDir": {}} if v["name"] in workspaces else v for v in tools_volumes
    ]
    for mount in tools["volumeMounts"]:
        if mount["name"] in ("tmp", "secrets"):
            mount["name"] = f"tools-{mount['name']}"
    for volume in tools_volumes:
        if volume["name"] in ("tmp", "secrets"):
            volume["name"] = f"tools-{volume['name']}"
    volumes = [
        *sup_volumes,
        *tools_volumes,
        {"name": "tasks", "configMap": {"name": JOB_NAME}},
    ]
    pod = pod_spec([supervisor], volumes, sup_spec)
    pod["initContainers"] = [tools]
    pod["restartPolicy"] = "Never"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": JOB_NAME, "labels": labels(name, JOB_NAME)},
        "spec": {
            "completionMode": "Indexed",
            "completions": completions,
            "parallelism": parallelism,
            "backoffLimit": completions,
            "template": {"metadata": {"labels": labels(name, JOB_NAME)}, "spec": pod},
        },
    }
