"""PLAN.md is rendered from the answers: the root's is the default render, and every
rendering carries a machine-readable section that agrees with the answers."""

from __future__ import annotations

from pathlib import Path

from template_support import ROOT

from sandboxctl import plan, scaffold


def test_root_plan_is_the_default_render(default_render: Path) -> None:
    """The template root is itself a sandbox: its PLAN.md is exactly what the defaults render."""
    assert (ROOT / "PLAN.md").read_text() == (default_render / "PLAN.md").read_text()


def test_template_plan_is_a_jinja_file_not_a_link() -> None:
    """PLAN.md depends on the answers, so the template renders it instead of linking it."""
    assert (ROOT / "template" / "PLAN.md.jinja").is_file()
    assert not (ROOT / "template" / "PLAN.md").is_symlink()


def test_plan_section_follows_non_default_answers(tmp_path: Path) -> None:
    """A published port, another port, a GPU backend and a label reach the plan's section."""
    answers = {
        "publish_model_port": True,
        "model_port": 9090,
        "gpu_backend": "vulkan",
        "volume_label": "Z",
        "project_name": "Lab Box",
    }
    dest = scaffold.render(tmp_path / "lab-box", answers, src=ROOT)  # the slug: folder name
    spec = plan.parse_plan((dest / "PLAN.md").read_text()).spec
    assert spec["project"] == "lab-box"
    assert spec["model_port"] == 9090
    assert spec["publish_model_port"] is True
    assert spec["volume_label"] == "Z"
    server = spec["services"]["model-server"]
    assert server["containerfile"] == "model-server/Containerfile"
    assert server["networks"] == ["ai-net", "host-net"]
    assert server["published"] is True
    assert spec["networks"]["host-net"] == {"internal": False}


def test_rendered_plan_agrees_with_rendered_env_and_compose(tmp_path: Path) -> None:
    """With a published port, the rendered sandbox's own .env and compose files match its plan."""
    dest = scaffold.render(tmp_path / "sandbox", {"publish_model_port": True}, src=ROOT)
    report = plan.check(dest)
    compose_or_env = [
        str(d) for d in report.drifts if d.file.startswith(("compose", ".env", ".copier"))
    ]
    assert compose_or_env == []


def test_an_egress_allowlist_adds_the_proxy_to_env_plan_and_compose(tmp_path: Path) -> None:
    """egress_allow: COMPOSE_FILE gains compose.egress.yaml, the plan gains the proxy, its
    volume and network, and the rendered sandbox's plan check finds no drift in them."""
    allow = "pypi.org, .pythonhosted.org"
    dest = scaffold.render(tmp_path / "sandbox", {"egress_allow": allow}, src=ROOT)
    env = (dest / ".env").read_text()
    assert f'EGRESS_ALLOW="{allow}"' in env
    assert "COMPOSE_FILE=compose.yaml:compose.egress.yaml\n" in env
    spec = plan.parse_plan((dest / "PLAN.md").read_text()).spec
    assert spec["egress_allow"] == allow
    assert spec["services"]["egress"]["networks"] == ["tools-net", "egress-net"]
    assert "egress-log" in spec["volumes"]
    assert spec["networks"]["egress-net"] == {"internal": False}
    report = plan.check(dest)
    assert [str(d) for d in report.drifts if d.file.startswith(("compose", ".env", "PLAN"))] == []


def test_the_default_render_has_no_proxy(default_render: Path) -> None:
    spec = plan.parse_plan((default_render / "PLAN.md").read_text()).spec
    assert spec["egress_allow"] == ""
    assert "egress" not in spec["services"]
    assert "COMPOSE_FILE=compose.yaml\n" in (default_render / ".env").read_text()
