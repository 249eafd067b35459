"""numba's caches of the package are dropped when the compiled sources change (jitcache)."""

from __future__ import annotations

import os
from pathlib import Path

from parsgd import jitcache


def _package(tmp_path: Path) -> tuple[Path, Path, list[Path]]:
    package = tmp_path / "pkg"
    (package / "__pycache__").mkdir(parents=True)
    (package / "kernel.py").write_text("from numba import njit\n")
    (package / "cli.py").write_text("import argparse\n")
    names = ("kernel.f-1.py311.nbi", "kernel.f-1.py311.1.nbc")
    caches = [package / "__pycache__" / name for name in names]
    return package, package / "__pycache__" / "record.json", caches


def _fill(caches: list[Path]) -> None:
    for path in caches:
        path.write_bytes(b"compiled")


def test_caches_follow_the_compiled_sources(tmp_path: Path) -> None:
    package, record, caches = _package(tmp_path)
    _fill(caches)
    # Nothing recorded: caches of unknown provenance may be stale, so they go.
    assert jitcache.refresh(package, record) and not any(p.exists() for p in caches)
    _fill(caches)
    assert not jitcache.refresh(package, record) and all(p.exists() for p in caches)
    # A new stamp with the same content (a checkout, a touch) keeps them.
    os.utime(package / "kernel.py", ns=(1, 1))
    assert not jitcache.refresh(package, record) and all(p.exists() for p in caches)
    # An edit to a file numba does not compile keeps them too.
    (package / "cli.py").write_text("import argparse  # edited\n")
    assert not jitcache.refresh(package, record) and all(p.exists() for p in caches)
    # An edit to compiled code drops them.
    (package / "kernel.py").write_text("from numba import njit  # edited\n")
    assert jitcache.refresh(package, record) and not any(p.exists() for p in caches)


def test_an_unwritable_package_is_left_alone(tmp_path: Path) -> None:
    package, _, caches = _package(tmp_path)
    _fill(caches)
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert not jitcache.refresh(package, blocked / "record.json")  # its directory cannot exist
    assert all(p.exists() for p in caches)
