"""`model.add` registers a GGUF the user has; `model.use` selects a model without drift.

GGUFs are written here with the gguf library, so their metadata is known; the catalogs,
.env and PLAN.md are temporary copies of the real ones (plan_copy), so plan.check runs on
exactly what `model.use` left.
"""

from __future__ import annotations

import re
from pathlib import Path

import gguf_sample
import pytest
import yaml
from plan_copy import consistent_copy

from sandboxctl import plan
from sandboxctl.catalog import catalog, metadata, register, selection
from sandboxctl.config import parse_dotenv
from sandboxctl.download import ChecksumMismatch


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A consistent sandbox copy (no plan drift) with an empty model-data directory."""
    root = consistent_copy(tmp_path / "repo")
    (root / "models").mkdir()
    return root


def add(repo: Path, source: Path, **options: object) -> catalog.Model:
    return register.add(
        source,
        catalog_file=repo / "model-server" / "catalog.yaml",
        directory=repo / "models",
        **options,  # type: ignore[arg-type]
    )


def test_metadata_is_read_from_the_gguf(tmp_path: Path) -> None:
    info = metadata.read(gguf_sample.write_gguf(tmp_path / "a.gguf", context=8192))
    assert (info.architecture, info.parameters, info.context_trained) == ("llama", "1K", 8192)
    assert info.license == "apache-2.0"
    assert info.handles_tools
    bare = metadata.read(
        gguf_sample.write_gguf(
            tmp_path / "b.gguf", template=None, size_label=None, license_=None, context=None
        )
    )
    assert bare.chat_template is None
    assert not bare.handles_tools
    assert bare.parameters == "64"  # counted from the tensors (one 8x8)
    assert bare.context_trained is None
    assert bare.license is None
    plain = metadata.read(
        gguf_sample.write_gguf(tmp_path / "c.gguf", template=gguf_sample.PLAIN_TEMPLATE)
    )
    assert plain.chat_template is not None
    assert not plain.handles_tools


def test_add_copies_hashes_and_records_in_the_user_catalog(repo: Path, tmp_path: Path) -> None:
    source = gguf_sample.write_gguf(tmp_path / "My-Model.Q4_K_M.gguf", context=32768)
    model = add(repo, source)
    assert model.key == "my-model.q4_k_m"
    placed = repo / "models" / "my-model.q4_k_m.gguf"
    assert placed.read_bytes() == source.read_bytes()
    assert source.exists()  # copied, not moved
    assert model.sha256 == gguf_sample.sha256(source)
    local = yaml.safe_load((repo / "model-server" / "catalog.local.yaml").read_text())
    entry = local["models"]["my-model.q4_k_m"]
    assert entry["size_bytes"] == source.stat().st_size
    assert entry["context_trained"] == 32768
    assert entry["context"] == register.DEFAULT_CONTEXT  # capped per slot
    assert entry["tool_calling"] is True
    assert entry["chat_template"]
    assert entry["license"] == "apache-2.0"
    assert entry["architecture"] == "llama"
    merged = catalog.load_catalog(repo / "model-server" / "catalog.yaml")
    assert merged.get("my-model.q4_k_m").local
    assert merged.get("tiny").generated  # the template's entries are still there
    assert not [p for p in (repo / "models").iterdir() if p.name.startswith(".")]


def test_add_twice_updates_the_entry_and_keeps_the_others(repo: Path, tmp_path: Path) -> None:
    add(repo, gguf_sample.write_gguf(tmp_path / "a.gguf"), key="first")
    second = gguf_sample.write_gguf(tmp_path / "b.gguf", template=None)
    add(repo, second, key="second")
    add(repo, second, key="first")
    models = catalog.load_catalog(repo / "model-server" / "catalog.yaml").models
    assert not models["first"].has_chat_template
    assert models["first"].sha256 == models["second"].sha256
    assert models["second"].added_from == str(second)


def test_add_with_a_wrong_expected_hash_leaves_nothing(repo: Path, tmp_path: Path) -> None:
    source = gguf_sample.write_gguf(tmp_path / "a.gguf")
    with pytest.raises(ChecksumMismatch, match="nothing was added"):
        add(repo, source, key="a", expect_sha256="0" * 64)
    assert list((repo / "models").iterdir()) == []
    assert not (repo / "model-server" / "catalog.local.yaml").exists()
    model = add(repo, source, key="a", expect_sha256=gguf_sample.sha256(source).upper())
    assert model.sha256 == gguf_sample.sha256(source)


def test_add_refuses_what_is_not_a_gguf_and_leaves_nothing(repo: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "notes.gguf"
    bogus.write_bytes(b"GGUX" + bytes(100))
    with pytest.raises(register.RegisterError, match="not a readable GGUF"):
        add(repo, bogus)
    assert list((repo / "models").iterdir()) == []
    assert not (repo / "model-server" / "catalog.local.yaml").exists()


def test_add_refuses_a_key_of_the_template_catalog(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(register.RegisterError, match="--key"):
        add(repo, gguf_sample.write_gguf(tmp_path / "a.gguf"), key="tiny")
    with pytest.raises(register.RegisterError, match="lowercase"):
        add(repo, gguf_sample.write_gguf(tmp_path / "a.gguf"), key="Bad Key")


def test_add_with_link_shares_the_file(repo: Path, tmp_path: Path) -> None:
    source = gguf_sample.write_gguf(repo / "elsewhere.gguf")  # same filesystem as models/
    add(repo, source, key="linked", link=True)
    assert (repo / "models" / "linked.gguf").stat().st_ino == source.stat().st_ino


def test_user_catalog_clashing_with_the_template_is_an_error(repo: Path) -> None:
    tiny = catalog.load_catalog(repo / "model-server" / "catalog.yaml").get("tiny")
    clash = {"schema": 1, "models": {"tiny": {"description": "mine", **_local_fields(tiny)}}}
    (repo / "model-server" / "catalog.local.yaml").write_text(yaml.safe_dump(clash))
    with pytest.raises(catalog.CatalogError, match=r"already in catalog\.yaml"):
        catalog.load_catalog(repo / "model-server" / "catalog.yaml")
    assert (
        "tiny" in catalog.load_catalog(repo / "model-server" / "catalog.yaml", local=False).models
    )


def _local_fields(model: catalog.Model) -> dict[str, object]:
    return {
        "generated": False,
        "url": None,
        "sha256": "a" * 64,
        "sha256_source": None,
        "size_bytes": 1,
        "size": "1 B",
        "license": "MIT",
        "chat_template": None,
        "tool_calling": False,
        "context": model.context,
        "added_from": "/somewhere.gguf",
    }


def test_use_switches_env_and_plan_without_drift(repo: Path, tmp_path: Path) -> None:
    add(repo, gguf_sample.write_gguf(tmp_path / "a.gguf"), key="mine")
    # A rendered sandbox's answers file keeps the model asked at copy time.
    port = parse_dotenv((repo / ".env").read_text())["MODEL_PORT"]
    (repo / ".copier-answers.yml").write_text(f"_commit: v1\nmodel: tiny\nmodel_port: {port}\n")
    changes = selection.use(repo, "mine")
    assert ".env: SANDBOX_MODEL=mine" in changes
    assert "PLAN.md: model: mine" in changes
    env = parse_dotenv((repo / ".env").read_text())
    assert env["SANDBOX_MODEL"] == "mine"
    assert "model: mine" in (repo / "PLAN.md").read_text().splitlines()
    assert [str(d) for d in plan.check(repo).drifts] == []
    assert selection.use(repo, "mine") == []  # nothing left to change


def test_use_raises_the_context_only_when_the_model_needs_more(repo: Path) -> None:
    env_file = repo / ".env"
    env_file.write_text(env_file.read_text() + "MODEL_CTX_SIZE=2048\nMODEL_PARALLEL=2\n")
    changes = selection.use(repo, "smollm2-135m-instruct")  # 4096 per slot
    assert any("MODEL_CTX_SIZE=8192" in change for change in changes)
    assert parse_dotenv(env_file.read_text())["MODEL_CTX_SIZE"] == "8192"
    assert [str(d) for d in plan.check(repo).drifts] == []
    selection.use(repo, "tiny")  # 512 per slot: never lowered
    assert parse_dotenv(env_file.read_text())["MODEL_CTX_SIZE"] == "8192"


def test_use_of_an_unknown_model_changes_nothing(repo: Path) -> None:
    before = (repo / ".env").read_text(), (repo / "PLAN.md").read_text()
    with pytest.raises(selection.SelectionError, match=r"model\.add"):
        selection.use(repo, "nope")
    assert ((repo / ".env").read_text(), (repo / "PLAN.md").read_text()) == before


def test_selected_chat_template_reads_the_file_else_the_catalog(repo: Path, tmp_path: Path) -> None:
    assert metadata.selected_chat_template(repo, "gemma3-270m-base", repo / "models") is False
    assert metadata.selected_chat_template(repo, "smollm2-135m-instruct", repo / "models")
    assert metadata.selected_chat_template(repo, "nope", repo / "models") is None
    add(repo, gguf_sample.write_gguf(tmp_path / "a.gguf", template=None), key="base")
    assert metadata.selected_chat_template(repo, "base", repo / "models") is False
    # The file in place is the truth, whatever the catalog says.
    gguf_sample.write_gguf(repo / "models" / "base.gguf")
    assert metadata.selected_chat_template(repo, "base", repo / "models") is True


def test_tasks_add_use_and_list_as_a_user_runs_them(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`invoke model.add`, `model.use` and `model.list` in the sandbox folder."""
    from invoke.context import Context

    from sandboxctl.tasks import model as model_tasks

    monkeypatch.chdir(repo)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("SANDBOX_MODEL_DIR", str(repo / "models"))
    source = gguf_sample.write_gguf(tmp_path / "Base.gguf", template=None, context=1024)
    model_tasks.add(Context(), str(source))
    added = capsys.readouterr().out
    assert "chat template: NONE" in added
    assert "invoke model.use base" in added
    model_tasks.use(Context(), "base")
    used = capsys.readouterr().out
    assert ".env: SANDBOX_MODEL=base" in used
    assert "no chat template" in used
    model_tasks.list_(Context())
    selected = [line for line in capsys.readouterr().out.splitlines() if line.startswith("*  ")]
    assert len(selected) == 1
    cells = re.split(r"\s{2,}", selected[0])
    marker, key, _size, context, template, tools, present, source_kind, license_ = cells
    assert (marker, key, source_kind, license_) == ("*", "base", "local", "apache-2.0")
    assert (context, template, tools, present) == ("1024", "NONE", "no", "yes")
