"""copier.yml's choice lists name what the components define, so they cannot drift apart."""

from __future__ import annotations

from typing import Any

import yaml
from template_support import ROOT

from sandboxctl import scaffold
from sandboxctl.llama.source import BACKENDS


def test_model_choices_are_the_catalog_keys(questions: dict[str, dict[str, Any]]) -> None:
    """Every catalog model is offered, and only those; the default is the catalog's default."""
    catalog = yaml.safe_load((ROOT / "model-server" / "catalog.yaml").read_text())
    assert scaffold.choice_values(questions["model"]) == list(catalog["models"])
    assert questions["model"]["default"] == catalog["default"]


def test_llama_cpp_version_choices_are_the_pinned_sources(
    questions: dict[str, dict[str, Any]],
) -> None:
    """Every pinned llama.cpp source is offered, and the default is the sources' default."""
    sources = yaml.safe_load((ROOT / "model-server" / "llama-cpp-sources.yaml").read_text())
    assert scaffold.choice_values(questions["llama_cpp_version"]) == list(sources["versions"])
    assert questions["llama_cpp_version"]["default"] == sources["default_version"]


def test_gpu_backend_choices_each_have_their_stages_in_the_one_containerfile(
    questions: dict[str, dict[str, Any]],
) -> None:
    """Each backend answer (copier.yml's choices, which sandboxctl builds) has a toolchain
    and a base stage in model-server/Containerfile."""
    text = (ROOT / "model-server" / "Containerfile").read_text(encoding="utf-8")
    backends = scaffold.choice_values(questions["gpu_backend"])
    assert list(BACKENDS) == backends
    for backend in backends:
        assert f" AS toolchain-{backend}\n" in text, backend
        assert f" AS base-{backend}\n" in text, backend
