"""Run the local proof end to end: render, validate, play, one agent task, tear down.

:func:`run_proof` is what ``invoke kube.play`` and ``tests/e2e/test_kube.py`` call. It
renders the kustomize tree into a scratch folder (the sandbox's own ``kube/`` is left as it
is), builds the CPU overlay and the Job with ``kubectl kustomize``, validates them, adapts
them for ``podman kube play`` 4.3.1 (:mod:`sandboxctl.kube.local`), plays the model
server, waits for its ``/health``, plays the tools service and the supervisor, then the
Job's first index with the given task, waits for that run to end, and reads its
trajectory from the logs claim. Everything it created is removed again unless ``keep``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandboxctl import stack as stack_
from sandboxctl.download import sha256_file
from sandboxctl.kube import convert, local, render, validate
from sandboxctl.kube.job import agent_job, set_env

READY_DEADLINE_S = 300.0
TASK_DEADLINE_S = 600.0


@dataclass
class ProofResult:
    """What the proof measured and read back."""

    exit_code: int = -1
    """The Job container's exit code (0: the run ended on its own terms)."""
    trajectory: list[dict[str, Any]] = field(default_factory=list)
    trajectory_file: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    pods: list[str] = field(default_factory=list)


def prefix_of(project: str) -> str:
    """The name prefix of everything the proof creates for a Compose project."""
    return f"{convert.k8s_name(project)}-kube"


def player_for(
    stack: stack_.Stack, workdir: Path, log: Callable[[str], None] = print
) -> local.Player:
    """A :class:`~local.Player` whose plan names what a proof of this sandbox creates
    (enough to take it down without the scratch files of the run that created it)."""
    config = render.compose_model(stack.compose, stack.root)
    project = config(["compose.yaml"], {"GPU_BACKEND": "cpu"})
    kube = convert.convert(project)
    overlay = [*kube.deployments.values(), *kube.claims.values()]
    job = agent_job(project, 1, 1)
    subnets = {n: f"10.231.{i}.0/24" for i, n in enumerate(sorted(project["networks"]))}
    plan = local.plan(
        project,
        overlay,
        [job],
        prefix=prefix_of(stack.project),
        secrets_dir=stack.root / "secrets",
        tasks_dir=workdir,
        subnets=subnets,
    )
    return local.Player(plan, workdir, runner=stack.runner, log=log)


def with_step_budget(objects: list[dict[str, Any]], max_steps: int) -> None:
    """Give the Job's supervisor ``SUPERVISOR_MAX_STEPS`` (in place); 0 leaves the
    supervisor's own default. Raises :class:`local.LocalError` when there is no Job."""
    if not max_steps:
        return
    jobs = [obj for obj in objects if obj.get("kind") == "Job"]
    if not jobs:
        raise local.LocalError("no Job among the objects: nothing to give a step budget")
    for job in jobs:
        for box in job["spec"]["template"]["spec"]["containers"]:
            if box["name"] == convert.SUPERVISOR_SERVICE:
                set_env(box, SUPERVISOR_MAX_STEPS=str(max_steps))


def run_proof(
    stack: stack_.Stack,
    task: str,
    *,
    keep: bool = False,
    ready_deadline_s: float = READY_DEADLINE_S,
    task_deadline_s: float = TASK_DEADLINE_S,
    max_steps: int = 0,
) -> ProofResult:
    """Play the stack from its Kubernetes manifests and run ``task`` through the Job
    (``max_steps``: the run's step budget, 0 for the supervisor's default).

    Raises :class:`local.LocalError` (or :class:`validate.ValidationFailed`) with what
    failed; the result records timings, the exit code and the trajectory's records.
    """
    log = stack.log
    result = ProofResult()
    root = stack.root
    stack_.ensure_api_key(root)
    stack_.ensure_tools_token(root)
    scratch = Path(tempfile.mkdtemp(prefix="kube-proof-"))
    start = time.monotonic()
    player: local.Player | None = None
    try:
        config = render.compose_model(stack.compose, root)
        files = render.render_tree(root, config, tasks=[task], parallelism=1)
        render.write_tree(scratch, files)
        render.place_secrets(root, render.secret_names(files), dest=scratch)
        overlay = validate.build(scratch / render.KUBE_DIR / "overlays" / "cpu", stack.runner)
        job = validate.build(scratch / render.KUBE_DIR / "job", stack.runner)
        with_step_budget(job, max_steps)
        problems = validate.check_objects([*overlay, *job], "overlays/cpu + job")
        if problems:
            raise validate.ValidationFailed("\n".join(map(str, problems)))
        tasks_dir = scratch / "tasks"
        tasks_dir.mkdir(mode=0o755)
        tasks_dir.chmod(0o755)
        (tasks_dir / convert.TASKS_FILE).write_text(json.dumps([task]), encoding="utf-8")
        (tasks_dir / convert.TASKS_FILE).chmod(0o644)
        project = config(["compose.yaml"], {"GPU_BACKEND": "cpu"})
        networks = sorted(project.get("networks") or {})
        free = local.free_subnets(local.used_subnets(stack.runner), len(networks))
        plan = local.plan(
            project,
            overlay,
            job,
            prefix=prefix_of(stack.project),
            secrets_dir=root / "secrets",
            tasks_dir=tasks_dir,
            subnets=dict(zip(networks, free, strict=True)),
        )
        local_problems = validate.check_objects(
            [*plan.claims, *(p.doc for p in plan.all_pods())], "local proof"
        )
        if local_problems:
            raise validate.ValidationFailed("\n".join(map(str, local_problems)))
        player = local.Player(plan, scratch, runner=stack.runner, log=log)
        left = player.leftovers()
        if left:
            raise local.LocalError(
                f"a previous proof left {', '.join(left)}: run `invoke kube.down` first"
            )
        result.seconds["render_validate"] = time.monotonic() - start
        images = stack_.prepare_images(stack)
        model_file = stack_.prepare_model(stack)
        step = time.monotonic()
        player.create()
        digest = sha256_file(model_file)
        tarball = stack_.model_tarball(
            model_file, model_file.name, digest, scratch / f"{model_file.name}.tar"
        )
        player.import_into("model-data", tarball)
        tarball.unlink()
        log(f"model {model_file.name} in {plan.prefix}-model-data ({images['model-server']})")
        server, *others = plan.pods
        player.play(server)
        result.seconds["ready"] = player.wait_exec(
            f"{server.name}-{convert.MODEL_SERVICE}", ["/app/healthcheck.sh"], ready_deadline_s
        )
        for pod in others:
            player.play(pod)
        result.seconds["play_stack"] = time.monotonic() - step
        step = time.monotonic()
        player.play(plan.job_pod)
        result.pods = [p.name for p in plan.all_pods()]
        main = f"{plan.job_pod.name}-{convert.SUPERVISOR_SERVICE}"
        result.exit_code = player.wait_exit(main, task_deadline_s)
        result.seconds["task"] = time.monotonic() - step
        if result.exit_code != 0:
            logs = stack.runner.run(["podman", "logs", "--tail", "30", main])
            log(f"{main} exited {result.exit_code}:\n{(logs.stdout + logs.stderr).strip()}")
        found = player.read_volume("logs")
        wanted = f"{convert.JOB_NAME}/task-0.jsonl"
        result.trajectory_file = wanted if wanted in found else ""
        if result.trajectory_file:
            result.trajectory = [
                json.loads(line) for line in found[wanted].splitlines() if line.strip()
            ]
        return result
    finally:
        if player is None:
            player = player_for(stack, scratch, log)
        if not keep:
            step = time.monotonic()
            result.removed = player.down()
            result.leftovers = player.leftovers()
            result.seconds["down"] = time.monotonic() - step
        shutil.rmtree(scratch, ignore_errors=True)
        result.seconds["total"] = time.monotonic() - start
