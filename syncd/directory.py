"""What this process knows exists in Asana: per team, syncd's markers and the projects that carry them.

The ledger is a cache that can go back in time (a restored backup, a lost WAL, a second database), so no
project is created on its word alone: before the first create into a team, the process takes one complete
listing of that team, and afterwards adds every project it creates or finds. A process that holds the lock
(or lease) is the only one creating for its account, so the listing plus its own creates are the truth for
as long as it runs: a daemon lists each team once per start, not once per op.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from syncd.models import Project


class Directory:
    def __init__(self) -> None:
        self._teams: dict[str, dict[str, list[Project]]] = {}

    def knows(self, team: str) -> bool:
        return team in self._teams

    def load(self, team: str, by_marker: Mapping[str, list[Project]]) -> None:
        """A complete listing of `team`, taken now: it replaces what was known of that team."""
        self._teams[team] = {marker: list(projects) for marker, projects in by_marker.items()}

    def find(self, team: str, markers: Iterable[str]) -> list[Project]:
        """The projects carrying any of `markers`, oldest first (by marker order, then listing order)."""
        known = self._teams[team]
        found: dict[str, Project] = {}
        for marker in markers:
            for project in known.get(marker, ()):
                found.setdefault(project.gid, project)
        return list(found.values())

    def add(self, team: str, marker: str, project: Project) -> None:
        if team in self._teams:
            self._teams[team].setdefault(marker, []).append(project)
