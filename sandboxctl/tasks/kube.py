"""Kubernetes tasks: render the manifests from the Compose model, validate them, and prove
them locally with ``podman kube play`` (docs/KUBERNETES.md)."""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context

from sandboxctl.errors import SandboxError
from sandboxctl.kube import render as render_
from sandboxctl.stack.compose import find_compose
from sandboxctl.tasks._support import opened, root
from sandboxctl.tasks._task import task
from sandboxctl.tasks.stack import DEMO_TASK


@task(
    help={
        "tasks": "Task list of the Job: a JSON list of strings or one task per line "
        "(default: one demo task)",
        "parallelism": "How many Job pods run tasks at the same time",
        "secrets": "Copy secrets/ into kube/base/secrets/ for `kubectl apply -k` "
        "(git-ignored; --no-secrets to skip)",
    },
    ranges={"parallelism": (1, 1000)},
)
def render(c: Context, tasks: str = "", parallelism: int = 1, secrets: bool = True) -> None:
    """Write kube/ (kustomize base, cpu and cuda overlays, the agent Job) from compose config."""
    here = root()
    try:
        config = render_.compose_model(find_compose(), here)
        task_list = render_.read_tasks(Path(tasks) if tasks else None)
        egress = render_.egress_on(here)
        files = render_.render_tree(
            here, config, tasks=task_list, parallelism=parallelism, egress=egress
        )
    except (OSError, ValueError) as error:  # a tasks file that cannot be read or used
        raise SandboxError(str(error)) from error
    written = render_.write_tree(here, files)
    print(f"kube.render: wrote {len(written)} files under {here / render_.KUBE_DIR}")
    if secrets:
        placed = render_.place_secrets(here, render_.secret_names(files))
        print(f"kube.render: {len(placed)} secret file(s) in kube/base/secrets/ (git-ignored)")
    if egress:
        print(
            f"kube.render: EGRESS_ALLOW is set: {render_.EGRESS_COMPONENT} (the egress proxy, "
            "its NetworkPolicies, tools' proxy variables) is in both overlays"
        )


@task()
def validate(c: Context) -> None:
    """Build each kustomization of kube/ and check every object against the API schemas."""
    from sandboxctl.kube import validate as validate_

    built, problems = validate_.validate_tree(root() / render_.KUBE_DIR)
    for folder, objects in built.items():
        print(f"{folder}: {len(objects)} objects")
    for problem in problems:
        print(f"invalid: {problem}")
    if problems:
        raise SandboxError(f"{len(problems)} problem(s)")
    versions = ", ".join(validate_.KUBERNETES_VERSIONS)
    print(f"kube.validate: every object valid against Kubernetes {versions}")


@task(
    help={
        "task": "What the agent should do (run by the Job's pod)",
        "keep": "Leave the pods, volumes and networks running (take down with kube.down)",
        "timeout": "Seconds to wait for the model server, then for the task",
        "max-steps": "Model calls the task may take (0: the supervisor's default, 30)",
    },
    ranges={"timeout": (1, None), "max_steps": (0, 10_000)},
)
def play(
    c: Context, task: str = DEMO_TASK, keep: bool = False, timeout: int = 300, max_steps: int = 0
) -> None:
    """Prove the manifests here: podman kube play the stack, run one task, tear down."""
    from sandboxctl.kube import proof

    stack = opened()
    result = proof.run_proof(
        stack,
        task,
        keep=keep,
        ready_deadline_s=float(timeout),
        task_deadline_s=timeout * 2,
        max_steps=max_steps,
    )
    kinds = [r.get("type") for r in result.trajectory]
    end: dict[str, object] = next(
        (r for r in reversed(result.trajectory) if r.get("type") == "run_end"), {}
    )
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    print(f"kube.play: job pod exited {result.exit_code}; {timings}")
    print(
        f"kube.play: trajectory {result.trajectory_file or '(none)'}: {len(kinds)} records, "
        f"ended {end.get('status', '?')}"
    )
    if result.leftovers:
        raise SandboxError(f"left behind {', '.join(result.leftovers)}")
    if result.exit_code != 0 or not end:
        raise SandboxError("the task did not run to an outcome")


@task()
def down(c: Context) -> None:
    """Remove what kube.play created (pods, volumes, networks), if anything is left."""
    import tempfile

    from sandboxctl.kube import proof

    stack = opened()
    with tempfile.TemporaryDirectory() as scratch:
        player = proof.player_for(stack, Path(scratch))
        removed = player.down()
        left = player.leftovers()
    print(f"kube.down: removed {', '.join(removed) or 'nothing (nothing was left)'}")
    if left:
        raise SandboxError(f"could not remove {', '.join(left)}")
