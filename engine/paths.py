"""The files a flow names, kept inside its project folder.

A flow names files: lookup tables, test inputs and expected payloads, the coverage base, the
file connector's input and output. A flow file may come from anyone (a pull request, a shared
example) and ``hexaflow validate`` runs on it in CI, so a name in it must not reach a file the
flow's owner did not put there: the environment (``/proc/self/environ``), another project, a
device that never ends (``/dev/zero``), the secrets in ``.env``.

The **project folder** is the folder that holds the flow file; files in its subfolders are
fine. A name is refused when it is absolute, when it leads outside the project folder (by
``..`` or through a symlink), when it names a hidden file or folder (``.env``, ``.git/``), or
when what it names exists but is not a regular file (a folder, a device, a pipe). Every
caller goes through :func:`inside_project`, so the rule is the same everywhere.
"""
from __future__ import annotations

from pathlib import Path

from hexaflow.errors import PathError

INSIDE = "keep the file in the flow file's folder or a subfolder of it"


def inside_project(base: Path, relative: str, what: str) -> Path:
    """``base / relative``, once it is known to stay inside the project folder ``base``.

    ``what`` names the file in messages ("lookup file", "test file"...). A name that does not
    exist yet passes (callers say "not found" in their own words, or create it); one that
    exists must be a regular file. Raises PathError.
    """
    if not relative:
        raise PathError(f"{what} is empty", "name a file next to the flow file")
    if Path(relative).is_absolute():
        raise PathError(f"{what} {relative!r} is an absolute path",
                        f"{INSIDE}, and name it relative to the flow file")
    folder = base.resolve()
    path = base / relative
    try:
        target = path.resolve()            # every symlink on the way followed, even if missing
    except (OSError, RuntimeError, ValueError):    # a symlink loop, a NUL in the name
        raise PathError(f"{what} {relative!r} cannot be resolved (a symlink loop, a NUL?)",
                        f"{INSIDE}, as a regular file") from None
    if not target.is_relative_to(folder):
        how = "through a symlink" if _lexically_inside(relative) else "by '..'"
        raise PathError(f"{what} {relative!r} leads outside the flow file's folder ({how})",
                        f"{INSIDE} (a symlink must point inside it too)")
    if any(part.startswith(".") for part in target.relative_to(folder).parts):
        raise PathError(f"{what} {relative!r} is a hidden file or in a hidden folder",
                        "hidden files (.env, .git/) are never read or written by a flow; "
                        "use a name that does not start with '.'")
    if target.exists() and not target.is_file():
        raise PathError(f"{what} {relative!r} is not a regular file (a folder, device or pipe)",
                        "name a regular file")
    return path


def _lexically_inside(relative: str) -> bool:
    """Whether ``relative`` stays inside its base when read as text, without symlinks."""
    depth = 0
    for part in Path(relative).parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            return False
    return True
