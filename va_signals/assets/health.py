"""The `health_score` asset: one number for the state of every source, recomputed after each run."""

from datetime import UTC, datetime

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)
from pydantic import Field

from va_signals.assets.pipeline import SIGNALS_KEY
from va_signals.catalog import Catalog
from va_signals.db.health import load_health_inputs
from va_signals.resilience.health import HealthReport, HealthWeights, compute_health
from va_signals.resources import DatabaseResource

HEALTH_SCORE_KEY = dg.AssetKey("health_score")
HEALTH_JOB = "health_score_job"


class HealthConfig(dg.Config):
    """Weights of the five dimensions of the score (relative; they need not sum to 100)."""

    freshness_weight: float = Field(default=30.0, ge=0)
    error_rate_weight: float = Field(default=25.0, ge=0)
    breakers_weight: float = Field(default=20.0, ge=0)
    coverage_weight: float = Field(default=15.0, ge=0)
    latency_weight: float = Field(default=10.0, ge=0)

    def weights(self) -> HealthWeights:
        return HealthWeights(
            freshness=self.freshness_weight,
            error_rate=self.error_rate_weight,
            breakers=self.breakers_weight,
            coverage=self.coverage_weight,
            latency=self.latency_weight,
        )


def build_health_asset(catalog: Catalog) -> dg.AssetsDefinition:
    """The health score asset, downstream of signals so the daily job recomputes it last."""

    @dg.asset(
        key=HEALTH_SCORE_KEY,
        deps=[SIGNALS_KEY],
        group_name="observability",
        kinds={"postgres", "python"},
        owners=["team:va-signals"],
    )
    def health_score(
        context: dg.AssetExecutionContext, config: HealthConfig, database: DatabaseResource
    ) -> dg.MaterializeResult:
        """How well VA Signals is watching its sources, 0 to 100: freshness, error rate,
        breakers, coverage and latency, weighted. 0 with `configured: false` means the score
        could not see part of the system; `reason` says which."""
        with database.connection() as conn:
            inputs = load_health_inputs(conn, catalog, datetime.now(UTC))
        report = compute_health(inputs, config.weights())
        context.log.info("health score %.1f (configured: %s)", report.score, report.configured)
        return dg.MaterializeResult(metadata=health_metadata(report))

    return health_score


def build_health_job() -> UnresolvedAssetJobDefinition:
    """Recomputes the score alone; the freshness sensor requests it after new runs."""
    return dg.define_asset_job(
        HEALTH_JOB,
        selection=dg.AssetSelection.assets(HEALTH_SCORE_KEY),
        description="Recompute the health score from the runs ledger and breaker states.",
        executor_def=dg.in_process_executor,
    )


def health_metadata(report: HealthReport) -> dict[str, dg.MetadataValue]:
    """Floats the UI plots over materializations (score, one per dimension), and the detail."""
    metadata: dict[str, dg.MetadataValue] = {
        "score": dg.MetadataValue.float(report.score),
        "configured": dg.MetadataValue.bool(report.configured),
        "reason": dg.MetadataValue.text("; ".join(report.reasons) or "all dimensions measured"),
    }
    for dimension in report.dimensions:
        metadata[f"dimension_{dimension.name}"] = dg.MetadataValue.float(
            round(dimension.score * 100, 2)
        )
    metadata["detail"] = dg.MetadataValue.json(report.as_dict())
    return metadata
