"""Crash-safe file writes: every file goes to a temporary name in its folder, then is renamed.

A run killed at any moment leaves either the old file or the new one, never half of one.
"""

import contextlib
import json
import os
import shutil
import tempfile


def writable_dir_problem(path: str, keep: bool = True) -> str | None:
    """Create folder `path` if needed and probe it with a file; None if it is usable, else
    what is wrong with it ("exists and is not a directory", "is not writable (...)").
    keep=False removes again the folders this call created: a check that leaves nothing."""
    if os.path.exists(path) and not os.path.isdir(path):
        return "exists and is not a directory"
    created, parent = [], os.path.abspath(path)
    while not os.path.exists(parent):
        created.append(parent)
        parent = os.path.dirname(parent)
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".tmp-probe-", dir=path)
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        return f"is not writable ({err.strerror or err})"
    finally:
        if not keep:
            for folder in created:  # deepest first
                with contextlib.suppress(OSError):
                    os.rmdir(folder)
    return None


def write_bytes_atomic(path: str, data: bytes) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_text_atomic(path: str, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def replace_dir_atomic(folder: str, fill):
    """Fill a new temporary folder beside `folder` with `fill(tmp)`, then rename it to
    `folder` (an existing `folder` is moved aside first and deleted after). A crash leaves the
    old folder or the new one, never a half-written one. Returns fill's result."""
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-export-", dir=parent)
    os.chmod(tmp, 0o755)
    try:
        result = fill(tmp)
        old = None
        if os.path.exists(folder):
            old = tempfile.mkdtemp(prefix=".tmp-old-", dir=parent)
            os.rmdir(old)
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old:
            shutil.rmtree(old, ignore_errors=True)
        return result
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
