"""The health score of the whole system, 0 to 100, from five dimensions of its sources.

Pure logic: `va_signals.db.health` reads the inputs. It fails closed: with nothing to measure
(no sources, no runs, no breakers, no latency baseline) the score is 0, not 100.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from va_signals.catalog.models import Source
from va_signals.checks.freshness import assess_freshness, assess_presence

FRESHNESS = "freshness"
ERROR_RATE = "error_rate"
BREAKERS = "breakers"
COVERAGE = "coverage"
LATENCY = "latency"
DIMENSIONS = (FRESHNESS, ERROR_RATE, BREAKERS, COVERAGE, LATENCY)

# The finished runs per source that make up its error rate.
RECENT_RUNS = 10
# A failing critical source costs this share of a dimension, any other source half of it.
CRITICAL_PENALTY = 0.5
# Latency up to this multiple of a service's baseline is normal variation.
LATENCY_TOLERANCE = 2.0
# Fewer baseline runs than this give no baseline to compare against.
MIN_BASELINE_RUNS = 3

_BREAKER_FACTOR = {"CLOSED": 0.0, "HALF_OPEN": 0.5, "OPEN": 1.0}


@dataclass(frozen=True)
class HealthWeights:
    """How much each dimension counts; the defaults are 30/25/20/15/10."""

    freshness: float = 30.0
    error_rate: float = 25.0
    breakers: float = 20.0
    coverage: float = 15.0
    latency: float = 10.0

    def __post_init__(self) -> None:
        values = asdict(self)
        negative = [name for name, value in values.items() if value < 0]
        if negative:
            raise ValueError(f"health weights must not be negative: {', '.join(negative)}")
        if sum(values.values()) <= 0:
            raise ValueError("health weights must not all be zero")


@dataclass(frozen=True)
class SourceActivity:
    """What the ledger says about one catalog source."""

    source: Source
    last_good_run_at: datetime | None
    last_new_documents_at: datetime | None
    # Statuses of the most recent finished runs, newest first.
    recent_statuses: tuple[str, ...]
    latest_truncated: bool
    has_documents: bool


@dataclass(frozen=True)
class ServiceLatency:
    """Per-run median request latencies of one service: its latest day and the month before."""

    service: str
    recent_ms: tuple[float, ...]
    baseline_ms: tuple[float, ...]


@dataclass(frozen=True)
class HealthInputs:
    """Everything the score is computed from, read at `now`."""

    now: datetime
    sources: tuple[SourceActivity, ...]
    # Finished runs in the ledger; only 0 (none at all) matters, and the reader stops at 1.
    runs_on_record: int
    # Service -> CLOSED/OPEN/HALF_OPEN; None when the breaker table cannot be read.
    breakers: Mapping[str, str] | None
    breakers_reason: str = ""
    latencies: tuple[ServiceLatency, ...] = ()
    runs_reason: str = ""


@dataclass(frozen=True)
class Dimension:
    """One dimension's score (0..1), or why it could not be measured."""

    name: str
    score: float
    configured: bool
    reason: str
    # What cost points: source or service -> the factor it multiplied the score by.
    penalties: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class HealthReport:
    """The score (0..100) and its dimensions; `configured` is False when it failed closed."""

    score: float
    configured: bool
    reasons: tuple[str, ...]
    dimensions: tuple[Dimension, ...]
    weights: HealthWeights
    evaluated_at: datetime

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form (the CLI's --json, the asset's metadata)."""
        return {
            "score": self.score,
            "configured": self.configured,
            "reason": "; ".join(self.reasons),
            "evaluated_at": self.evaluated_at.isoformat(),
            "weights": asdict(self.weights),
            "dimensions": {
                dimension.name: {
                    "score": round(dimension.score * 100, 2),
                    "configured": dimension.configured,
                    "reason": dimension.reason,
                    "penalties": dimension.penalties,
                }
                for dimension in self.dimensions
            },
        }


def compute_health(inputs: HealthInputs, weights: HealthWeights | None = None) -> HealthReport:
    """Weighted sum of the dimensions, each a product of per-source (or per-service) factors.

    Multiplying factors makes penalties compound: two failing sources cost more than twice
    what one does not, but always more than one. Any dimension that cannot be measured makes
    the whole score 0 with `configured` False: a score that cannot see part of the system
    must not vouch for it.
    """
    weights = weights or HealthWeights()
    dimensions = (
        _freshness(inputs),
        _error_rate(inputs),
        _breakers(inputs),
        _coverage(inputs),
        _latency(inputs),
    )
    reasons = tuple(f"{d.name}: {d.reason}" for d in dimensions if not d.configured)
    weight_of = asdict(weights)
    total = sum(weight_of.values())
    weighted = sum(weight_of[d.name] * d.score for d in dimensions) / total
    score = 0.0 if reasons else round(100 * weighted, 2)
    return HealthReport(score, not reasons, reasons, dimensions, weights, inputs.now)


def _penalty(source: Source) -> float:
    return CRITICAL_PENALTY if source.critical else CRITICAL_PENALTY / 2


def _product(name: str, factors: Mapping[str, float], reason: str) -> Dimension:
    penalties = {key: round(value, 4) for key, value in sorted(factors.items()) if value < 1}
    score = math.prod(factors.values()) if factors else 1.0
    return Dimension(name, score, True, reason, penalties)


def _unconfigured(name: str, reason: str) -> Dimension:
    return Dimension(name, 0.0, False, reason)


def _no_sources_or_runs(name: str, inputs: HealthInputs) -> Dimension | None:
    if not inputs.sources:
        return _unconfigured(name, "no enabled sources in the catalog: nothing is expected")
    if inputs.runs_on_record == 0:
        return _unconfigured(name, inputs.runs_reason or "no source runs on record")
    return None


def _freshness(inputs: HealthInputs) -> Dimension:
    if (missing := _no_sources_or_runs(FRESHNESS, inputs)) is not None:
        return missing
    factors = {}
    stale = 0
    for activity in inputs.sources:
        staleness = assess_freshness(activity.source, activity.last_good_run_at, inputs.now)
        stale += staleness.stale
        factors[activity.source.id] = 1 - _penalty(activity.source) if staleness.stale else 1.0
    return _product(FRESHNESS, factors, f"{stale} of {len(factors)} sources past their SLA")


def _error_rate(inputs: HealthInputs) -> Dimension:
    if (missing := _no_sources_or_runs(ERROR_RATE, inputs)) is not None:
        return missing
    factors = {}
    for activity in inputs.sources:
        statuses = activity.recent_statuses[:RECENT_RUNS]
        # A source that never ran has shown no success: it counts as always failing.
        rate = statuses.count("ERROR") / len(statuses) if statuses else 1.0
        factors[activity.source.id] = 1 - _penalty(activity.source) * rate
    failing = sum(1 for factor in factors.values() if factor < 1)
    return _product(
        ERROR_RATE, factors, f"{failing} of {len(factors)} sources failed in their last runs"
    )


def _breakers(inputs: HealthInputs) -> Dimension:
    if inputs.breakers is None:
        return _unconfigured(BREAKERS, inputs.breakers_reason or "breaker state unavailable")
    if not inputs.breakers:
        return _unconfigured(BREAKERS, "no breaker has recorded a call: breakers not in use")
    services: dict[str, float] = {}
    for activity in inputs.sources:
        service = activity.source.service
        services[service] = max(services.get(service, 0.0), _penalty(activity.source))
    factors = {}
    for service, penalty in services.items():
        # A service without a row has never tripped: its breaker is CLOSED.
        state = inputs.breakers.get(service, "CLOSED")
        factors[service] = 1 - penalty * _BREAKER_FACTOR.get(state, 1.0)
    not_closed = sorted(s for s in services if inputs.breakers.get(s, "CLOSED") != "CLOSED")
    reason = f"not closed: {', '.join(not_closed)}" if not_closed else "every breaker closed"
    return _product(BREAKERS, factors, reason)


def _coverage(inputs: HealthInputs) -> Dimension:
    if (missing := _no_sources_or_runs(COVERAGE, inputs)) is not None:
        return missing
    factors = {}
    for activity in inputs.sources:
        penalty = _penalty(activity.source)
        factor = 1.0
        if not activity.has_documents:
            factor *= 1 - penalty
        presence = assess_presence(activity.source, activity.last_new_documents_at, inputs.now)
        if presence is not None and presence.stale:
            factor *= 1 - penalty / 2
        if activity.latest_truncated:
            # Stopped by its page budget: the rest comes next run, but is missing now.
            factor *= 1 - penalty / 4
        factors[activity.source.id] = factor
    covered = sum(1 for activity in inputs.sources if activity.has_documents)
    return _product(COVERAGE, factors, f"{covered} of {len(factors)} sources hold documents")


def _latency(inputs: HealthInputs) -> Dimension:
    if (missing := _no_sources_or_runs(LATENCY, inputs)) is not None:
        return missing
    factors = {}
    for latency in inputs.latencies:
        if len(latency.baseline_ms) < MIN_BASELINE_RUNS or not latency.recent_ms:
            continue
        baseline = statistics.median(latency.baseline_ms)
        ratio = p95(latency.recent_ms) / baseline if baseline > 0 else 1.0
        # Within tolerance costs nothing; beyond it the factor falls as baseline/latency does.
        factors[latency.service] = min(1.0, LATENCY_TOLERANCE / ratio) if ratio > 0 else 1.0
    if not factors:
        return _unconfigured(
            LATENCY,
            f"no service has a latency baseline yet ({MIN_BASELINE_RUNS} runs before its last day)",
        )
    slow = sorted(service for service, factor in factors.items() if factor < 1)
    reason = f"slow: {', '.join(slow)}" if slow else f"{len(factors)} services within baseline"
    return _product(LATENCY, factors, reason)


def p95(values: Sequence[float]) -> float:
    """The 95th percentile by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    position = 0.95 * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
