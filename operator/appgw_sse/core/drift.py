"""Stop fighting over a value someone keeps reverting: every PUT cuts live streams."""

from collections.abc import Mapping
from dataclasses import dataclass, field

CONFLICT_THRESHOLD = 3
CONFLICT_WINDOW_SECONDS = 3600.0


@dataclass
class DriftTracker:
    """Counts corrections per owned field; after CONFLICT_THRESHOLD within the window, the field
    is in conflict until one of the routes that need it changes (a new generation)."""

    corrections: dict[str, list[float]] = field(default_factory=dict)
    conflicts: dict[str, dict[str, int]] = field(default_factory=dict)  # field -> generations

    def in_conflict(self, field_path: str, generations: Mapping[str, int]) -> bool:
        frozen = self.conflicts.get(field_path)
        if frozen is None:
            return False
        if dict(generations) != frozen:
            del self.conflicts[field_path]  # the routes changed: try again
            self.corrections.pop(field_path, None)
            return False
        return True

    def record(self, field_path: str, generations: Mapping[str, int], now: float) -> bool:
        """Count one correction; True when this one reaches the conflict threshold."""
        recent = [
            t for t in self.corrections.get(field_path, []) if now - t < CONFLICT_WINDOW_SECONDS
        ]
        recent.append(now)
        self.corrections[field_path] = recent
        if len(recent) >= CONFLICT_THRESHOLD:
            self.conflicts[field_path] = dict(generations)
            return True
        return False
