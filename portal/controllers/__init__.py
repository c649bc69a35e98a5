"""Page and API controllers, one module per area; each module lists its handlers in ROUTES."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any


def discover_routes() -> list[Any]:
    """Every ROUTES list of the modules in this package, in module-name order."""
    routes: list[Any] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        routes.extend(getattr(module, "ROUTES", []))
    return routes
