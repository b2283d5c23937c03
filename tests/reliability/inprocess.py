"""An in-process syncd for property-based tests: the real engine, store, HTTP clients and fakes, with the
clock injected and crashes simulated by an exception thrown from a named step (a crash loses whatever was
not committed, exactly like `kill -9`; the next cycle recovers in-flight ops). Faster than subprocesses, so
Hypothesis can run many examples."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

from syncd import compose, config
from syncd.engine import Cycle
from syncd.hooks import Hooks
from syncd.models import CycleReport
from syncd.runtime import Runtime
from syncd.sandbox.asana import FakeAsana
from syncd.sandbox.hubspot import FakeHubSpot
from syncd.store import open_store

from conftest import ASANA_TOKEN, HUBSPOT_TOKEN, config_text


class Crash(BaseException):
    """Thrown from a step hook: unwinds like a dying process (no `except Exception` catches it)."""


class World:
    def __init__(self, **sections: object) -> None:
        self._saved_env = {k: os.environ.get(k) for k in ("HUBSPOT_TOKEN", "ASANA_TOKEN")}
        os.environ["HUBSPOT_TOKEN"], os.environ["ASANA_TOKEN"] = HUBSPOT_TOKEN, ASANA_TOKEN  # restored by close()
        self.hubspot = FakeHubSpot(token=HUBSPOT_TOKEN).start()
        self.asana = FakeAsana(token=ASANA_TOKEN).start()
        self.dir = Path(tempfile.mkdtemp(prefix="syncd-world-"))
        path = self.dir / "config.toml"
        path.write_text(config_text(self.hubspot, self.asana, **sections))
        self.cfg = config.load(path)
        self.now = self.hubspot.now()
        self.crash_at: str | None = None
        self.rt = self._runtime()

    @property
    def store(self):  # type: ignore[no-untyped-def]
        return self.rt.store

    def _runtime(self) -> Runtime:
        def step(name: str) -> None:
            if name == self.crash_at:
                raise Crash(name)

        rt = compose.wire(self.cfg).runtime(self.cfg, open_store(self.cfg.state_path), Hooks(step=step))
        return dataclasses.replace(rt, clock=lambda: self.now)

    def cycle(self, crash_at: str | None = None) -> CycleReport | None:
        self.crash_at = crash_at
        try:
            return Cycle(self.rt).run()
        except Crash:
            self.restart()
            return None

    def restart(self) -> None:
        """A new process: fresh clients and breaker, the same database."""
        self.rt.store.close()
        self.rt = self._runtime()

    def tick(self, seconds: float) -> None:
        self.now += seconds

    def close(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self.rt.store.close()
        self.hubspot.stop()
        self.asana.stop()
