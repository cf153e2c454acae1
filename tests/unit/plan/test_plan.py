"""plan.check: drift between PLAN.md and the repository is found, with its file and line.

Every test works on a temporary copy of the real PLAN.md, compose files, .env, Containerfiles
and catalogs, changes one thing and expects the check to name it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from invoke.context import Context
from invoke.exceptions import Exit
from plan_copy import ROOT, consistent_copy, replace

from sandboxctl import plan
from sandboxctl.tasks import plan as plan_tasks


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A consistent copy of the real files: the check finds no drift in it."""
    return consistent_copy(tmp_path / "repo")


def drifts(repo: Path) -> list[str]:
    """The drifts plan.check reports, as ``file:line: message`` strings."""
    return [str(finding) for finding in plan.check(repo).drifts]


def line_of(path: Path, needle: str) -> int:
    """The 1-based number of the first line of ``path`` containing ``needle``."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def test_consistent_copy_has_no_drift(repo: Path) -> None:
    """The baseline every other test changes one thing in."""
    assert drifts(repo) == []


def test_changed_model_port_in_env_is_a_drift_at_its_line(repo: Path) -> None:
    """MODEL_PORT=8081 while the plan says 8080: reported at .env's MODEL_PORT line."""
    replace(repo / ".env", "MODEL_PORT=8080", "MODEL_PORT=8081")
    line = line_of(repo / ".env", "MODEL_PORT=")
    assert f".env:{line}: MODEL_PORT=8081, the plan says 8080" in drifts(repo)


def test_changed_listen_port_in_compose_is_a_drift(repo: Path) -> None:
    """The model server listening on another port than the plan's is found in compose.yaml."""
    replace(repo / "compose.yaml", "LLAMA_ARG_PORT: ${MODEL_PORT:-8080}", "LLAMA_ARG_PORT: 9000")
    line = line_of(repo / "compose.yaml", "LLAMA_ARG_PORT: 9000")
    assert any(
        d.startswith(f"compose.yaml:{line}: service model-server: listens on 9000")
        for d in drifts(repo)
    )


def test_port_published_against_the_plan_is_a_drift(repo: Path) -> None:
    """A `ports:` entry on a service the plan does not publish is reported."""
    replace(
        repo / "compose.yaml",
        "    networks:\n      ai-net:\n",
        '    ports: ["8080:8080"]\n    networks:\n      ai-net:\n',
    )
    found = drifts(repo)
    assert any("service model-server: publishes ['8080:8080']" in d for d in found), found


def test_port_published_beyond_loopback_is_a_drift(repo: Path) -> None:
    """When the plan publishes the port, binding it on every interface is still a drift."""
    make_plan_publish(repo)
    replace(
        repo / "compose.publish.yaml",
        '"127.0.0.1:${MODEL_PORT:-8080}',
        '"0.0.0.0:${MODEL_PORT:-8080}',
    )
    found = drifts(repo)
    assert any(
        d.startswith("compose.publish.yaml:") and "the plan publishes only 127.0.0.1:8080:8080" in d
        for d in found
    ), found


def make_plan_publish(repo: Path) -> None:
    """Switch the copy to a published model port: .env, and the plan as the template renders it."""
    replace(repo / ".env", "PUBLISH_MODEL_PORT=false", "PUBLISH_MODEL_PORT=true")
    replace(
        repo / ".env", "COMPOSE_FILE=compose.yaml", "COMPOSE_FILE=compose.yaml:compose.publish.yaml"
    )
    replace(repo / "PLAN.md", "publish_model_port: false", "publish_model_port: true")
    replace(repo / "PLAN.md", "published: false", "published: true")
    replace(
        repo / "PLAN.md", "networks: [ai-net]\n    port:", "networks: [ai-net, host-net]\n    port:"
    )
    replace(
        repo / "PLAN.md",
        "    internal: true\n```",
        "    internal: true\n  host-net:\n    internal: false\n```",
    )


def test_published_port_on_loopback_matches_a_publishing_plan(repo: Path) -> None:
    """The publish overlay (127.0.0.1 only, host-net) is what a publishing plan expects."""
    make_plan_publish(repo)
    assert drifts(repo) == []


def test_publishing_in_env_against_the_plan_is_a_drift(repo: Path) -> None:
    """PUBLISH_MODEL_PORT=true with the overlay, while the plan keeps the port private."""
    replace(repo / ".env", "PUBLISH_MODEL_PORT=false", "PUBLISH_MODEL_PORT=true")
    replace(
        repo / ".env", "COMPOSE_FILE=compose.yaml", "COMPOSE_FILE=compose.yaml:compose.publish.yaml"
    )
    found = drifts(repo)
    assert any(d.startswith(".env:") and "PUBLISH_MODEL_PORT=true" in d for d in found)
    assert any(d.startswith("compose.publish.yaml:") and "publishes" in d for d in found)
    assert any("network host-net is not in PLAN.md" in d for d in found)


def test_renamed_volume_is_a_drift_in_compose(repo: Path) -> None:
    """Renaming model-data to models: the planned volume is missing and the new one unplanned."""
    text = (repo / "compose.yaml").read_text()
    (repo / "compose.yaml").write_text(text.replace("model-data", "models"))
    found = drifts(repo)
    assert any(
        d.startswith("compose.yaml:") and "volume model-data required by PLAN.md is missing" in d
        for d in found
    )
    lines = (repo / "compose.yaml").read_text().splitlines()
    line = lines.index("  models:") + 1
    assert f"compose.yaml:{line}: volume models is not in PLAN.md" in found
    assert any("service model-server: does not mount 'model-data'" in d for d in found)


def test_removed_cap_drop_is_a_drift_for_each_service(repo: Path) -> None:
    """Without `cap_drop: [ALL]` in the shared hardening block, every service drifts."""
    replace(repo / "compose.yaml", "  cap_drop: [ALL]\n", "")
    found = [d for d in drifts(repo) if "cap_drop lacks ALL" in d]
    assert len(found) == 3
    assert all(d.startswith("compose.yaml:") for d in found)


def test_cap_drop_line_points_at_the_anchor_that_defines_it(repo: Path) -> None:
    """A merged key keeps the line where the anchor writes it."""
    replace(repo / "compose.yaml", "cap_drop: [ALL]", "cap_drop: [NET_RAW]")
    line = line_of(repo / "compose.yaml", "cap_drop: [NET_RAW]")
    assert f"compose.yaml:{line}: service supervisor: cap_drop lacks ALL" in drifts(repo)


def test_removed_no_new_privileges_is_a_drift(repo: Path) -> None:
    """security_opt without no-new-privileges is reported."""
    replace(repo / "compose.yaml", '"no-new-privileges:true"', '"label=disable"')
    assert any("security_opt lacks no-new-privileges" in d for d in drifts(repo))


def test_writable_root_filesystem_is_a_drift(repo: Path) -> None:
    """read_only: false is reported."""
    replace(repo / "compose.yaml", "read_only: true", "read_only: false")
    assert any("root filesystem is not read_only" in d for d in drifts(repo))


def test_root_user_in_compose_is_a_drift(repo: Path) -> None:
    """A service running as uid 0 is reported at its user line."""
    replace(repo / "compose.yaml", 'user: "10001:10001"', 'user: "0:0"')
    line = line_of(repo / "compose.yaml", 'user: "0:0"')
    assert any(
        d.startswith(f"compose.yaml:{line}: service model-server: runs as root")
        for d in drifts(repo)
    )


def test_network_no_longer_internal_is_a_drift(repo: Path) -> None:
    """ai-net losing `internal: true` is reported."""
    replace(repo / "compose.yaml", "    internal: true\n", "    internal: false\n")
    assert any("network ai-net is not internal" in d for d in drifts(repo))


def test_changed_image_tag_is_a_drift(repo: Path) -> None:
    """An image name other than the plan's is reported."""
    replace(repo / "compose.yaml", "-supervisor:dev", "-supervisor:latest")
    assert any("service supervisor: image" in d and ":latest" in d for d in drifts(repo))


def test_unplanned_service_is_a_drift(repo: Path) -> None:
    """A service PLAN.md does not list is reported."""
    text = (repo / "compose.yaml").read_text()
    (repo / "compose.yaml").write_text(
        text.replace("\nvolumes:\n", "\n  debug:\n    image: x\n\nvolumes:\n", 1)
    )
    assert any("service debug is not in PLAN.md" in d for d in drifts(repo))


def test_required_service_missing_from_compose_is_a_drift(repo: Path) -> None:
    """A service the plan requires (not marked planned) must exist."""
    text = (repo / "compose.yaml").read_text()
    start = text.index("\n  tools:\n") + 1
    end = text.index("\nvolumes:\n", start) + 1
    (repo / "compose.yaml").write_text(text[:start] + text[end:])
    assert any("service tools required by PLAN.md is missing" in d for d in drifts(repo))


def test_planned_service_is_skipped_while_absent_and_checked_once_present(repo: Path) -> None:
    """A `planned` service is not required yet; once compose defines it, it is checked
    (here: hardening). The service is new, so Compose itself accepts the file."""
    planned = '  sidecar:\n    planned: true\n    user: "10001:10001"\n    networks: [tools-net]\n'
    replace(
        repo / "PLAN.md",
        "volumes: [model-data, workspace, logs]\n",
        planned + "volumes: [model-data, workspace, logs]\n",
    )
    assert drifts(repo) == []
    text = (repo / "compose.yaml").read_text()
    sidecar = '  sidecar:\n    image: x\n    user: "10001:10001"\n    networks: [tools-net]\n'
    (repo / "compose.yaml").write_text(text.replace("\nvolumes:\n", f"\n{sidecar}\nvolumes:\n", 1))
    found = drifts(repo)
    assert any("service sidecar: cap_drop lacks ALL" in d for d in found), found


def test_compose_file_that_compose_refuses_is_a_drift_with_composes_message(repo: Path) -> None:
    """A duplicated service key: YAML loaders keep the last one, Compose refuses the file."""
    text = (repo / "compose.yaml").read_text()
    again = "  tools:\n    image: x\n"
    (repo / "compose.yaml").write_text(text.replace("\nvolumes:\n", f"\n{again}\nvolumes:\n", 1))
    assert any('mapping key "tools" already defined' in d for d in drifts(repo))


def test_missing_compose_overlay_is_a_drift(repo: Path) -> None:
    """A file COMPOSE_FILE names that does not exist is reported at the COMPOSE_FILE line."""
    replace(
        repo / ".env", "COMPOSE_FILE=compose.yaml", "COMPOSE_FILE=compose.yaml:compose.gone.yaml"
    )
    line = line_of(repo / ".env", "COMPOSE_FILE=")
    assert f".env:{line}: compose file compose.gone.yaml (COMPOSE_FILE) is missing" in drifts(repo)


def test_renamed_stage_is_a_drift_in_the_containerfile(repo: Path) -> None:
    """Stage names must be the plan's, in its order."""
    containerfile = repo / "model-server/Containerfile"
    containerfile.write_text(containerfile.read_text().replace("AS base-cpu", "AS runtime-cpu"))
    assert any(
        d.startswith("model-server/Containerfile:") and "'runtime-cpu', 'base-vulkan'" in d
        for d in drifts(repo)
    )


def test_containerfile_without_user_is_a_drift(repo: Path) -> None:
    """An image whose running stage sets no USER runs as root."""
    containerfile = repo / "model-server/Containerfile"
    containerfile.write_text(re.sub(r"^USER .*$", "", containerfile.read_text(), flags=re.M))
    assert any(d.startswith("model-server/Containerfile:") and "no USER" in d for d in drifts(repo))


def test_containerfile_user_root_is_a_drift(repo: Path) -> None:
    """USER root in the running stage is reported at its line."""
    containerfile = repo / "model-server/Containerfile"
    containerfile.write_text(
        re.sub(r"^USER .*$", "USER root", containerfile.read_text(), flags=re.M)
    )
    line = line_of(containerfile, "USER root")
    assert f"model-server/Containerfile:{line}: USER root is root" in drifts(repo)


def test_missing_required_containerfile_is_a_drift(repo: Path) -> None:
    """A Containerfile the plan builds from must exist (reported at the plan's line)."""
    (repo / "supervisor/Containerfile").unlink()
    line = line_of(repo / "PLAN.md", "containerfile: supervisor/Containerfile")
    assert (
        f"PLAN.md:{line}: supervisor/Containerfile is missing (the plan builds from it)"
        in drifts(repo)
    )


def test_pin_bumped_without_checksum_is_a_drift(repo: Path) -> None:
    """A new llama.cpp pin whose only origin has no sha256 is reported in the sources file."""
    sources_path = repo / "model-server/llama-cpp-sources.yaml"
    sources = yaml.safe_load(sources_path.read_text())
    old = re.search(r"^LLAMA_CPP_VERSION=(\S+)$", (repo / ".env").read_text(), re.M)
    assert old
    text = sources_path.read_text() + (
        "  b99999:\n    commit: deadbeef\n    build_number: 99999\n    origins:\n"
        "      github:\n        url: https://example.invalid/b99999.tar.gz\n"
        "        sha256: null\n        size: null\n        subdir: x\n        sha256_source: null\n"
    )
    sources_path.write_text(text)
    assert "b99999" not in sources["versions"]
    replace(repo / ".env", f"LLAMA_CPP_VERSION={old.group(1)}", "LLAMA_CPP_VERSION=b99999")
    plan_text = (repo / "PLAN.md").read_text()
    (repo / "PLAN.md").write_text(plan_text.replace(old.group(1), "b99999"))
    line = line_of(sources_path, "  b99999:")
    message = "llama.cpp b99999 has no origin with a sha256: pin a cited checksum"
    assert drifts(repo) == [f"model-server/llama-cpp-sources.yaml:{line}: {message}"]


def test_pin_missing_from_sources_is_a_drift(repo: Path) -> None:
    """Bumping the pin in .env and the plan to a version the sources do not list."""
    old = re.search(r"^LLAMA_CPP_VERSION=(\S+)$", (repo / ".env").read_text(), re.M)
    assert old
    replace(repo / ".env", f"LLAMA_CPP_VERSION={old.group(1)}", "LLAMA_CPP_VERSION=b77777")
    plan_text = (repo / "PLAN.md").read_text()
    (repo / "PLAN.md").write_text(plan_text.replace(old.group(1), "b77777"))
    assert any("no llama.cpp version 'b77777'" in d for d in drifts(repo))


def test_pin_changed_in_env_only_is_a_drift(repo: Path) -> None:
    """The .env pin must be the plan's."""
    text = (repo / ".env").read_text()
    (repo / ".env").write_text(
        re.sub(r"^LLAMA_CPP_VERSION=.*$", "LLAMA_CPP_VERSION=b1", text, flags=re.M)
    )
    assert any(
        d.startswith(".env:") and "LLAMA_CPP_VERSION=b1, the plan says" in d for d in drifts(repo)
    )


def test_model_missing_from_catalog_is_a_drift(repo: Path) -> None:
    """The plan's model must be a key of model-server/catalog.yaml."""
    replace(repo / ".env", "SANDBOX_MODEL=tiny", "SANDBOX_MODEL=nope")
    replace(repo / "PLAN.md", "model: tiny", "model: nope")
    line = line_of(repo / "model-server/catalog.yaml", "models:")
    assert any(
        d.startswith(f"model-server/catalog.yaml:{line}: no model 'nope'") for d in drifts(repo)
    )


def test_model_changed_in_env_only_is_a_drift(repo: Path) -> None:
    """SANDBOX_MODEL differing from the plan's model is reported."""
    replace(repo / ".env", "SANDBOX_MODEL=tiny", "SANDBOX_MODEL=qwen2.5-0.5b-instruct")
    assert any("SANDBOX_MODEL=qwen2.5-0.5b-instruct, the plan says tiny" in d for d in drifts(repo))


def test_answers_file_disagreeing_with_the_plan_is_a_drift(repo: Path) -> None:
    """In a rendered sandbox, .copier-answers.yml must agree with the plan."""
    (repo / ".copier-answers.yml").write_text("_commit: v1\nmodel: tiny\nmodel_port: 9999\n")
    assert ".copier-answers.yml:3: model_port: 9999, the plan says 8080" in drifts(repo)


def test_template_choice_missing_from_catalog_is_a_drift(repo: Path) -> None:
    """In the template, every model choice of copier.yml must be in the catalog."""
    (repo / "copier.yml").write_text(
        "_subdirectory: template\nmodel:\n  type: str\n  choices:\n    a: tiny\n    b: ghost\n"
    )
    assert "copier.yml:4: model choice 'ghost' is not in model-server/catalog.yaml" in drifts(repo)


def test_old_open_deviation_is_a_warning_not_a_drift(repo: Path) -> None:
    """An open deviation older than the allowed age warns; the check still passes."""
    (repo / "docs").mkdir()
    (repo / "docs/ISSUE_LOG.md").write_text(
        "# Issue log\n\n## DEV-0001 | opened 2026-01-01T00:00:00Z | Old one\n"
        "- author: a\n- reason: r\n- steps: s\n"
    )
    report = plan.check(repo, max_open_days=14, now=datetime(2026, 2, 1, tzinfo=UTC))
    assert report.ok
    assert len(report.warnings) == 1
    assert str(report.warnings[0]).startswith("docs/ISSUE_LOG.md:3: DEV-0001 (Old one)")


def test_open_deviation_within_the_allowed_age_does_not_warn(repo: Path) -> None:
    """The age is configurable: 60 days allows a 31-day-old deviation."""
    (repo / "docs").mkdir()
    (repo / "docs/ISSUE_LOG.md").write_text(
        "## DEV-0001 | opened 2026-01-01T00:00:00Z | Old one\n- reason: r\n- steps: s\n"
    )
    report = plan.check(repo, max_open_days=60, now=datetime(2026, 2, 1, tzinfo=UTC))
    assert report.warnings == []


def test_plan_without_machine_readable_section_is_an_error(repo: Path) -> None:
    """A PLAN.md with no ```yaml plan_schema block cannot be checked."""
    (repo / "PLAN.md").write_text("# Plan\n\nprose only\n")
    with pytest.raises(plan.PlanError, match="no ```yaml block with plan_schema"):
        plan.check(repo)


def test_plan_section_lacking_keys_is_an_error() -> None:
    """Every key the check relies on must be in the section."""
    with pytest.raises(plan.PlanError, match="lacks"):
        plan.parse_plan("# P\n\n```yaml\nplan_schema: 1\nmodel: tiny\n```\n")


def test_plan_section_lines_are_counted_in_plan_md() -> None:
    """Lines of the section are PLAN.md lines, not lines of the block."""
    text = (ROOT / "PLAN.md").read_text()
    parsed = plan.parse_plan(text)
    assert parsed.line("model_port") == line_of(ROOT / "PLAN.md", "model_port:")


def test_compose_interpolation_is_composes_own(repo: Path) -> None:
    """`${VOLUME_LABEL:+,${VOLUME_LABEL}}` is expanded by Compose: with VOLUME_LABEL=z the
    mount reads `ro,z` and is still the plan's model-data volume (only .env changed, and
    the plan's volume_label follows)."""
    replace(repo / ".env", "VOLUME_LABEL=", "VOLUME_LABEL=z")
    replace(repo / "PLAN.md", 'volume_label: ""', "volume_label: z")
    assert drifts(repo) == []


def test_the_shells_variables_do_not_change_what_the_files_say(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """plan.check reads the files: an exported MODEL_PORT must not hide or cause a drift."""
    monkeypatch.setenv("MODEL_PORT", "9999")
    monkeypatch.setenv("COMPOSE_FILE", "nosuch.yaml")
    assert drifts(repo) == []


def test_effective_user_is_inherited_from_the_parent_stage() -> None:
    """`FROM base AS server` runs as the USER that `base` set."""
    stages = plan.parse_containerfile("FROM d AS base\nUSER 10001\nFROM base AS server\nCMD x\n")
    assert plan.effective_user(stages, "server") == ("10001", 2)


def test_check_task_exits_non_zero_on_drift(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`invoke plan.check` fails (exit 1) when there is a drift, and prints it."""
    replace(repo / ".env", "MODEL_PORT=8080", "MODEL_PORT=8081")
    monkeypatch.chdir(repo)
    with pytest.raises(Exit) as caught:
        plan_tasks.check(Context())
    assert caught.value.code == 1


def test_check_task_passes_without_drift(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`invoke plan.check` succeeds on the consistent copy."""
    monkeypatch.chdir(repo)
    plan_tasks.check(Context())
    assert "no drift" in capsys.readouterr().out
