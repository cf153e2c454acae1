"""Unit tests of sandboxctl.models.catalog: the schema check and model lookup."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandboxctl.models import catalog
from sandboxctl.models.download import UnverifiedChecksum

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
    parsed = catalog.load_catalog()
    assert parsed.default == "tiny"
    assert parsed.get("tiny").generated


def test_repository_catalog_has_real_tool_calling_models_with_cited_checksums() -> None:
    real = [m for m in catalog.load_catalog().models.values() if not m.generated]
    assert len(real) >= 2
    assert all(m.tool_calling for m in real)
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
