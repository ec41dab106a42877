"""A PEP 517 build backend that needs nothing to build, so the repair tests install local
packages with pip's default build isolation and no network (no setuptools download).

Use it in-tree: `[build-system] requires = [] / build-backend = "tiny_backend" /
backend-path = ["."]`, with `[project] name` and `version`. It packs every top-level folder
holding an `__init__.py`; the editable wheel is a `.pth` file pointing at the source folder.
"""

from __future__ import annotations

import base64
import hashlib
import tomllib
import zipfile
from pathlib import Path

WHEEL = b"Wheel-Version: 1.0\nGenerator: tiny_backend\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def _project() -> tuple[str, str]:
    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    return project["name"], project["version"]


def _wheel(directory: str, files: dict[str, bytes]) -> str:
    name, version = _project()
    dist = f"{name.replace('-', '_')}-{version}"
    info = f"{dist}.dist-info"
    files = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": WHEEL,
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    filename = f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(Path(directory) / filename, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
        zf.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return filename


def build_wheel(
    wheel_directory: str, config_settings: dict | None = None, metadata_directory: str | None = None
) -> str:
    """A wheel of the top-level packages."""
    files = {}
    for package in sorted(p.parent for p in Path().glob("*/__init__.py")):
        for path in sorted(package.rglob("*.py")):
            files[path.as_posix()] = path.read_bytes()
    return _wheel(wheel_directory, files)


def build_editable(
    wheel_directory: str, config_settings: dict | None = None, metadata_directory: str | None = None
) -> str:
    """A wheel whose `.pth` puts this folder on sys.path."""
    name, _ = _project()
    pth = f"{Path.cwd().resolve()}\n".encode()
    return _wheel(wheel_directory, {f"_{name.replace('-', '_')}_editable.pth": pth})


def build_sdist(sdist_directory: str, config_settings: dict | None = None) -> str:
    """Not needed by pip to install."""
    raise NotImplementedError("tiny_backend builds wheels only")
