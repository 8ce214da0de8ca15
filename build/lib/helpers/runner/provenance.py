"""Provenance: software versions, git commit, hashes and seeds of a run."""

from __future__ import annotations

import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path

from helpers._environment import KEY_PACKAGES, package_versions, set_seeds  # noqa: F401  (re-exported)
from helpers.imaging.io import sha256_file


def environment_hash() -> str:
    """SHA-256 over every installed distribution's name and version."""
    items = sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions() if d.metadata["Name"])
    return hashlib.sha256("\n".join(items).encode()).hexdigest()


def source_hash(package_dir: str | Path | None = None) -> str:
    """SHA-256 of the ``helpers`` package source (any code change changes it)."""
    root = Path(package_dir) if package_dir else Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        digest.update(f.relative_to(root).as_posix().encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()


def git_state(repo: str | Path) -> dict[str, object]:
    """Current commit and whether the work tree has uncommitted changes."""
    def _git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=20, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


class FileHashCache:
    """SHA-256 of files, cached by path, size and modification time.

    Parameters
    ----------
    path : Path
        JSON file holding the cache (under ``reports/<study>/.state``).
    """

    def __init__(self, path: Path):
        self.path = path
        try:
            self._cache: dict[str, list] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except json.JSONDecodeError:
            self._cache = {}

    def sha256(self, file: Path) -> str:
        """Hash of ``file`` (a folder hashes all its files)."""
        file = Path(file).resolve()
        if file.is_dir():
            return sha256_file(file)
        st = file.stat()
        key = str(file)
        entry = self._cache.get(key)
        if entry and entry[0] == st.st_size and entry[1] == st.st_mtime_ns:
            return entry[2]
        digest = sha256_file(file)
        self._cache[key] = [st.st_size, st.st_mtime_ns, digest]
        return digest

    def save(self) -> None:
        """Write the cache to disk."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self._cache, sort_keys=True), encoding="utf-8")
