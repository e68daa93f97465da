"""The correlator's rules on small dependency graphs: root cause, tiers, windows, resolution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from va_signals.resilience.correlation import (
    INFRASTRUCTURE_ROOT,
    BreakerOpening,
    CorrelationPolicy,
    DependencyGraph,
    LatestRun,
    OpenIncident,
    Severity,
    SourceFailure,
    Tier,
    correlate,
    incident_severity,
)
from va_signals_tests.incidents.catalogs import make_catalog, shipped_catalog, spread_catalog

T0 = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=10)
POLICY = CorrelationPolicy()

GATEWAY = make_catalog(
    {
        "api.data.gov": (),
        "api.congress.gov": ("api.data.gov",),
        "api.govinfo.gov": ("api.data.gov",),
        "www.ecfr.gov": (),
    },
    [
        ("congress_bills", "api.congress.gov"),
        ("congress_reports", "api.congress.gov"),
        ("congress_crs", "api.congress.gov"),
        ("govinfo_fr", "api.govinfo.gov"),
        ("govinfo_crec", "api.govinfo.gov"),
        ("ecfr_title38", "www.ecfr.gov"),
        ("ecfr_title5", "www.ecfr.gov"),
        ("ecfr_title10", "www.ecfr.gov"),
        ("ecfr_title20", "www.ecfr.gov"),
        ("ecfr_title26", "www.ecfr.gov"),
    ],
    critical=("congress_bills",),
)


def _failures(
    *source_ids: str, at: datetime = T0, error_class: str = "UpstreamUnavailable", first_id: int = 1
) -> list[SourceFailure]:
    return [
        SourceFailure(source_id, first_id + index, at + timedelta(seconds=index), error_class)
        for index, source_id in enumerate(source_ids)
    ]


def _latest(failures: list[SourceFailure]) -> dict[str, LatestRun]:
    return {
        f.source_id: LatestRun(f.source_id, f.source_run_id, "ERROR", f.failed_at) for f in failures
    }


def _run(graph: DependencyGraph, failures: list[SourceFailure], **kwargs):
    kwargs.setdefault("open_incidents", [])
    kwargs.setdefault("latest", _latest(failures))
    return correlate(graph, kwargs.pop("policy", POLICY), failures=failures, now=NOW, **kwargs)


def test_sources_of_one_service_make_one_incident_blaming_that_service() -> None:
    graph = DependencyGraph(GATEWAY)
    failures = _failures("congress_reports", "congress_crs", "congress_bills")

    result = _run(graph, failures)

    assert len(result.opened) == 1
    incident = result.opened[0]
    assert incident.tier is Tier.SERVICE
    assert incident.root_cause == "api.congress.gov"
    assert incident.source_ids == ("congress_bills", "congress_crs", "congress_reports")
    assert incident.services == ("api.congress.gov",)
    # One service failing is not evidence against the gateway: it is only named as a suspect.
    assert incident.details["suspected_upstreams"] == ["api.data.gov"]
    assert incident.severity is Severity.CRITICAL  # congress_bills is critical
    assert incident.opened_at == T0
    assert incident.last_seen_at == T0 + timedelta(seconds=2)
    assert incident.summary.startswith("api.congress.gov down: 3 sources failing")


def test_services_sharing_a_gateway_fail_together_the_gateway_is_the_root() -> None:
    graph = DependencyGraph(GATEWAY)
    failures = _failures("congress_reports", "congress_crs", "govinfo_fr", "govinfo_crec")

    result = _run(graph, failures)

    assert [(i.tier, i.root_cause) for i in result.opened] == [(Tier.SERVICE, "api.data.gov")]
    assert result.opened[0].services == ("api.congress.gov", "api.data.gov", "api.govinfo.gov")
    assert result.opened[0].severity is Severity.ERROR
    assert len(result.opened[0].failures) == 4


def test_a_single_failing_source_is_isolated_and_a_warning() -> None:
    graph = DependencyGraph(GATEWAY)

    result = _run(graph, _failures("govinfo_fr"))

    assert [(i.tier, i.root_cause, i.severity) for i in result.opened] == [
        (Tier.ISOLATED, "govinfo_fr", Severity.WARNING)
    ]


@pytest.mark.parametrize(
    ("enabled", "failing", "threshold", "expected_tiers"),
    [
        # 4 sources: the floor (3) wins over half of 4 (2).
        (4, 3, 3, [Tier.INFRASTRUCTURE]),
        (10, 4, 5, [Tier.ISOLATED] * 4),
        (10, 5, 5, [Tier.INFRASTRUCTURE]),
        # 40 sources: five unrelated failures are five incidents, not an outage of ours.
        (40, 5, 20, [Tier.ISOLATED] * 5),
        (40, 20, 20, [Tier.INFRASTRUCTURE]),
    ],
)
def test_infrastructure_threshold_scales_with_enabled_sources(
    enabled: int, failing: int, threshold: int, expected_tiers: list[Tier]
) -> None:
    graph = DependencyGraph(spread_catalog(enabled))
    failures = _failures(*[f"src_{index}" for index in range(failing)])

    result = _run(graph, failures)

    assert POLICY.infrastructure_threshold(graph.enabled_source_count) == threshold
    assert [incident.tier for incident in result.opened] == expected_tiers
    if expected_tiers == [Tier.INFRASTRUCTURE]:
        assert result.opened[0].root_cause == INFRASTRUCTURE_ROOT
        assert result.opened[0].severity is Severity.CRITICAL
        assert len(result.opened[0].source_ids) == failing


def test_many_sources_of_one_service_are_a_service_incident_not_infrastructure() -> None:
    graph = DependencyGraph(GATEWAY)
    ecfr = ["ecfr_title38", "ecfr_title5", "ecfr_title10", "ecfr_title20", "ecfr_title26"]

    result = _run(graph, _failures(*ecfr))

    assert [(i.tier, i.root_cause) for i in result.opened] == [(Tier.SERVICE, "www.ecfr.gov")]


def test_source_level_errors_stand_alone_even_when_their_service_is_down() -> None:
    graph = DependencyGraph(GATEWAY)
    failures = _failures("congress_reports", "congress_crs") + _failures(
        "congress_bills", error_class="RequestRejected", first_id=10
    )

    result = _run(graph, failures)

    assert sorted((i.tier, i.root_cause) for i in result.opened) == [
        (Tier.ISOLATED, "congress_bills"),
        (Tier.SERVICE, "api.congress.gov"),
    ]


def test_failures_further_apart_than_the_window_are_separate_incidents() -> None:
    graph = DependencyGraph(GATEWAY)
    early = _failures("congress_reports", at=T0 - timedelta(hours=3))
    late = _failures("congress_crs", first_id=5)

    result = _run(graph, early + late)

    assert sorted((i.tier, i.root_cause) for i in result.opened) == [
        (Tier.ISOLATED, "congress_crs"),
        (Tier.ISOLATED, "congress_reports"),
    ]


def test_a_failure_followed_by_a_newer_run_is_not_current() -> None:
    graph = DependencyGraph(GATEWAY)
    failures = _failures("congress_reports", "congress_crs")
    latest = _latest(failures)
    latest["congress_crs"] = LatestRun("congress_crs", 99, "SUCCESS", T0 + timedelta(minutes=5))

    result = _run(graph, failures, latest=latest)

    assert [(i.tier, i.source_ids) for i in result.opened] == [
        (Tier.ISOLATED, ("congress_reports",))
    ]


def test_failures_of_a_source_no_longer_in_the_catalog_are_ignored() -> None:
    graph = DependencyGraph(GATEWAY)

    result = _run(graph, _failures("retired_source", "congress_crs"))

    assert [(i.tier, i.source_ids) for i in result.opened] == [(Tier.ISOLATED, ("congress_crs",))]


def _open(incident_id: int, tier: Tier, root: str, services: set[str], sources: set[str]):
    return OpenIncident(incident_id, tier, root, frozenset(services), frozenset(sources), T0, T0)


def test_a_new_failure_behind_an_open_incidents_root_joins_it() -> None:
    graph = DependencyGraph(GATEWAY)
    incident = _open(
        7, Tier.SERVICE, "api.congress.gov", {"api.congress.gov"}, {"congress_reports"}
    )
    failures = _failures("congress_crs", "congress_reports", first_id=20)

    result = _run(graph, failures, open_incidents=[incident])

    assert result.opened == []
    assert sorted((a.incident_id, a.failure.source_id) for a in result.attached) == [
        (7, "congress_crs"),
        (7, "congress_reports"),
    ]


def test_exact_source_ids_never_match_by_prefix() -> None:
    catalog = make_catalog(
        {"a.example": (), "b.example": ()},
        [("congress_bills", "a.example"), ("congress_bills_senate", "b.example")],
    )
    graph = DependencyGraph(catalog)
    senate = _open(3, Tier.ISOLATED, "congress_bills_senate", set(), {"congress_bills_senate"})
    failures = _failures("congress_bills", first_id=30)
    latest = _latest(failures)
    latest["congress_bills_senate"] = LatestRun("congress_bills_senate", 2, "ERROR", T0)

    result = _run(graph, failures, open_incidents=[senate], latest=latest)

    # congress_bills neither joins nor resolves the congress_bills_senate incident.
    assert result.attached == []
    assert result.resolved == []
    assert [(i.tier, i.root_cause) for i in result.opened] == [(Tier.ISOLATED, "congress_bills")]


def test_incident_resolves_when_every_source_recovered_at_the_last_recovery() -> None:
    graph = DependencyGraph(GATEWAY)
    incident = _open(
        4,
        Tier.SERVICE,
        "api.congress.gov",
        {"api.congress.gov"},
        {"congress_crs", "congress_bills"},
    )
    first = T0 + timedelta(minutes=3)
    second = T0 + timedelta(minutes=4)
    latest = {
        "congress_crs": LatestRun("congress_crs", 40, "SUCCESS", first),
        "congress_bills": LatestRun("congress_bills", 41, "NO_DATA", second),
    }

    result = _run(graph, [], open_incidents=[incident], latest=latest)

    assert [(r.incident_id, r.resolved_at) for r in result.resolved] == [(4, second)]
    assert sorted(r.source_id for r in result.recovered) == ["congress_bills", "congress_crs"]


def test_incident_stays_open_while_one_source_still_fails() -> None:
    graph = DependencyGraph(GATEWAY)
    incident = _open(
        4,
        Tier.SERVICE,
        "api.congress.gov",
        {"api.congress.gov"},
        {"congress_crs", "congress_bills"},
    )
    latest = {
        "congress_crs": LatestRun("congress_crs", 40, "SUCCESS", T0 + timedelta(minutes=3)),
        "congress_bills": LatestRun("congress_bills", 12, "ERROR", T0),
    }

    result = _run(graph, [], open_incidents=[incident], latest=latest)

    assert result.resolved == []
    assert [(r.incident_id, r.source_id) for r in result.recovered] == [(4, "congress_crs")]


def test_breakers_opening_together_behind_a_gateway_are_one_cascade() -> None:
    graph = DependencyGraph(GATEWAY)
    openings = [
        BreakerOpening("api.congress.gov", T0),
        BreakerOpening("api.govinfo.gov", T0 + timedelta(seconds=30)),
    ]
    failures = _failures("congress_crs", error_class="BreakerOpen")

    result = _run(graph, failures, breaker_openings=openings)

    assert len(result.opened) == 1
    cascade = result.opened[0]
    assert (cascade.tier, cascade.root_cause) == (Tier.BREAKER_CASCADE, "api.data.gov")
    assert cascade.source_ids == ("congress_crs",)
    assert cascade.opened_at == T0


def test_one_breaker_opening_is_no_cascade() -> None:
    graph = DependencyGraph(GATEWAY)

    result = _run(graph, [], breaker_openings=[BreakerOpening("api.congress.gov", T0)])

    assert result.opened == []


def test_cascade_stays_open_while_a_breaker_is_open() -> None:
    graph = DependencyGraph(GATEWAY)
    cascade = _open(
        9, Tier.BREAKER_CASCADE, "api.data.gov", {"api.congress.gov", "api.govinfo.gov"}, set()
    )

    held = _run(graph, [], open_incidents=[cascade], open_breakers=frozenset({"api.govinfo.gov"}))
    closed = _run(graph, [], open_incidents=[cascade])

    assert held.resolved == []
    assert [r.incident_id for r in closed.resolved] == [9]


def test_shipped_catalog_congress_outage_names_api_congress_gov() -> None:
    graph = DependencyGraph(shipped_catalog())
    failures = _failures(
        "congress_committee_meetings", "congress_committee_reports", "congress_crs_reports"
    )

    result = _run(graph, failures)

    assert [(i.tier, i.root_cause, i.severity) for i in result.opened] == [
        (Tier.SERVICE, "api.congress.gov", Severity.ERROR)
    ]


@pytest.mark.parametrize(
    ("tier", "critical", "severity"),
    [
        (Tier.INFRASTRUCTURE, False, Severity.CRITICAL),
        (Tier.SERVICE, True, Severity.CRITICAL),
        (Tier.SERVICE, False, Severity.ERROR),
        (Tier.BREAKER_CASCADE, False, Severity.ERROR),
        (Tier.ISOLATED, False, Severity.WARNING),
        (Tier.ISOLATED, True, Severity.CRITICAL),
    ],
)
def test_severity_mapping(tier: Tier, critical: bool, severity: Severity) -> None:
    assert incident_severity(tier, critical) is severity


@pytest.mark.parametrize(
    "kwargs",
    [{"infrastructure_fraction": 0}, {"infrastructure_fraction": 1.5}, {"infrastructure_floor": 1}],
)
def test_policy_rejects_meaningless_settings(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        CorrelationPolicy(**kwargs)
