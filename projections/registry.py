"""The projections the runner feeds, in one list (add a new read model here)."""

from __future__ import annotations

from projections.base import Projection
from projections.catalogue import CatalogueProjection
from projections.feed import FeedProjection
from projections.outbox import OutboxProjection
from projections.stats import StatsProjection
from projections.tracker import TrackerProjection


def public_projections(prefix: str = "") -> list[Projection]:
    return [CatalogueProjection(prefix), TrackerProjection(prefix), FeedProjection(prefix),
            StatsProjection(prefix), OutboxProjection(prefix)]
