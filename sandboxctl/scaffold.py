"""Render a sandbox from this template with Copier's API (used by `invoke demo` and the tests)."""

from __future__ import annotations

import fnmatch
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from sandboxctl._proc import Runner
from sandboxctl.config import find_root


def is_template_repository(root: Path | None = None) -> bool:
    """Tell whether ``root`` (default: the project the command stands in) is the Copier
    template itself (it has ``copier.yml``)."""
    return ((root or find_root()) / "copier.yml").is_file()


def load_questions(root: Path | None = None) -> dict[str, dict[str, Any]]:
    """Return the questions of ``copier.yml`` (settings starting with ``_`` left out)."""
    root = root or find_root()
    data = yaml.safe_load((root / "copier.yml").read_text(encoding="utf-8"))
    return {key: value for key, value in data.items() if not key.startswith("_")}


def choice_values(question: Mapping[str, Any]) -> list[Any]:
    """Return the values a choice question accepts (its ``choices`` may be a list or a mapping)."""
    choices = question.get("choices", [])
    if isinstance(choices, Mapping):
        return list(choices.values())
    return list(choices)


def render(
    dest: Path,
    data: Mapping[str, Any] | None = None,
    *,
    src: Path | None = None,
    vcs_ref: str = "HEAD",
    quiet: bool = True,
) -> Path:
    """Render the template into ``dest`` with default answers overridden by ``data``.

    ``vcs_ref="HEAD"`` renders the working tree of a local template, uncommitted changes
    included (Copier adds them to its temporary clone); a tag renders that release.
    """
    from copier import run_copy  # imported late: copier is heavy and only needed here

    existed = dest.exists()
    try:
        run_copy(
            str(src or find_root()),
            str(dest),
            data=dict(data or {}),
            defaults=True,
            unsafe=True,
            vcs_ref=vcs_ref,
            quiet=quiet,
            overwrite=True,
        )
    except BaseException:
        if not existed:  # leave nothing half-written behind
            shutil.rmtree(dest, ignore_errors=True)
        raise
    return dest


def parse_answers(text: str, known: Iterable[str] | None = None) -> dict[str, str]:
    """Parse ``NAME=VALUE,NAME=VALUE`` into a mapping; raise ``ValueError`` on a malformed
    pair or a name that is not a question of ``copier.yml`` (``known``, default: its
    questions), which Copier itself would ignore silently."""
    answers: dict[str, str] = {}
    for pair in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"answer {pair!r} is not NAME=VALUE")
        names = sorted(load_questions() if known is None else known)
        if name.strip() not in names:
            raise ValueError(f"unknown answer {name.strip()!r}; known: {', '.join(names)}")
        answers[name.strip()] = value.strip()
    return answers


def fresh_sandbox(source: Path, dest: Path, project: str) -> Path:
    """Make a throw-away sandbox in ``dest`` whose Compose project is ``project``.

    From the template, it is rendered with ``project_slug=project``; from a rendered sandbox
    (no ``copier.yml``), its git-tracked files are copied and ``COMPOSE_PROJECT_NAME`` set.
    Either way the user's own stack is never touched. Used by the e2e and dev container checks.
    """
    if is_template_repository(source):
        return render(dest, {"project_slug": project}, src=source)
    if (source / ".git").exists():
        listing = Runner().run(["git", "ls-files", "-z"], cwd=source)
        if not listing.ok:
            raise RuntimeError(f"git ls-files failed in {source}: {listing.stderr.strip()}")
        for name in filter(None, listing.stdout.split("\0")):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, dest / name, follow_symlinks=False)
    else:  # `copier copy` makes no git repository: what .gitignore leaves out stays out
        shutil.copytree(source, dest, symlinks=True, ignore=_ignored(source))
    rename_project(dest, project)
    return dest


def _ignored(source: Path) -> Callable[[str, list[str]], set[str]]:
    """An ignore function for copytree: names matched by ``source``'s .gitignore patterns
    (and .git), so secrets, models, venvs and caches are not copied."""
    gitignore = source / ".gitignore"
    lines = gitignore.read_text(encoding="utf-8").splitlines() if gitignore.is_file() else []
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]

    def ignore(folder: str, names: list[str]) -> set[str]:
        relative = Path(folder).relative_to(source)
        skipped = set()
        for name in names:
            path = (relative / name).as_posix()
            for pattern in patterns:
                anchored = pattern.startswith("/")
                bare = pattern.strip("/")
                if name == ".git" or (
                    fnmatch.fnmatch(path, bare) if anchored else fnmatch.fnmatch(name, bare)
                ):
                    skipped.add(name)
        return skipped

    return ignore


def rename_project(root: Path, project: str) -> None:
    """Give the rendered sandbox at ``root`` the Compose project ``project`` everywhere its
    slug is stated: ``.env``, PLAN.md's plan section (the project and image names, which
    `invoke plan.check` compares with Compose) and ``.copier-answers.yml``."""
    env = root / ".env"
    old = ""
    lines = []
    for line in env.read_text(encoding="utf-8").splitlines():
        if line.startswith("COMPOSE_PROJECT_NAME="):
            old = line.partition("=")[2].strip()
            line = f"COMPOSE_PROJECT_NAME={project}"
        lines.append(line)
    env.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if not old:
        return
    plan = root / "PLAN.md"
    if plan.is_file():
        text = plan.read_text(encoding="utf-8")
        text = re.sub(rf"^project: {re.escape(old)}$", f"project: {project}", text, flags=re.M)
        plan.write_text(text.replace(f"localhost/{old}-", f"localhost/{project}-"), "utf-8")
    answers = root / ".copier-answers.yml"
    if answers.is_file():
        text = answers.read_text(encoding="utf-8")
        text = re.sub(r"^project_slug: .*$", f"project_slug: {project}", text, flags=re.M)
        answers.write_text(text, encoding="utf-8")
