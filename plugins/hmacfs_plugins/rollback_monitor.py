"""The built-in ``rollback_monitor``: send every transfer to the baseline pipeline
for a while when adaptive transfers fail clearly more often than baseline ones.

The rule, with the ``[plugins.rollback_monitor]`` settings in brackets: over the
last [window] outcomes of each arm, once each holds at least [min_samples], the
monitor trips when both

- the adaptive error rate exceeds the baseline's times [error_rate_factor], and
- a one-sided two-proportion z-test rejects "adaptive rate <= baseline rate times
  the factor" at [confidence].

The first condition alone is the rule of the adaptive I/O design guide; on its own
it trips on noise: with 50 transfers per arm and a 4% baseline, one extra failed
adaptive upload is already "more than 10% worse". The test asks for the gap to be
larger than chance explains at that sample size.

The z-test uses the normal approximation with the Agresti-Caffo adjustment (one
error and one success added to each arm). Without it an arm with no errors, the
usual state of a healthy server, would have no variance at all, and the test
would trip on three failures against none.

A monitor tests again and again, and a test repeated often enough on healthy
arms trips by chance: checked after every outcome at 95%, about half of all
healthy runs of 5000 outcomes tripped in simulation. So the rule is checked once
per [min_samples] new adaptive outcomes, and [confidence] is spread over the
``ceil(window / min_samples)`` checks one window of adaptive outcomes sees
(Bonferroni): a healthy adaptive arm trips within one window's worth of traffic
with a chance of at most ``1 - confidence``. With the defaults each check needs
z > 2.58; a 3x error rate at a 5% baseline trips after a few hundred outcomes.

An error is any transfer that did not succeed, whatever the cause: both arms see
the same clients cut connections, so only a difference counts. The core reports
only transfers that got past authorization, so refused requests never count.

Once tripped, ``hmacfs_choose_arm`` answers ``"baseline"`` for [rollback_period]
(or until a configuration reload or an admin reset), then the windows are
cleared and both arms start counting again. A false trip
costs that period of baseline performance, never a failed transfer.
"""

from __future__ import annotations

import difflib
import math
from collections import deque
from collections.abc import Mapping
from statistics import NormalDist
from typing import Any

from attrs import define, field, frozen
from twisted.logger import Logger

from hmacfs_core import Outcome, Transfer, hookimpl
from hmacfs_core.transfer import Arm
from hmacfs_core.units import format_duration, parse_duration

ARMS: tuple[Arm, ...] = ("baseline", "adaptive")


@frozen
class RollbackSettings:
    """The ``[plugins.rollback_monitor]`` table.

    :ivar error_rate_factor: how many times the baseline's error rate the adaptive
        one may reach before it counts as harm; at least 1.
    :ivar min_samples: outcomes each arm's window needs before any verdict.
    :ivar window: the last this many outcomes of each arm are compared, so that
        old history does not hide a new problem.
    :ivar confidence: how sure the monitor must be that the adaptive rate exceeds
        the baseline's times the factor, between 0.5 and 1 (exclusive): a healthy
        adaptive arm passes a window of outcomes without a false trip with at
        least this chance.
    :ivar rollback_period: seconds every transfer stays on the baseline after a
        trip.
    """

    error_rate_factor: float = 1.1
    min_samples: int = 50
    window: int = 500
    confidence: float = 0.95
    rollback_period: float = 30 * 60.0

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> RollbackSettings:
        """Read and check the settings as parsed from TOML.

        :raises ValueError: naming the key, for an unknown key, a wrong type or a
            value out of range.
        """
        known = [attribute.name for attribute in cls.__attrs_attrs__]
        for key in table:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(
                    f"unknown setting {key!r}{hint}; known: {', '.join(known)}"
                )

        defaults = cls()
        factor = _number(table, "error_rate_factor", defaults.error_rate_factor)
        min_samples = _integer(table, "min_samples", defaults.min_samples)
        window = _integer(table, "window", defaults.window)
        confidence = _number(table, "confidence", defaults.confidence)
        period = _duration(table, "rollback_period", defaults.rollback_period)

        if not 1.0 <= factor <= 100.0:
            raise ValueError(
                f"error_rate_factor must be between 1 and 100, got {factor}"
            )
        if min_samples < 1:
            raise ValueError(f"min_samples must be at least 1, got {min_samples}")
        if window < min_samples:
            raise ValueError(
                f"window ({window}) must be at least min_samples ({min_samples}): "
                "a smaller window never holds enough outcomes to decide"
            )
        if not 0.5 < confidence < 1.0:
            raise ValueError(
                f"confidence must be between 0.5 and 1 (exclusive), got {confidence}"
            )
        if period <= 0:
            raise ValueError("rollback_period must be longer than 0s")

        return cls(factor, min_samples, window, confidence, period)

    @property
    def checks_per_window(self) -> int:
        """How many times the rule is checked while one window of adaptive
        outcomes passes (once per ``min_samples`` of them)."""
        return math.ceil(self.window / self.min_samples)

    @property
    def critical_z(self) -> float:
        """The z-score one check must exceed: ``confidence`` spread over the
        checks of a window."""
        return NormalDist().inv_cdf(1 - (1 - self.confidence) / self.checks_per_window)


@frozen
class RollbackState:
    """A snapshot of the monitor, for tests and an admin endpoint.

    :ivar tripped: transfers are being sent to the baseline.
    :ivar until: the reactor time the rollback ends, when tripped.
    :ivar rates: each arm's error rate over its window (0.0 when empty).
    :ivar counts: how many outcomes each arm's window holds.
    """

    tripped: bool
    until: float | None
    rates: Mapping[str, float]
    counts: Mapping[str, int]


def excess_z_score(
    adaptive_errors: int,
    adaptive_count: int,
    baseline_errors: int,
    baseline_count: int,
    factor: float,
) -> float:
    """How many standard errors the adaptive error rate lies above the baseline's
    times ``factor`` (negative when below).

    Each rate is Agresti-Caffo adjusted, ``(errors + 1) / (count + 2)``, so that an
    arm without errors still has a variance.
    """
    adaptive = (adaptive_errors + 1) / (adaptive_count + 2)
    baseline = (baseline_errors + 1) / (baseline_count + 2)
    variance = adaptive * (1 - adaptive) / (adaptive_count + 2) + factor**2 * (
        baseline * (1 - baseline) / (baseline_count + 2)
    )
    return (adaptive - factor * baseline) / math.sqrt(variance)


@define
class RollbackMonitor:
    """Watch both arms' outcomes and veto the adaptive arm while it does harm.

    The rule is in the module's documentation: enough outcomes in both windows,
    an adaptive error rate above the baseline's times ``error_rate_factor``, and a
    one-sided z-test that says so at ``confidence``, checked once per
    ``min_samples`` adaptive outcomes.
    """

    log: Logger = field(
        factory=lambda: Logger(namespace="hmacfs.plugins.rollback_monitor")
    )
    _settings: RollbackSettings = field(factory=RollbackSettings)
    _clock: Any = None
    _errors: dict[str, deque[bool]] = field(
        factory=lambda: {arm: deque(maxlen=RollbackSettings().window) for arm in ARMS},
        repr=False,
    )
    _unchecked: int = 0
    _tripped_at: float | None = None
    _metrics: Any = None

    @hookimpl
    def hmacfs_configure(self, app: Any, settings: Mapping[str, Any]) -> None:
        """Read the settings and the app's clock; keep the windows on reload.

        A reload ends a running rollback: it is one of the two ways an operator
        re-enables the adaptive arm early (the admin reset is the other).

        :raises ValueError: for a bad ``[plugins.rollback_monitor]`` setting.
        """
        reloading = self._clock is not None
        self._settings = RollbackSettings.from_table(settings)
        self._clock = app.reactor
        self._metrics = getattr(app, "metrics", None)
        self._errors = {
            arm: deque(self._errors[arm], maxlen=self._settings.window) for arm in ARMS
        }
        if reloading and self._tripped_at is not None:
            # Reloading is how an operator says "I fixed it": adaptive may run
            # again, judged on fresh outcomes.
            self.reset()
            self.log.warn(
                "Rollback ended by a configuration reload",
                event="adaptive_rollback_ended",
            )

    @hookimpl(tryfirst=True)
    def hmacfs_choose_arm(self, transfer: Transfer) -> Arm | None:
        """``"baseline"`` while tripped, else no opinion.

        Runs first, so that another plugin's ``"adaptive"`` cannot override the
        veto; the core's rollout keys decide only when no plugin answers.
        """
        self._end_rollback_if_due()
        return "baseline" if self._tripped_at is not None else None

    @hookimpl
    def hmacfs_transfer_finished(self, transfer: Transfer, outcome: Outcome) -> None:
        """Count the outcome in its arm's window, and check for harm once per
        ``min_samples`` adaptive outcomes."""
        self._end_rollback_if_due()
        self._errors[transfer.arm].append(not outcome.succeeded)
        if self._tripped_at is not None:
            return

        if transfer.arm == "adaptive":
            self._unchecked += 1
        adaptive, baseline = self._errors["adaptive"], self._errors["baseline"]
        minimum = self._settings.min_samples
        if self._unchecked < minimum or min(len(adaptive), len(baseline)) < minimum:
            return
        self._unchecked = 0
        if not self._harmful(
            sum(adaptive), len(adaptive), sum(baseline), len(baseline)
        ):
            return

        self._tripped_at = self._clock.seconds()
        if self._metrics is not None:
            self._metrics.rollbacks.inc()
        rates = self._rates()
        self.log.warn(
            "Adaptive transfers fail more often than baseline ones "
            "({adaptive_rate:.2%} of {adaptive_count} against {baseline_rate:.2%} "
            "of {baseline_count}): every transfer goes to the baseline for {period}",
            event="adaptive_rollback",
            adaptive_rate=rates["adaptive"],
            adaptive_count=len(adaptive),
            baseline_rate=rates["baseline"],
            baseline_count=len(baseline),
            period=format_duration(self._settings.rollback_period),
        )

    @property
    def state(self) -> RollbackState:
        """What the monitor sees and decided, as of now (a rollback whose period
        is over ends on reading it)."""
        self._end_rollback_if_due()
        until = (
            None
            if self._tripped_at is None
            else self._tripped_at + self._settings.rollback_period
        )
        return RollbackState(
            tripped=self._tripped_at is not None,
            until=until,
            rates=self._rates(),
            counts={arm: len(window) for arm, window in self._errors.items()},
        )

    def reset(self) -> None:
        """Forget every outcome and end a rollback now (for an operator who fixed
        the cause and does not want to wait out the period)."""
        self._tripped_at = None
        self._unchecked = 0
        for window in self._errors.values():
            window.clear()

    def _harmful(
        self,
        adaptive_errors: int,
        adaptive_count: int,
        baseline_errors: int,
        baseline_count: int,
    ) -> bool:
        factor = self._settings.error_rate_factor
        if (
            adaptive_errors / adaptive_count
            <= baseline_errors / baseline_count * factor
        ):
            return False

        z = excess_z_score(
            adaptive_errors, adaptive_count, baseline_errors, baseline_count, factor
        )
        return z > self._settings.critical_z

    def _rates(self) -> dict[str, float]:
        return {
            arm: sum(window) / len(window) if window else 0.0
            for arm, window in self._errors.items()
        }

    def _end_rollback_if_due(self) -> None:
        if self._tripped_at is None:
            return
        if self._clock.seconds() < self._tripped_at + self._settings.rollback_period:
            return

        self.reset()
        self.log.info(
            "Rollback period over: transfers may take the adaptive pipeline again",
            event="adaptive_rollback_ended",
        )


def _number(table: Mapping[str, Any], key: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{key} must be finite, got {value!r}")
    return float(value)


def _integer(table: Mapping[str, Any], key: str, default: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key} must be a whole number, got {value!r}")
    return value


def _duration(table: Mapping[str, Any], key: str, default: float) -> float:
    try:
        return parse_duration(table.get(key, default))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{key}: {error}") from None
