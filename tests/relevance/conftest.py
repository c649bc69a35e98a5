"""Prints the relevance scores (hit@1, hit@3) at the end of the run, whatever the outcome."""

from __future__ import annotations

from typing import Any

import pytest

SCORES: dict[str, Any] = {}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SCORES:
        terminalreporter.section("search relevance")
        terminalreporter.write_line(SCORES["summary"])
        for line in SCORES.get("misses", []):
            terminalreporter.write_line(line)


@pytest.fixture
def relevance_scores() -> dict[str, Any]:
    return SCORES
