"""The running stack: API key, model data, Compose up/down, readiness and one agent task.

Compose runs the images that `invoke images.build` made with Podman; everything here goes
through one :class:`Stack`, which holds the engine, the Compose command and the answers.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import stat
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from sandboxctl._proc import Result, Runner
from sandboxctl.compose import ComposeCommand, run_compose
from sandboxctl.config import Settings
from sandboxctl.host.engine import Engine

API_KEY_NAME = "model_api_key"
"""File name of the model API key under ``secrets/`` (the compose secret of that name)."""

TOOLS_TOKEN_NAME = "tools_token"  # noqa: S105 (a file name, not a secret)
"""File name of the tools service's token under ``secrets/`` (the compose secret)."""

READY_DEADLINE_S = 300.0

FINISHED_EXIT_CODES = frozenset({0, 3, 4})
"""Supervisor exit codes of a run that ended on its own terms: done (0), a budget ran out
(3), or it gave up on unusable replies (4). Others mean it could not run (1, 2, 5, 130)."""


class StackError(RuntimeError):
    """A stack operation failed; the message says what and how to fix it."""


def ensure_api_key(root: Path) -> Path:
    """Create ``secrets/model_api_key`` once (a random token) and return its path.

    The folder is 0700, so no other host user reaches the key; the file itself is 0644
    because it is bind-mounted into the containers, whose non-root users must read it.
    An existing key is kept (a restart must not change it), only its modes are repaired.
    """
    return ensure_secret(root, API_KEY_NAME)


def ensure_tools_token(root: Path) -> Path:
    """Create ``secrets/tools_token`` once, like the API key (see :func:`ensure_api_key`).

    The supervisor authenticates to the ``tools`` service with it; only those two
    services mount it.
    """
    return ensure_secret(root, TOOLS_TOKEN_NAME)


MIN_SECRET_CHARS = 16
"""A secret file shorter than this (empty after a crash, say) is replaced, not kept."""


def ensure_secret(root: Path, name: str) -> Path:
    """Create ``secrets/NAME`` once (a random token, folder 0700, file 0644); return it.

    The token is written to a temporary file and renamed into place, so a crash never
    leaves a half-written secret; one that is too short to be ours is replaced.
    """
    folder = root / "secrets"
    folder.mkdir(mode=0o700, exist_ok=True)
    folder.chmod(0o700)
    key = folder / name
    if not key.is_file() or len(key.read_text(encoding="utf-8").strip()) < MIN_SECRET_CHARS:
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(secrets.token_urlsafe(32))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, key)
        finally:
            Path(temporary).unlink(missing_ok=True)
    key.chmod(stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
    return key


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Return the SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def model_tarball(model_file: Path, name: str, digest: str, out: Path) -> Path:
    """Write a tarball holding ``name`` (the model, 0644) and ``name.sha256`` into ``out``.

    Entries are owned by root and world-readable, so the server's non-root user reads them
    from the volume and cannot change them.
    """
    with tarfile.open(out, "w") as tar:
        info = tar.gettarinfo(str(model_file), arcname=name)
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mode = 0o644
        with model_file.open("rb") as handle:
            tar.addfile(info, handle)
        stamp = f"{digest}  {name}\n".encode()
        entry = tarfile.TarInfo(f"{name}.sha256")
        entry.size, entry.mode, entry.mtime = len(stamp), 0o644, int(time.time())
        tar.addfile(entry, io.BytesIO(stamp))
    return out


@dataclass
class Stack:
    """The sandbox's Compose project on its engine."""

    root: Path
    settings: Settings
    engine: Engine
    compose: ComposeCommand
    runner: Runner = field(default_factory=Runner)
    log: Callable[[str], None] = print

    @property
    def project(self) -> str:
        """The Compose project name (``COMPOSE_PROJECT_NAME``)."""
        return self.settings.compose_project_name

    def volume(self, name: str) -> str:
        """The engine's name of the project's volume ``name`` (Compose prefixes it)."""
        return f"{self.project}_{name}"

    def __post_init__(self) -> None:
        """Point every command this stack runs (podman, builds, Compose) at its engine."""
        self.runner = replace(self.runner, extra_env={**self.engine.env(), **self.runner.extra_env})

    def podman(self, *args: str, capture: bool = True) -> Result:
        """Run ``podman ARGS`` against this stack's engine (see :meth:`Engine.env`)."""
        return self.runner.run(["podman", *args], capture=capture)

    def compose_run(self, *args: str, capture: bool = False) -> Result:
        """Run ``compose ARGS`` in the sandbox folder against the engine; exit code kept."""
        return run_compose(
            self.compose,
            list(args),
            engine=self.engine,
            project_dir=self.root,
            runner=self.runner,
            capture=capture,
        )

    def require(self, result: Result, what: str) -> Result:
        """Raise :class:`StackError` naming ``what`` when ``result`` failed, with the last
        lines it printed (or a pointer to them when they went to the terminal)."""
        if not result.ok:
            lines = (result.stderr or result.stdout).strip().splitlines()[-5:]
            detail = "\n  ".join(lines) if lines else "(its output is above)"
            raise StackError(f"{what} failed (exit {result.returncode}):\n  {detail}")
        return result

    def preflight(self, *, containers: bool = True) -> None:
        """Run the doctor's preflight checks against this stack's engine: seconds, instead of
        a failure minutes into a build or a wait. ``containers=False`` skips the ones that
        start a container. Raises :class:`StackError` listing each failure and its fix."""
        from sandboxctl import doctor
        from sandboxctl.host.platform import detect_host

        inputs = doctor.DoctorInputs(
            root=self.root, host=detect_host(), runner=self.runner, environ=self.runner.environ()
        )
        if not containers:
            inputs.quick = True
        failed = doctor.preflight(inputs)
        if failed:
            lines = [f"  {check.name}: {check.detail}\n    fix: {check.fix}" for check in failed]
            raise StackError("the host is not ready for the stack:\n" + "\n".join(lines))

    def model_in_volume(self, name: str, image: str) -> str | None:
        """Return the SHA-256 recorded next to ``name`` in the model-data volume, if any."""
        result = self.podman(
            "run", "--rm", "--pull=never", "--network=none", "--entrypoint", "cat",
            "-v", f"{self.volume('model-data')}:/models:ro",
            image, f"/models/{name}.sha256",
        )  # fmt: skip
        return result.stdout.split()[0] if result.ok and result.stdout.strip() else None

    def load_model(self, model_file: Path, image: str, scratch: Path) -> bool:
        """Copy the model into the model-data volume unless the same bytes are there already.

        Returns True when it copied. The volume must exist (``compose create`` makes it).
        """
        name = model_file.name
        digest = sha256_of(model_file)
        if self.model_in_volume(name, image) == digest:
            self.log(f"model-data already holds {name} ({digest[:12]}...)")
            return False
        tarball = model_tarball(model_file, name, digest, scratch / f".{name}.tar")
        try:
            self.log(f"copying {name} ({model_file.stat().st_size / 1e6:.0f} MB) into model-data")
            self.require(
                self.podman("volume", "import", self.volume("model-data"), str(tarball)),
                "podman volume import",
            )
        finally:
            tarball.unlink(missing_ok=True)
        return True

    def wait_ready(self, deadline_s: float = READY_DEADLINE_S, every_s: float = 2.0) -> float:
        """Wait until llama-server's /health is 200 (probed inside its container).

        Returns the seconds it took; raises :class:`StackError` with the server's last log
        lines when the deadline passes. Does not rely on the engine running healthchecks.
        """
        start = time.monotonic()
        last_note = start
        while True:
            probe = self.compose_run(
                "exec", "-T", "model-server", "/app/healthcheck.sh", capture=True
            )
            if probe.ok:
                return time.monotonic() - start
            now = time.monotonic()
            if now - start > deadline_s:
                tail = self.compose_run("logs", "--tail", "20", "model-server", capture=True)
                raise StackError(
                    f"model-server not ready after {deadline_s:.0f} s; its last log lines:\n"
                    f"{tail.stdout.strip()}"
                )
            if now - last_note >= 10:
                self.log(f"waiting for model-server /health ({now - start:.0f} s)")
                last_note = now
            time.sleep(every_s)

    def run_task(self, task: str, extra: Sequence[str] = ()) -> tuple[Result, str]:
        """Run one agent task in the supervisor container; return its result and log path."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        log_path = f"/logs/run-{stamp}.jsonl"
        result = self.compose_run(
            "exec", "-T", "supervisor", "sandbox-supervisor", "run", "--log", log_path,
            *extra, "--", task,
        )  # fmt: skip
        return result, log_path


def require_running(stack: Stack, service: str = "supervisor") -> None:
    """Raise :class:`StackError` unless ``service`` runs (``invoke up`` starts it)."""
    listed = stack.compose_run("ps", "--status", "running", "--services", capture=True)
    if service not in listed.stdout.split():
        raise StackError(
            f"the stack {stack.project} is not running ({service} is not up): run `invoke up`"
        )


def open_stack(root: Path, log: Callable[[str], None] = print) -> Stack:
    """Resolve the engine (starting the local Podman service when needed) and Compose.

    Raises :class:`StackError` with the fix when the answers, engine or Compose are missing.
    """
    from sandboxctl.compose import ComposeError, find_compose
    from sandboxctl.config import ConfigError, load_settings
    from sandboxctl.host.engine import EngineError, resolve_engine
    from sandboxctl.host.platform import detect_host
    from sandboxctl.host.service import ensure_service

    try:
        settings = load_settings(root, require_file=True)
        engine = resolve_engine(detect_host(), settings)
        status = ensure_service(engine)
        if not status.serving:
            raise StackError(
                f"the container engine at {engine.docker_host} does not answer "
                f"({status.message}): run `invoke machine.start` or `invoke doctor`"
            )
        if status.started:
            log(status.message)
        compose = find_compose()
    except (ConfigError, EngineError, ComposeError) as error:
        raise StackError(str(error)) from error
    return Stack(root, settings, engine, compose, log=log)


def place_llama_source(stack: Stack) -> Path:
    """Verify and place the pinned llama.cpp source in model/context (cached; quick when
    already there) and return that folder."""
    from sandboxctl.models import source as llama_source
    from sandboxctl.models.download import rich_progress

    context = stack.root / "model" / "context"
    with rich_progress("llama.cpp source") as progress:
        llama_source.place_source(
            stack.settings.llama_cpp_version,
            context=context,
            sources_file=stack.root / "model" / "llama-cpp-sources.yaml",
            progress=progress,
        )
    return context


def prepare_images(stack: Stack, *, rebuild: bool = False, only: str = "") -> dict[str, str]:
    """Build the images the Compose project runs that are missing (all with ``rebuild``).

    ``only`` limits the work to one service. Returns service -> image tag.
    """
    from sandboxctl import base_image, builds
    from sandboxctl.compose import ComposeError, compose_config
    from sandboxctl.images import ImageBuildError
    from sandboxctl.models import source as llama_source
    from sandboxctl.models.download import DownloadError

    try:
        project = compose_config(stack.compose, project_dir=stack.root, engine=stack.engine)
    except ComposeError as error:
        raise StackError(str(error)) from error
    images = builds.service_images(project)
    wanted = [
        name for name in (builds.MODEL_SERVICE, builds.SUPERVISOR_SERVICE) if only in ("", name)
    ]
    todo = [
        name
        for name in wanted
        if rebuild or not base_image.image_exists(stack.runner, images[name])
    ]
    if not todo:
        stack.log(f"images present: {', '.join(images[name] for name in wanted)}")
        return images
    try:
        base_image.build_base_image(
            base_image.BaseImageSpec(mirror=stack.settings.debian_mirror),
            stack.runner,
            is_root=os.geteuid() == 0,
            log=stack.log,
        )
        if builds.MODEL_SERVICE in todo:
            place_llama_source(stack)
            builds.build_model_image(
                stack.root,
                images[builds.MODEL_SERVICE],
                stack.settings.llama_cpp_version,
                stack.settings.gpu_backend,
                ccache_dir=llama_source.cache_dir() / "ccache",
                env=stack.runner.environ(),
                log=stack.log,
            )
        if builds.SUPERVISOR_SERVICE in todo:
            builds.build_supervisor_image(
                stack.root, images[builds.SUPERVISOR_SERVICE], runner=stack.runner, log=stack.log
            )
    except (
        base_image.BaseImageError,
        llama_source.SourceError,
        DownloadError,
        ImageBuildError,
    ) as error:
        raise StackError(str(error)) from error
    return images


def prepare_model(stack: Stack) -> Path:
    """Return the host path of the answered model, generating or fetching it when absent."""
    from sandboxctl.models import catalog
    from sandboxctl.models import source as llama_source
    from sandboxctl.models import tiny as tiny_model
    from sandboxctl.models.download import DownloadError, rich_progress

    try:
        model = catalog.load_catalog(stack.root / "model" / "catalog.yaml").get(
            stack.settings.sandbox_model
        )
        path = catalog.model_path(model, stack.root / "models")
        if path.is_file():
            return path
        if model.generated:
            stack.log(f"generating the offline tiny model into {path}")
            context = place_llama_source(stack)  # its tokenizer comes from the source
            return tiny_model.generate(llama_source.vocab_path(context), path)
        with rich_progress(model.key) as progress:
            catalog.fetch_model(model, directory=path.parent, progress=progress)
    except (catalog.CatalogError, llama_source.SourceError, tiny_model.TinyModelError) as error:
        raise StackError(str(error)) from error
    except DownloadError as error:
        raise StackError(f"{error} (or fetch it first: `invoke model.fetch`)") from error
    return path


def bring_up(stack: Stack, *, rebuild: bool = False, deadline_s: float = READY_DEADLINE_S) -> float:
    """Preflight, key, images, model, then ``compose up -d`` and wait for readiness; return
    its seconds."""
    stack.preflight()
    ensure_api_key(stack.root)
    ensure_tools_token(stack.root)
    images = prepare_images(stack, rebuild=rebuild)
    model_file = prepare_model(stack)
    stack.require(stack.compose_run("create", capture=True), "compose create")
    stack.load_model(model_file, images["model-server"], stack.root / "models")
    stack.require(stack.compose_run("up", "-d", capture=True), "compose up")
    seconds = stack.wait_ready(deadline_s)
    stack.log(f"stack {stack.project} ready in {seconds:.1f} s after `up`")
    return seconds
