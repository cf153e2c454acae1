"""What ``copier update`` runs in a sandbox after it renders a newer release into it
(copier.yml's ``_migrations``). Copier runs it with its own Python, so this module and
what it imports use the standard library only.

From 0.2.0 on, the model image's folder is ``model-server/`` (the Compose service's and the
image's name), no longer ``model/``. Copier renders the template's files there and removes
the ones it had rendered in ``model/``, an owner's edits to them included (git still has
those in ``HEAD``). What Copier never rendered stays in ``model/``: the user catalog
``catalog.local.yaml`` (`invoke model.add`), the placed llama.cpp source in ``context/``,
anything the owner added. :func:`move_model_folder` moves each of those into
``model-server/`` (never over a file there), removes ``model/`` once it is empty, and names
each file whose committed ``model/`` version differs from its ``model-server/`` one, with
the command that shows how.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sandboxctl._proc import CommandNotFound, Runner

OLD, NEW = "model", "model-server"


def committed_files(root: Path, folder: str, runner: Runner | None = None) -> dict[str, str]:
    """Return the files ``HEAD`` holds under ``folder`` (relative to it) and their content;
    empty outside a git repository."""
    runner = runner or Runner()
    try:
        listed = runner.run(["git", "ls-tree", "-r", "--name-only", "HEAD", folder], cwd=root)
    except CommandNotFound:
        return {}
    files: dict[str, str] = {}
    for name in listed.stdout.splitlines() if listed.ok else []:
        shown = runner.run(["git", "show", f"HEAD:{name}"], cwd=root)
        if shown.ok:
            files[name.removeprefix(f"{folder}/")] = shown.stdout
    return files


def _move_leftovers(old: Path, new: Path, kept: list[str]) -> list[str]:
    """Move what is left in ``old`` into ``new`` where nothing of that name is; return the
    moved paths and add the ones that stay (a name taken in ``new``) to ``kept``."""
    moved: list[str] = []
    for entry in sorted(old.iterdir()):
        target = new / entry.name
        if not target.exists() and not target.is_symlink():
            entry.rename(target)
            moved.append(entry.name)
        elif entry.is_dir() and not entry.is_symlink() and target.is_dir():
            moved += [f"{entry.name}/{name}" for name in _move_leftovers(entry, target, kept)]
            if not any(entry.iterdir()):
                entry.rmdir()
        else:
            kept.append(str(entry.relative_to(old.parent)))
    return moved


def move_model_folder(root: Path, runner: Runner | None = None) -> list[str]:
    """Carry a sandbox's ``model/`` over to ``model-server/`` after the update; return the
    lines to tell its owner (none when there is nothing to do)."""
    old, new = root / OLD, root / NEW
    if not old.is_dir() or not new.is_dir():
        return []
    kept: list[str] = []
    moved = _move_leftovers(old, new, kept)
    if not any(old.iterdir()):
        old.rmdir()
    lines = [f"moved {OLD}/{name} to {NEW}/{name}" for name in moved]
    lines += [f"kept {name}: {NEW}/ has a file of that name; merge it by hand" for name in kept]
    committed = committed_files(root, OLD, runner)
    for name, text in sorted(committed.items()):
        current = new / name
        if not current.is_file() or current.read_text(encoding="utf-8", errors="replace") != text:
            lines.append(
                f"{OLD}/{name} as committed differs from {NEW}/{name} (your edit, or the "
                f"template's): `git show HEAD:{OLD}/{name} | diff - {NEW}/{name}` shows how"
                if current.is_file()
                else f"{OLD}/{name} is gone: `git show HEAD:{OLD}/{name}` prints it"
            )
    return lines


def main() -> int:
    """Run the migrations in the working directory (the sandbox) and print what they did."""
    lines = move_model_folder(Path.cwd())
    if lines:
        print(f"copier update: {OLD}/ is now {NEW}/", *(f"  {line}" for line in lines), sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
