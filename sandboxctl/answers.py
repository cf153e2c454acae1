"""The one table of the sandbox's answers: each answer's Copier question, ``.env`` key,
PLAN.md key, type, range or choices and default.

``.env`` loading (:mod:`sandboxctl.config`) validates against it, the plan check
(:mod:`sandboxctl.plan.answer_rules`) compares through it, and a unit test holds
``copier.yml`` and ``template/.env.jinja`` to it, so the five places that used to describe
the answers cannot disagree again (they did: CPUs 1-256 here against 1-64 in copier.yml).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["slug", "str", "int", "bool", "choice", "url"]


@dataclass(frozen=True)
class Answer:
    """One answer: where it lives and what values it accepts."""

    env: str
    """Its key in ``.env`` (Compose interpolation, the tasks, the supervisor)."""
    kind: Kind
    default: str
    question: str | None = None
    """Its ``copier.yml`` question, when Copier asks it."""
    plan_key: str | None = None
    """Its key in PLAN.md's machine-readable section, when the plan states it."""
    low: int | None = None
    high: int | None = None
    choices: tuple[str, ...] = ()

    def describe(self) -> str:
        """Say what is accepted, for error messages."""
        if self.kind == "int":
            return f"a whole number from {self.low} to {self.high}"
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return "one of " + ", ".join(repr(choice) for choice in self.choices)
        return {"slug": "lowercase letters, digits, '-' and '_'", "url": "a URL"}.get(
            self.kind, "text"
        )


# fmt: off
ANSWERS: tuple[Answer, ...] = (
    Answer("COMPOSE_PROJECT_NAME", "slug", "ai-sandbox", "project_slug", "project"),
    Answer("SANDBOX_MODEL", "str", "tiny", "model", "model"),
    Answer("GPU_BACKEND", "choice", "cpu", "gpu_backend", "gpu_backend",
           choices=("cpu", "cuda", "vulkan")),
    Answer("MODEL_PORT", "int", "8080", "model_port", "model_port", 1024, 65535),
    Answer("PUBLISH_MODEL_PORT", "bool", "false", "publish_model_port", "publish_model_port"),
    Answer("EGRESS_ALLOW", "str", "", "egress_allow", "egress_allow"),
    Answer("VOLUME_LABEL", "choice", "", "volume_label", "volume_label", choices=("", "z", "Z")),
    Answer("LLAMA_CPP_VERSION", "str", "b11312", "llama_cpp_version", "llama_cpp_version"),
    Answer("MACHINE_CPUS", "int", "4", "machine_cpus", None, 1, 64),
    Answer("MACHINE_MEMORY_MIB", "int", "8192", "machine_memory_mib", None, 2048, 262144),
    Answer("MACHINE_DISK_GIB", "int", "60", "machine_disk_gib", None, 20, 2048),
    Answer("MACHINE_ROOTFUL", "bool", "true", "machine_rootful"),
    Answer("MACHINE_NAME", "str", "podman-machine-default"),
    Answer("MACHINE_IMAGE", "str", ""),
    Answer("SANDBOX_ENGINE", "choice", "auto", "engine", choices=("auto", "native", "machine")),
    Answer("DOCKER_HOST", "url", ""),
    Answer("DEBIAN_MIRROR", "url", "http://deb.debian.org/debian"),
    Answer("BASE_IMAGE", "str", "localhost/ai-sandbox-base:bookworm"),
    Answer("LLAMA_CPU_VARIANTS", "str", "x64,haswell,skylakex"),
    Answer("SANDBOX_NET_PREFIX", "str", "10.90.24"),
)
# fmt: on

BY_ENV: dict[str, Answer] = {answer.env: answer for answer in ANSWERS}
BY_QUESTION: dict[str, Answer] = {a.question: a for a in ANSWERS if a.question is not None}


def answer(env: str) -> Answer:
    """Return the answer whose ``.env`` key is ``env``."""
    return BY_ENV[env]
