"""The read models (see docs/architecture.md).

`setup.py` compiles some of these modules with Cython. Python imports a compiled module before
its source, so in a checkout (its `setup.py` beside the package) a compiled module older than
its source would run the old code: importing the package refuses it. `make` builds them again
first; by hand: `.venv/bin/python setup.py build_ext --inplace`.
"""

from __future__ import annotations

from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

SUFFIXES = tuple(EXTENSION_SUFFIXES)  # the file endings of compiled modules here

def stale_compiled(package: Path) -> list[str]:
    """The compiled modules in `package` older than their source (only in a checkout)."""
    if not (package.parent / "setup.py").exists():
        return []  # installed: the wheel's files, written in any order
    stale = []
    for built in package.iterdir():
        if built.name.endswith(SUFFIXES):
            source = built.with_name(built.name.split(".", 1)[0] + ".py")
            if source.exists() and source.stat().st_mtime > built.stat().st_mtime:
                stale.append(source.name)
    return sorted(stale)


if _stale := stale_compiled(Path(__file__).parent):
    raise ImportError(
        f"projections: the compiled module of {', '.join(_stale)} is older than its source;"
        " build it again: .venv/bin/python setup.py build_ext --inplace (or run make)")


def compiled() -> list[str]:
    """The modules of this package imported from compiled files (`portal bench` reports them:
    its numbers depend on it)."""
    import sys

    return sorted(name for name, module in list(sys.modules.items())
                  if name.startswith(__name__ + ".")
                  and str(getattr(module, "__file__", "") or "").endswith(SUFFIXES))
