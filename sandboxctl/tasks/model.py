"""Model tasks: the pinned llama.cpp source, the model catalog, fetch and the tiny model."""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from sandboxctl import builds
from sandboxctl.images import ImageBuildError
from sandboxctl.models import catalog as catalog_
from sandboxctl.models import source as llama_source
from sandboxctl.models import tiny as tiny_model
from sandboxctl.models.download import DownloadError, rich_progress
from sandboxctl.tasks._support import settings_or_exit


def _version(version: str) -> str | None:
    """Return the version asked for, else LLAMA_CPP_VERSION from .env, else None."""
    if version:
        return version
    configured = settings_or_exit(require_file=False).llama_cpp_version
    return configured or None


@task(
    help={
        "version": "llama.cpp version key of model/llama-cpp-sources.yaml (default: .env)",
        "origin": "Where to get it: pypi (default, checksum published) or github",
        "url": "Mirror URL of the same archive (the pinned SHA-256 still applies)",
        "trust_unverified": "Accept an origin with no pinned SHA-256; prints the one to pin",
    }
)
def source(
    c: Context,
    version: str = "",
    origin: str = "",
    url: str = "",
    trust_unverified: bool = False,
) -> None:
    """Download, verify and place the pinned llama.cpp source in model/context."""
    try:
        with rich_progress("llama.cpp source") as progress:
            pin, chosen, result, tree = llama_source.place_source(
                _version(version),
                origin or None,
                trust_unverified=trust_unverified,
                url=url or None,
                progress=progress,
            )
    except (llama_source.SourceError, DownloadError) as error:
        raise Exit(f"model.source: {error}", code=1) from error
    print(f"llama.cpp {pin.version} ({pin.commit[:9]}) from {chosen.name}: {tree}")
    if result.verified:
        print(f"sha256 {result.sha256} verified against the pin ({chosen.sha256_source})")
    else:
        print(
            f"UNVERIFIED: sha256 {result.sha256}; check it against a trusted source, "
            f"then pin it as versions.{pin.version}.origins.{chosen.name}.sha256"
        )


@task(
    positional=["name"],
    help={
        "name": "Catalog key (SANDBOX_MODEL in .env names the one served); see model.list",
        "trust_unverified": "Accept a model with no pinned SHA-256; prints the one to pin",
        "directory": "Model-data directory (default: $SANDBOX_MODEL_DIR or ./models)",
    },
)
def fetch(c: Context, name: str, trust_unverified: bool = False, directory: str = "") -> None:
    """Download a catalog model with progress and resume; verify its SHA-256."""
    try:
        catalog = catalog_.load_catalog()
        model = catalog.get(name)
        if model.generated:
            raise Exit(f"model.fetch: {model.key} is generated offline: run `invoke model.tiny`")
        target = Path(directory) if directory else None
        with rich_progress(model.key) as progress:
            result = catalog_.fetch_model(
                model, directory=target, trust_unverified=trust_unverified, progress=progress
            )
    except (catalog_.CatalogError, DownloadError) as error:
        raise Exit(f"model.fetch: {error}", code=1) from error
    state = "downloaded" if result.downloaded else "already present"
    print(f"{model.key}: {state} at {result.path} ({result.size} bytes)")
    if result.verified:
        print(f"sha256 {result.sha256} verified against {model.sha256_source}")
    else:
        print(
            f"UNVERIFIED: sha256 {result.sha256}; check it on the publisher's page, "
            f"then pin it in model/catalog.yaml (models.{model.key}.sha256)"
        )


@task(
    help={
        "seed": "Random seed of the weights (same seed, same bytes)",
        "directory": "Model-data directory (default: $SANDBOX_MODEL_DIR or ./models)",
    }
)
def tiny(c: Context, seed: int = tiny_model.DEFAULT_SEED, directory: str = "") -> None:
    """Generate the offline tiny test model (models/tiny.gguf) deterministically."""
    try:
        vocab = llama_source.vocab_path()
    except llama_source.SourceError as error:
        raise Exit(f"model.tiny: {error}", code=1) from error
    model = catalog_.load_catalog().get("tiny")
    dest = catalog_.model_path(model, Path(directory) if directory else None)
    try:
        tiny_model.generate(vocab, dest, tiny_model.TinySpec(seed=seed))
    except tiny_model.TinyModelError as error:
        raise Exit(f"model.tiny: {error}", code=1) from error
    print(f"tiny model written to {dest} (seed {seed})")


@task(
    name="list",
    help={"directory": "Model-data directory (default: $SANDBOX_MODEL_DIR or ./models)"},
)
def list_(c: Context, directory: str = "") -> None:
    """List the catalog: size, license, tool calling, checksum, presence."""
    try:
        catalog = catalog_.load_catalog()
    except catalog_.CatalogError as error:
        raise Exit(f"model.list: {error}", code=1) from error
    from rich.console import Console
    from rich.table import Table

    table = Table("model", "size", "tools", "context", "sha256", "license", "present")
    target = Path(directory) if directory else None
    for model in catalog.models.values():
        name = model.key + (" (default)" if model.key == catalog.default else "")
        pinned = "generated" if model.generated else ("pinned" if model.verified else "none")
        present = "yes" if catalog_.model_path(model, target).is_file() else "no"
        tools = "yes" if model.tool_calling else "no"
        license_ = model.license.split(" (")[0]
        table.add_row(name, model.size, tools, str(model.context), pinned, license_, present)
    Console().print(table)


@task(
    help={
        "version": "llama.cpp version key (default: .env)",
        "backend": "GPU backend: cpu, cuda or vulkan (default: GPU_BACKEND from .env)",
        "ccache": "Host ccache directory mounted at /ccache ('' to disable)",
    }
)
def build(c: Context, version: str = "", backend: str = "", ccache: str = "default") -> None:
    """Build the model-server image from the placed source (ccache-backed, no pull)."""
    settings = settings_or_exit(require_file=False)
    backend = backend or settings.gpu_backend
    pinned = _version(version) or settings.llama_cpp_version
    cache = None
    if ccache:
        cache = llama_source.cache_dir() / "ccache" if ccache == "default" else Path(ccache)
    tag = llama_source.image_tag(pinned, backend, settings.compose_project_name)
    try:
        builds.build_model_image(llama_source.REPO_ROOT, tag, pinned, backend, ccache_dir=cache)
    except (llama_source.SourceError, ImageBuildError) as error:
        raise Exit(f"model.build: {error}", code=1) from error
