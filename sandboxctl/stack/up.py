"""Bring the stack up: secrets, images, the model, Compose, readiness (the tasks run the
doctor's preflight first: :func:`sandboxctl.checks.doctor.stack_preflight`)."""

from __future__ import annotations

from pathlib import Path

from sandboxctl.stack.images import place_llama_source, prepare_images
from sandboxctl.stack.project import READY_DEADLINE_S, Stack, StackError
from sandboxctl.stack.secrets import ensure_api_key, ensure_tools_token


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
    """Key, images, model, then ``compose up -d`` and wait for readiness; return its
    seconds."""
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
