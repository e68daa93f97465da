"""Groups source failures into incidents named after the upstream dependency that explains them.

Pure logic: the caller loads source runs, open incidents and breaker events, and stores what
`correlate` decides. Source ids and service names are compared whole, never as substrings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from va_signals.catalog.models import Catalog
from va_signals.resilience.errors import RequestRejected
from va_signals.sources.base import PagingLoopError, SourceShapeError

INFRASTRUCTURE_ROOT = "infrastructure"
RECOVERED_STATUSES = frozenset({"SUCCESS", "NO_DATA"})

# Failures the source's own request or parser caused: no upstream outage explains them, so
# they never join a service incident and always stand alone.
SOURCE_LEVEL_ERRORS = frozenset(
    {
        RequestRejected.__name__,
        SourceShapeError.__name__,
        PagingLoopError.__name__,
        "SourceConfigError",
        "AbandonedRun",
    }
)
# Rows recorded as ERROR that are no failure at all: another run of the source was already
# doing the work. They open no incident and do not count against the source.
NOT_FAILURES = frozenset({"SourceBusy"})


class Tier(StrEnum):
    """How wide an incident is, from our own side down to a single source."""

    INFRASTRUCTURE = "infrastructure"
    BREAKER_CASCADE = "breaker_cascade"
    SERVICE = "service"
    ISOLATED = "isolated"


class Severity(StrEnum):
    """PagerDuty's four severities."""

    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


def incident_severity(tier: Tier, touches_critical_source: bool) -> Severity:
    """Infrastructure or any critical source is critical; wider than one source is an error."""
    if tier is Tier.INFRASTRUCTURE or touches_critical_source:
        return Severity.CRITICAL
    if tier is Tier.ISOLATED:
        return Severity.WARNING
    return Severity.ERROR


@dataclass(frozen=True)
class CorrelationPolicy:
    """Tunables of the correlator."""

    # Failures further apart than this are separate events, not one outage.
    window: timedelta = timedelta(hours=1)
    # Infrastructure: at least this share of enabled sources, across unrelated services...
    infrastructure_fraction: float = 0.5
    # ...and never fewer than this many, so a small catalog does not call two failures an outage.
    infrastructure_floor: int = 3
    cascade_min_services: int = 2

    def __post_init__(self) -> None:
        if not 0 < self.infrastructure_fraction <= 1:
            raise ValueError(
                f"infrastructure_fraction must be in (0, 1], got {self.infrastructure_fraction}"
            )
        if self.infrastructure_floor < 2:
            raise ValueError(f"infrastructure_floor must be >= 2, got {self.infrastructure_floor}")
        if self.cascade_min_services < 2:
            raise ValueError(f"cascade_min_services must be >= 2, got {self.cascade_min_services}")

    def infrastructure_threshold(self, enabled_sources: int) -> int:
        """How many sources must fail together, across services, to blame our own side."""
        return max(
            self.infrastructure_floor, math.ceil(self.infrastructure_fraction * enabled_sources)
        )


class DependencyGraph:
    """Source -> service -> services it sits behind, from the catalog's enabled sources."""

    def __init__(self, catalog: Catalog) -> None:
        self._service_of = {source.id: source.service for source in catalog.enabled_sources}
        self._critical = {source.id for source in catalog.enabled_sources if source.critical}
        self._behind = {service.name: service.behind for service in catalog.services}
        self._upstreams: dict[str, tuple[str, ...]] = {}

    @property
    def enabled_source_count(self) -> int:
        return len(self._service_of)

    def service_of(self, source_id: str) -> str | None:
        """The service of an enabled source; None for a source disabled or gone from the catalog."""
        return self._service_of.get(source_id)

    def upstreams(self, service: str) -> tuple[str, ...]:
        """Every service `service` sits behind, transitively, nearest first."""
        cached = self._upstreams.get(service)
        if cached is not None:
            return cached
        found: list[str] = []
        frontier = list(self._behind.get(service, ()))
        while frontier:
            name = frontier.pop(0)
            if name in found or name == service:
                continue
            found.append(name)
            frontier.extend(self._behind.get(name, ()))
        self._upstreams[service] = tuple(found)
        return self._upstreams[service]

    def chain(self, source_id: str) -> tuple[str, ...]:
        """The source's service then everything behind it; empty for an unknown source."""
        service = self.service_of(source_id)
        return (service, *self.upstreams(service)) if service else ()

    def is_critical(self, source_id: str) -> bool:
        return source_id in self._critical

    def sources_of(self, services: Iterable[str]) -> tuple[str, ...]:
        """Enabled sources served by, or behind, any of `services`."""
        wanted = set(services)
        return tuple(
            sorted(source for source in self._service_of if wanted.intersection(self.chain(source)))
        )


@dataclass(frozen=True)
class SourceFailure:
    """One ERROR row of `source_runs`."""

    source_id: str
    source_run_id: int
    failed_at: datetime
    error_class: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class LatestRun:
    """The most recent finished run of a source."""

    source_id: str
    source_run_id: int
    status: str
    ended_at: datetime


@dataclass(frozen=True)
class OpenIncident:
    """An unresolved incident as stored: its sources are those still failing."""

    id: int
    tier: Tier
    root_cause: str
    services: frozenset[str]
    source_ids: frozenset[str]
    opened_at: datetime
    last_seen_at: datetime
    # An isolated incident caused by the source's own request or parser stays isolated.
    source_level: bool = False


@dataclass(frozen=True)
class BreakerOpening:
    """A breaker of `service` moved to OPEN at `at` (a `breaker_events` row)."""

    service: str
    at: datetime


@dataclass
class NewIncident:
    """An incident to open: who failed, the root cause, and what to tell the on-call."""

    tier: Tier
    root_cause: str
    services: tuple[str, ...]
    failures: list[SourceFailure]
    opened_at: datetime
    last_seen_at: datetime
    severity: Severity = Severity.ERROR
    summary: str = ""
    details: dict[str, object] = field(default_factory=dict)

    @property
    def source_ids(self) -> tuple[str, ...]:
        return tuple(sorted(failure.source_id for failure in self.failures))


@dataclass(frozen=True)
class Attachment:
    """A failure that joins (or refreshes its place in) an already open incident."""

    incident_id: int
    failure: SourceFailure


@dataclass(frozen=True)
class Recovery:
    """A source of an open incident whose latest run succeeded (or that left the catalog)."""

    incident_id: int
    source_id: str
    recovered_at: datetime


@dataclass(frozen=True)
class Promotion:
    """An isolated incident that a sibling source of its service joined: now a service one.

    Its dedup key stays, so the page already sent is the page for the wider incident.
    """

    incident_id: int
    root_cause: str
    services: tuple[str, ...]
    severity: Severity
    summary: str


@dataclass(frozen=True)
class Resolution:
    incident_id: int
    resolved_at: datetime


@dataclass
class Correlation:
    """Everything one pass of the correlator decided."""

    opened: list[NewIncident] = field(default_factory=list)
    attached: list[Attachment] = field(default_factory=list)
    recovered: list[Recovery] = field(default_factory=list)
    resolved: list[Resolution] = field(default_factory=list)
    promoted: list[Promotion] = field(default_factory=list)


def correlate(
    graph: DependencyGraph,
    policy: CorrelationPolicy,
    *,
    failures: Sequence[SourceFailure],
    latest: Mapping[str, LatestRun],
    open_incidents: Sequence[OpenIncident],
    breaker_openings: Sequence[BreakerOpening] = (),
    open_breakers: frozenset[str] = frozenset(),
    now: datetime,
) -> Correlation:
    """Decide which incidents open, grow, lose sources or resolve.

    `failures` are the ERROR rows not seen before; `latest` holds the latest finished run of
    every source named by them or by an open incident; `open_breakers` are services whose
    breaker is OPEN or HALF_OPEN right now.
    """
    result = Correlation()
    current = _current_failures(graph, failures, latest)
    staying = _recoveries(graph, open_incidents, latest, current, open_breakers, now, result)

    remaining = _attach(graph, policy, current, staying, result)
    cascades = _cascades(graph, policy, breaker_openings, staying, now)
    remaining = _join_new_cascades(graph, remaining, cascades)
    result.opened.extend(cascades)
    result.opened.extend(_group(graph, policy, remaining))
    for incident in result.opened:
        _describe(graph, incident)
    return result


def _current_failures(
    graph: DependencyGraph, failures: Sequence[SourceFailure], latest: Mapping[str, LatestRun]
) -> dict[str, SourceFailure]:
    # A failure followed by a newer run of the same source (either outcome) is history, and a
    # source no longer enabled in the catalog is nobody's incident.
    current: dict[str, SourceFailure] = {}
    for failure in failures:
        newest = latest.get(failure.source_id)
        if newest is None or newest.source_run_id != failure.source_run_id:
            continue
        if graph.service_of(failure.source_id) is None:
            continue
        current[failure.source_id] = failure
    return current


def _recoveries(
    graph: DependencyGraph,
    open_incidents: Sequence[OpenIncident],
    latest: Mapping[str, LatestRun],
    current: Mapping[str, SourceFailure],
    open_breakers: frozenset[str],
    now: datetime,
    result: Correlation,
) -> list[OpenIncident]:
    staying: list[OpenIncident] = []
    for incident in open_incidents:
        recovered: list[Recovery] = []
        for source_id in sorted(incident.source_ids):
            if source_id in current:
                continue
            newest = latest.get(source_id)
            if graph.service_of(source_id) is None:
                recovered.append(Recovery(incident.id, source_id, now))
            elif newest is not None and newest.status in RECOVERED_STATUSES:
                recovered.append(Recovery(incident.id, source_id, newest.ended_at))
        result.recovered.extend(recovered)
        still_failing = incident.source_ids - {recovery.source_id for recovery in recovered}
        breakers_open = incident.tier is Tier.BREAKER_CASCADE and bool(
            incident.services & open_breakers
        )
        if still_failing or breakers_open:
            staying.append(incident)
            continue
        moments = [recovery.recovered_at for recovery in recovered] or [now]
        resolved_at = max(max(moments), incident.opened_at)
        result.resolved.append(Resolution(incident.id, resolved_at))
    return staying


def _attach(
    graph: DependencyGraph,
    policy: CorrelationPolicy,
    current: Mapping[str, SourceFailure],
    staying: Sequence[OpenIncident],
    result: Correlation,
) -> list[SourceFailure]:
    remaining: list[SourceFailure] = []
    joined: dict[int, set[str]] = {}
    for _, failure in sorted(current.items()):
        target = _incident_for(graph, policy, failure, staying)
        if target is None:
            remaining.append(failure)
        else:
            result.attached.append(Attachment(target, failure))
            joined.setdefault(target, set()).add(failure.source_id)
    for incident in staying:
        sources = incident.source_ids | joined.get(incident.id, set())
        if incident.tier is Tier.ISOLATED and len(sources) > 1:
            result.promoted.append(_promotion(graph, incident, sources))
    return remaining


def _promotion(graph: DependencyGraph, incident: OpenIncident, sources: set[str]) -> Promotion:
    service = graph.service_of(incident.root_cause) or incident.root_cause
    listed = ", ".join(sorted(sources))
    return Promotion(
        incident_id=incident.id,
        root_cause=service,
        services=(service,),
        severity=incident_severity(
            Tier.SERVICE, any(graph.is_critical(source) for source in sources)
        ),
        summary=f"{service} down: {len(sources)} sources failing ({listed})",
    )


def _incident_for(
    graph: DependencyGraph,
    policy: CorrelationPolicy,
    failure: SourceFailure,
    staying: Sequence[OpenIncident],
) -> int | None:
    for incident in staying:
        if failure.source_id in incident.source_ids:
            return incident.id
    if failure.error_class in SOURCE_LEVEL_ERRORS:
        return None
    # The nearest dependency in the source's chain that an open incident blames wins.
    chain = graph.chain(failure.source_id)
    for dependency in chain:
        for incident in sorted(staying, key=lambda candidate: candidate.id):
            if incident.tier is Tier.ISOLATED:
                continue
            if dependency == incident.root_cause or dependency in incident.services:
                return incident.id
    # A sibling of an isolated failure, close in time: the service, not the source, is down.
    service = graph.service_of(failure.source_id)
    for incident in sorted(staying, key=lambda candidate: candidate.id):
        if (
            incident.tier is Tier.ISOLATED
            and not incident.source_level
            and graph.service_of(incident.root_cause) == service
            and abs(failure.failed_at - incident.last_seen_at) <= policy.window
        ):
            return incident.id
    for incident in staying:
        if (
            incident.tier is Tier.INFRASTRUCTURE
            and failure.failed_at - incident.last_seen_at <= policy.window
        ):
            return incident.id
    return None


def _cascades(
    graph: DependencyGraph,
    policy: CorrelationPolicy,
    openings: Sequence[BreakerOpening],
    staying: Sequence[OpenIncident],
    now: datetime,
) -> list[NewIncident]:
    covered: set[str] = set()
    for incident in staying:
        covered |= incident.services
    recent = [
        opening
        for opening in openings
        if now - opening.at <= policy.window and opening.service not in covered
    ]
    services = sorted({opening.service for opening in recent})
    if len(services) < policy.cascade_min_services:
        return []
    shared = _shared_upstream(graph, services)
    moments = [opening.at for opening in recent]
    return [
        NewIncident(
            tier=Tier.BREAKER_CASCADE,
            root_cause=shared or INFRASTRUCTURE_ROOT,
            services=tuple(sorted({*services, *([shared] if shared else [])})),
            failures=[],
            opened_at=min(moments),
            last_seen_at=max(moments),
        )
    ]


def _join_new_cascades(
    graph: DependencyGraph, failures: list[SourceFailure], cascades: Sequence[NewIncident]
) -> list[SourceFailure]:
    remaining: list[SourceFailure] = []
    for failure in failures:
        chain = set(graph.chain(failure.source_id))
        cascade = next(
            (
                incident
                for incident in cascades
                if failure.error_class not in SOURCE_LEVEL_ERRORS
                and chain.intersection(incident.services)
            ),
            None,
        )
        if cascade is None:
            remaining.append(failure)
            continue
        cascade.failures.append(failure)
        cascade.opened_at = min(cascade.opened_at, failure.failed_at)
        cascade.last_seen_at = max(cascade.last_seen_at, failure.failed_at)
    return remaining


def _group(
    graph: DependencyGraph, policy: CorrelationPolicy, failures: Sequence[SourceFailure]
) -> list[NewIncident]:
    incidents = [
        _incident(Tier.ISOLATED, failure.source_id, (), [failure])
        for failure in failures
        if failure.error_class in SOURCE_LEVEL_ERRORS
    ]
    upstream = [failure for failure in failures if failure.error_class not in SOURCE_LEVEL_ERRORS]
    threshold = policy.infrastructure_threshold(graph.enabled_source_count)
    for cluster in _clusters(upstream, policy.window):
        groups = _dependency_groups(graph, cluster)
        if len(cluster) >= threshold and len(groups) >= 2:
            services = sorted({service for members in groups.values() for service in members[0]})
            incidents.append(
                _incident(Tier.INFRASTRUCTURE, INFRASTRUCTURE_ROOT, tuple(services), cluster)
            )
            continue
        for root, (services, members) in sorted(groups.items()):
            if len(members) == 1:
                incidents.append(_incident(Tier.ISOLATED, members[0].source_id, (), members))
            else:
                incidents.append(_incident(Tier.SERVICE, root, tuple(sorted(services)), members))
    return incidents


def _clusters(failures: Sequence[SourceFailure], window: timedelta) -> list[list[SourceFailure]]:
    # Single linkage in time: a failure within `window` of the previous one joins its cluster.
    clusters: list[list[SourceFailure]] = []
    for failure in sorted(failures, key=lambda item: (item.failed_at, item.source_id)):
        if clusters and failure.failed_at - clusters[-1][-1].failed_at <= window:
            clusters[-1].append(failure)
        else:
            clusters.append([failure])
    return clusters


def _dependency_groups(
    graph: DependencyGraph, failures: Sequence[SourceFailure]
) -> dict[str, tuple[set[str], list[SourceFailure]]]:
    """Root -> (services explained by it, failures); merged while a dependency explains 2+."""
    groups: dict[str, tuple[set[str], list[SourceFailure]]] = {}
    for failure in failures:
        service = graph.service_of(failure.source_id) or failure.source_id
        services, members = groups.setdefault(service, ({service}, []))
        members.append(failure)

    while True:
        best: tuple[tuple[int, int, int, str], str, list[str]] | None = None
        candidates = {dep for root in groups for dep in graph.upstreams(root)}
        for dependency in candidates:
            members = [
                root for root in groups if root == dependency or dependency in graph.upstreams(root)
            ]
            if len(members) < 2:
                continue
            sources = sum(len(groups[root][1]) for root in members)
            # Most roots explained, then most sources, then the most specific dependency.
            rank = (len(members), sources, len(graph.upstreams(dependency)), dependency)
            if best is None or rank > best[0]:
                best = (rank, dependency, members)
        if best is None:
            return groups
        _, dependency, members = best
        merged_services: set[str] = {dependency}
        merged_failures: list[SourceFailure] = []
        for root in members:
            services, failures_of_root = groups.pop(root)
            merged_services |= services
            merged_failures.extend(failures_of_root)
        groups[dependency] = (merged_services, merged_failures)


def _shared_upstream(graph: DependencyGraph, services: Sequence[str]) -> str | None:
    """The nearest service every one of `services` is, or sits behind; None when there is none."""
    common: set[str] | None = None
    for service in services:
        reach = {service, *graph.upstreams(service)}
        common = reach if common is None else common & reach
    if not common:
        return None
    return max(sorted(common), key=lambda name: len(graph.upstreams(name)))


def _incident(
    tier: Tier, root: str, services: tuple[str, ...], failures: Sequence[SourceFailure]
) -> NewIncident:
    moments = [failure.failed_at for failure in failures]
    return NewIncident(
        tier=tier,
        root_cause=root,
        services=services,
        failures=list(failures),
        opened_at=min(moments),
        last_seen_at=max(moments),
    )


def _describe(graph: DependencyGraph, incident: NewIncident) -> None:
    sources = incident.source_ids
    affected = (
        sources
        if incident.tier is not Tier.BREAKER_CASCADE
        else (graph.sources_of(incident.services))
    )
    incident.severity = incident_severity(
        incident.tier, any(graph.is_critical(source) for source in affected)
    )
    listed = ", ".join(sources)
    if incident.tier is Tier.INFRASTRUCTURE:
        incident.summary = (
            f"infrastructure: {len(sources)} of {graph.enabled_source_count} sources failing "
            f"across {len(incident.services)} unrelated services ({listed})"
        )
    elif incident.tier is Tier.BREAKER_CASCADE:
        incident.summary = (
            f"breaker cascade: breakers opened together on {', '.join(incident.services)}; "
            f"root cause {incident.root_cause}"
        )
    elif incident.tier is Tier.SERVICE:
        incident.summary = f"{incident.root_cause} down: {len(sources)} sources failing ({listed})"
    else:
        failure = incident.failures[0]
        reason = f"{failure.error_class}: {failure.error_message}" if failure.error_class else ""
        incident.summary = f"{failure.source_id} failing" + (f": {reason}" if reason else "")
    incident.details = {
        "sources": list(sources),
        "services": list(incident.services),
        "error_classes": sorted({f.error_class for f in incident.failures if f.error_class}),
    }
    if incident.tier in (Tier.SERVICE, Tier.ISOLATED):
        service = (
            incident.root_cause
            if incident.tier is Tier.SERVICE
            else (graph.service_of(incident.root_cause) or "")
        )
        # The gateway is only blamed with evidence from 2+ services; name it as a suspect.
        suspects = graph.upstreams(service) if service else ()
        if suspects:
            incident.details["suspected_upstreams"] = list(suspects)
