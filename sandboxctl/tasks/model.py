"""Model tasks: the llama.cpp source, the catalog (list, fetch, add, use) and the tiny model."""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context

from sandboxctl._proc import Runner
from sandboxctl.catalog import catalog as catalog_
from sandboxctl.catalog import register, selection
from sandboxctl.catalog import tiny as tiny_model
from sandboxctl.download import rich_progress
from sandboxctl.errors import SandboxError
from sandboxctl.llama import source as llama_source
from sandboxctl.stack import model_image
from sandboxctl.tasks._support import load_answers, root
from sandboxctl.tasks._task import task


def _version(version: str) -> str | None:
    """Return the version asked for, else LLAMA_CPP_VERSION from .env, else None."""
    if version:
        return version
    configured = load_answers(require_file=False).llama_cpp_version
    return configured or None


DIRECTORY_HELP = "Model-data directory (default: $SANDBOX_MODEL_DIR or ./models)"


@task(
    help={
        "version": "llama.cpp version key of model-server/llama-cpp-sources.yaml (default: .env)",
        "origin": "Where to get it: pypi (default, checksum published) or github",
        "url": "Mirror URL of the same archive (the pinned SHA-256 still applies)",
        "trust_unverified": "Accept an origin with no pinned SHA-256; prints the one to pin",
    },
    choices={"origin": ("", "pypi", "github")},
)
def source(
    c: Context,
    version: str = "",
    origin: str = "",
    url: str = "",
    trust_unverified: bool = False,
) -> None:
    """Download, verify and place the pinned llama.cpp source in model-server/context."""
    with rich_progress("llama.cpp source") as progress:
        pin, chosen, result, tree = llama_source.place_source(
            _version(version),
            origin or None,
            trust_unverified=trust_unverified,
            url=url or None,
            progress=progress,
        )
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
        "directory": DIRECTORY_HELP,
    },
)
def fetch(c: Context, name: str, trust_unverified: bool = False, directory: str = "") -> None:
    """Download a catalog model with progress and resume; verify its SHA-256."""
    model = catalog_.load_catalog().get(name)
    if model.generated:
        raise SandboxError(f"{model.key} is generated offline: run `invoke model.tiny`")
    target = Path(directory) if directory else None
    with rich_progress(model.key) as progress:
        result = catalog_.fetch_model(
            model, directory=target, trust_unverified=trust_unverified, progress=progress
        )
    state = "downloaded" if result.downloaded else "already present"
    print(f"{model.key}: {state} at {result.path} ({result.size} bytes)")
    if result.verified:
        print(f"sha256 {result.sha256} verified against {model.sha256_source}")
    else:
        print(
            f"UNVERIFIED: sha256 {result.sha256}; check it on the publisher's page, "
            f"then pin it in model-server/catalog.yaml (models.{model.key}.sha256)"
        )


@task(
    help={
        "seed": "Random seed of the weights (same seed, same bytes)",
        "directory": DIRECTORY_HELP,
    },
    ranges={"seed": (0, 2**32 - 1)},
)
def tiny(c: Context, seed: int = tiny_model.DEFAULT_SEED, directory: str = "") -> None:
    """Generate the offline tiny test model (models/tiny.gguf) deterministically."""
    dest = tiny_model.write_catalog_model(Path(directory) if directory else None, seed)
    print(f"tiny model written to {dest} (seed {seed})")


@task(
    name="list",
    help={"directory": DIRECTORY_HELP},
)
def list_(c: Context, directory: str = "") -> None:
    """List the models: the one in use (*), size, license, context, chat template, tools."""
    catalog = catalog_.load_catalog(root() / catalog_.CATALOG_RELPATH)
    from sandboxctl import _text

    selected = load_answers(require_file=False).sandbox_model
    target = Path(directory) if directory else None
    rows = []
    for model in catalog.models.values():
        size = model.size.split(" (")[0].removeprefix("about ")
        rows.append(
            (
                "*" if model.key == selected else "",
                model.key + (" (default)" if model.key == catalog.default else ""),
                size,
                str(model.context),
                "yes" if model.has_chat_template else "NONE",
                "yes" if model.tool_calling else "no",
                "yes" if catalog_.model_path(model, target).is_file() else "no",
                model.source + ("" if model.verified or model.generated else ", unpinned"),
                model.license.split(" (")[0],
            )
        )
    header = ("", "model", "size", "context", "chat", "tools", "here", "source", "license")
    for line in _text.table(header, rows, _text.columns()):
        print(line)
    print(f"* = in use (SANDBOX_MODEL={selected}); switch with `invoke model.use KEY`")


@task(
    positional=["path"],
    help={
        "path": "A GGUF file (LM Studio, Ollama blob, ...)",
        "key": "Catalog key to register it as (default: from the file name)",
        "link": "Hard-link instead of copying (same filesystem only)",
        "sha256": "The SHA-256 the file must have (checked; nothing is added on mismatch)",
        "directory": DIRECTORY_HELP,
    },
)
def add(
    c: Context, path: str, key: str = "", link: bool = False, sha256: str = "", directory: str = ""
) -> None:
    """Register a local GGUF: read its metadata, hash it, copy it in, add it to the catalog."""
    model = register.add(
        Path(path),
        key=key,
        catalog_file=root() / catalog_.CATALOG_RELPATH,
        directory=Path(directory) if directory else None,
        link=link,
        expect_sha256=sha256,
    )
    template = model.chat_template or "NONE (the server falls back to a generic template)"
    print(f"{model.key}: {model.architecture}, {model.parameters} parameters, {model.size}")
    print(f"  context: trained {model.context_trained}, recommended per slot {model.context}")
    print(f"  chat template: {template}; tool calling: {'yes' if model.tool_calling else 'no'}")
    print(f"  sha256 {model.sha256}; recorded in model-server/{catalog_.LOCAL_NAME}")
    print(f"Serve it with `invoke model.use {model.key}`")


@task(
    positional=["key"],
    help={"key": "Catalog key (see model.list)"},
)
def use(c: Context, key: str) -> None:
    """Switch the model the sandbox serves (.env and PLAN.md; raises the context if needed)."""
    changes = selection.use(root(), key)
    for change in changes or [f"{key} is already in use"]:
        print(change)
    model = catalog_.load_catalog(root() / catalog_.CATALOG_RELPATH).get(key)
    if not catalog_.model_path(model).is_file():
        how = "invoke model.tiny" if model.generated else f"invoke model.fetch {key}"
        print(f"{key} is not in the model-data directory yet: `{how}` (or `invoke up`)")
    if not model.has_chat_template:
        print(f"warning: {key} has no chat template; chat replies will be poor (a base model)")
    print("Restart the stack to serve it: `invoke up`")


@task(
    help={
        "version": "llama.cpp version key (default: .env)",
        "backend": "GPU backend: cpu, cuda or vulkan (default: GPU_BACKEND from .env)",
        "ccache": "Host ccache directory mounted at /ccache ('' to disable)",
        "verbose": "Stream the whole build output instead of one live line and a log file",
    },
    choices={"backend": ("", *llama_source.BACKENDS)},
)
def build(
    c: Context, version: str = "", backend: str = "", ccache: str = "default", verbose: bool = False
) -> None:
    """Build the model-server image from the placed source (ccache-backed, no pull)."""
    cache = None
    if ccache:
        cache = llama_source.ccache_dir() if ccache == "default" else Path(ccache)
    model_image.build_answered_model_image(
        root(),
        load_answers(require_file=False),
        runner=Runner(),
        ccache_dir=cache,
        version=version,
        backend=backend,
        verbose=verbose,
    )
