"""The stop sequence: named steps run in order under one deadline.

Each step runs in its own daemon thread and is joined until the deadline: a step that overruns
is logged and skipped, never waited on, so the whole sequence is bounded by the deadline plus
a small constant. A step that raises is logged and the sequence goes on: a failure to flush
Sentry must not keep the log queue from draining. A failure of an `expected_errors` type (Redis
away, when the stop is because Redis went away) is one WARNING line; anything else is logged
with its traceback.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from mmserver.failures import caused_by

logger = logging.getLogger(__name__)


@dataclass
class StepResult:
    name: str
    outcome: str  # "done", "failed", "overran", "skipped"
    duration_s: float


@dataclass
class StopSequence:
    deadline: float  # time.monotonic()
    results: list[StepResult] = field(default_factory=list)
    expected_errors: tuple[type[BaseException], ...] = ()

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def run(self, name: str, step: Callable[[], object], *, min_time_s: float = 0.0) -> bool:
        """Run `step` with what is left of the deadline (at least `min_time_s`); True if it finished.

        min_time_s lets the last steps (the final flushes) still get a short chance after
        an earlier step used up the deadline.
        """
        budget = max(self.remaining(), min_time_s)
        started = time.monotonic()
        if budget <= 0:
            logger.warning("stop step %s skipped: shutdown deadline reached", name)
            self.results.append(StepResult(name, "skipped", 0.0))
            return False
        failure: list[BaseException] = []

        def target() -> None:
            try:
                step()
            except BaseException as error:  # reported below, in the stopping thread
                failure.append(error)

        thread = threading.Thread(target=target, name=f"stop-{name}", daemon=True)
        thread.start()
        thread.join(budget)
        duration = time.monotonic() - started
        if thread.is_alive():
            logger.error("stop step %s overran its %.1f s budget: skipped", name, budget)
            self.results.append(StepResult(name, "overran", duration))
            return False
        if failure:
            error = failure[0]
            if caused_by(error, self.expected_errors):
                logger.warning("stop step %s failed: %s: %s", name, type(error).__name__, error)
            else:
                logger.error("stop step %s failed: %r", name, error, exc_info=error)
            self.results.append(StepResult(name, "failed", duration))
            return False
        logger.debug("stop step %s done in %.3f s", name, duration)
        self.results.append(StepResult(name, "done", duration))
        return True
