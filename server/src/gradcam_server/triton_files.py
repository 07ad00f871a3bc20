"""Find the Triton server bundled in the `nvidia-pytriton` wheel and prepare a copy that runs.

The wheel ships `pytriton/tritonserver/` (the `tritonserver` binary, the python backend and one
backend stub per Python version) and its shared libraries in `nvidia_pytriton.libs/`. To serve an
ordinary model repository, `tritonserver/` is copied once into a cache folder with the stub
matching the running Python at `backends/python/triton_python_backend_stub` (done in a temporary
folder, then renamed, so two processes preparing at once do not see half-copied files). The stub
links against the shared libpython that `find_libpython` locates.
"""

from __future__ import annotations

import errno
import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from gradcam_server.errors import LauncherError

STUB_NAME = "triton_python_backend_stub"
_MARKER = ".prepared.json"


@dataclass(frozen=True)
class TritonDistribution:
    """The Triton files inside an installed nvidia-pytriton wheel."""

    version: str  # version of the nvidia-pytriton package
    server_dir: Path  # .../pytriton/tritonserver
    libs_dir: Path  # .../nvidia_pytriton.libs

    def stub_path(self, python_version: str) -> Path:
        """The python backend stub built for `python_version` ("3.11")."""
        return self.server_dir / "python_backend_stubs" / python_version / STUB_NAME


def _python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def find_triton_distribution() -> TritonDistribution:
    """Locate the Triton server shipped by nvidia-pytriton in this environment."""
    spec = importlib.util.find_spec("pytriton")
    hint = f"install it into this environment ({sys.prefix}): pip install nvidia-pytriton"
    if spec is None or not spec.submodule_search_locations:
        raise LauncherError(f"nvidia-pytriton is not installed; {hint}")
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    server_dir = package_dir / "tritonserver"
    if not (server_dir / "bin" / "tritonserver").is_file():
        raise LauncherError(
            f"nvidia-pytriton at {package_dir} has no bundled server "
            f"({server_dir / 'bin' / 'tritonserver'} is missing); {hint}"
        )
    libs_dir = package_dir.parent / "nvidia_pytriton.libs"
    if not libs_dir.is_dir():  # an editable (source) install keeps them here
        libs_dir = server_dir / "external_libs"
    try:
        version = importlib.metadata.version("nvidia-pytriton")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return TritonDistribution(version=version, server_dir=server_dir, libs_dir=libs_dir)


def find_libpython() -> Path:
    """Return the folder holding the shared libpython the backend stub links against.

    Searched: `$GRADCAM_LIBPYTHON_DIR`, sysconfig LIBDIR, `<base prefix>/lib` and `/lib64`,
    for sysconfig INSTSONAME / LDLIBRARY / `libpython3.X.so.1.0`.
    """
    version = _python_version()
    names = [f"libpython{version}.so.1.0"]
    for var in ("INSTSONAME", "LDLIBRARY"):
        value = sysconfig.get_config_var(var)
        if value and ".so" in value and value not in names:
            names.append(value)
    dirs: list[Path] = []
    override = os.environ.get("GRADCAM_LIBPYTHON_DIR")
    if override:
        dirs.append(Path(override))
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:
        dirs.append(Path(libdir))
    for prefix in (sys.base_prefix, sys.base_exec_prefix):
        dirs += [Path(prefix) / "lib", Path(prefix) / "lib64"]
    searched: list[Path] = []
    for directory in dirs:
        if directory in searched:
            continue
        searched.append(directory)
        if any((directory / name).exists() for name in names):
            return directory
    raise LauncherError(
        f"cannot find the shared Python library ({' or '.join(names)}) needed by Triton's python "
        f"backend; searched {', '.join(map(str, searched))}. Use a Python built with "
        "--enable-shared, or set GRADCAM_LIBPYTHON_DIR to the folder holding it"
    )


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gradcam-server"


def _is_prepared(path: Path) -> bool:
    return (
        (path / _MARKER).is_file()
        and (path / "bin" / "tritonserver").is_file()
        and (path / "backends" / "python" / STUB_NAME).is_file()
    )


def prepare_server_dir(
    dist: TritonDistribution | None = None, cache_root: Path | None = None
) -> Path:
    """Return a ready-to-run copy of the bundled server, preparing it on first use.

    The copy lives in `<cache_root>/triton-<version>-py<X.Y>` (default cache root:
    `$XDG_CACHE_HOME/gradcam-server`, falling back to the temp folder if that is not writable).
    """
    dist = dist or find_triton_distribution()
    python_version = _python_version()
    stub = dist.stub_path(python_version)
    if not stub.is_file():
        available = sorted(p.name for p in stub.parent.parent.glob("*") if p.is_dir())
        raise LauncherError(
            f"nvidia-pytriton {dist.version} has no python backend stub for Python "
            f"{python_version} ({stub} is missing; available: {', '.join(available) or 'none'})"
        )
    roots = [cache_root] if cache_root else [_cache_root(), Path(tempfile.gettempdir())]
    last_error: OSError | None = None
    for root in roots:
        try:
            return _prepare_in(root, dist, stub, python_version)
        except OSError as error:
            last_error = error
    raise LauncherError(f"cannot prepare the Triton server folder: {last_error}")


def _prepare_in(root: Path, dist: TritonDistribution, stub: Path, python_version: str) -> Path:
    final = root / f"triton-{dist.version}-py{python_version}"
    if _is_prepared(final):
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=root))
    try:
        shutil.copytree(
            dist.server_dir,
            tmp,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("python_backend_stubs", STUB_NAME, "__pycache__"),
        )
        shutil.copy2(stub, tmp / "backends" / "python" / STUB_NAME)
        marker = {"source": str(dist.server_dir), "version": dist.version, "python": python_version}
        (tmp / _MARKER).write_text(json.dumps(marker))
        tmp.chmod(0o755)
        try:
            os.rename(tmp, final)
        except OSError as error:
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            if _is_prepared(final):  # another process won the race: use its copy
                return final
            stale = final.with_name(f".{final.name}.stale-{os.getpid()}-{time.monotonic_ns()}")
            os.rename(final, stale)  # a broken leftover: move it aside, then retry once
            shutil.rmtree(stale, ignore_errors=True)
            os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
