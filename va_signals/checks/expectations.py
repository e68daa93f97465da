"""Great Expectations suites built from the catalog: one run's record count and payload schema.

Each source gets its own suites, validated in an ephemeral context against a pandas DataFrame;
the verdicts carry GX's result summary so a check can show it as metadata.
"""

from __future__ import annotations

import math
import os
import statistics
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from va_signals.catalog.models import Source

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.core import ExpectationSuiteValidationResult

# |robust z| above this is an outlier: far enough that a normal week never reaches it.
ROBUST_Z_LIMIT = 5.0
# Fewer good runs than this are no history to judge a count against.
MIN_HISTORY_RUNS = 5
HISTORY_RUNS = 30
# Scales the median absolute deviation to a standard deviation for normally spread counts.
_MAD_TO_SIGMA = 1.4826
# A history of identical counts has MAD 0; a spread floor keeps one extra record from being
# "infinitely" unusual: at least one record, or 5% of the median.
_MIN_SPREAD_FRACTION = 0.05

_gx_lock = threading.Lock()
_gx_batch_definition: Any = None


@dataclass(frozen=True)
class RobustZ:
    """How far a count is from its history, in robust standard deviations."""

    z: float | None
    median: float | None
    mad: float | None
    history_runs: int


def robust_z(value: int, history: Sequence[int]) -> RobustZ:
    """The robust z-score of `value` against `history` (median and MAD); None when too short."""
    if len(history) < MIN_HISTORY_RUNS:
        return RobustZ(None, None, None, len(history))
    median = statistics.median(history)
    mad = statistics.median(abs(count - median) for count in history)
    spread = max(_MAD_TO_SIGMA * mad, 1.0, _MIN_SPREAD_FRACTION * median)
    return RobustZ(round((value - median) / spread, 3), median, mad, len(history))


@dataclass(frozen=True)
class ValueRangeVerdict:
    """A run's record count against the catalog's bounds and the source's own history."""

    records: int
    spread: RobustZ
    outside_bounds: bool
    outlier: bool
    summary: dict[str, Any]

    @property
    def passed(self) -> bool:
        return not (self.outside_bounds or self.outlier)


def validate_value_range(
    source: Source, records: int, history: Sequence[int], *, complete: bool = True
) -> ValueRangeVerdict:
    """Validate one run's count with the source's value-range suite.

    An incomplete run (one that failed part-way) is held to the ceiling only: its count says
    nothing about the floor or about the usual size of a run.
    """
    import pandas as pd

    spread = robust_z(records, history) if complete else RobustZ(None, None, None, len(history))
    frame = pd.DataFrame(
        {"records": [records], "robust_z": [spread.z if spread.z is not None else math.nan]}
    )
    quality = source.quality
    floor = quality.min_records_per_run if complete else 0
    result = _validate(frame, value_range_suite(source, floor=floor))
    outcomes = {_column(item): item.success for item in result.results}
    return ValueRangeVerdict(
        records=records,
        spread=spread,
        outside_bounds=not outcomes["records"],
        outlier=not outcomes["robust_z"],
        summary=_summary(result),
    )


def value_range_suite(source: Source, *, floor: int | None = None) -> Any:
    """The suite of one run's count: catalog floor and ceiling, and the robust z limit."""
    import great_expectations as gx

    quality = source.quality
    return gx.ExpectationSuite(
        name=f"{source.id}.value_range",
        expectations=[
            gx.expectations.ExpectColumnValuesToBeBetween(
                column="records",
                min_value=quality.min_records_per_run if floor is None else floor,
                max_value=quality.max_records_per_run,
            ),
            # A missing z (too little history) is null, which GX leaves unjudged.
            gx.expectations.ExpectColumnValuesToBeBetween(
                column="robust_z", min_value=-ROBUST_Z_LIMIT, max_value=ROBUST_Z_LIMIT
            ),
        ],
    )


@dataclass(frozen=True)
class SchemaVerdict:
    """Payload fields of one run against the catalog's expected schema."""

    records_checked: int
    fields_missing: tuple[str, ...] = ()
    fields_new: tuple[str, ...] = ()
    types_changed: dict[str, list[str]] = field(default_factory=dict)
    not_objects: int = 0
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not (
            self.fields_missing or self.fields_new or self.types_changed or self.not_objects
        )


def validate_schema(
    source: Source, shapes: Sequence[tuple[dict[str, str] | None, int]]
) -> SchemaVerdict:
    """Validate the payload shapes of one run (field -> JSON type, with a document count each).

    A field counts as missing when no document of the run has it; a field some documents leave
    out is not drift, since the APIs omit empty optional fields.
    """
    import pandas as pd

    records = sum(count for _, count in shapes)
    objects = [shape for shape, _ in shapes if shape is not None]
    not_objects = sum(count for shape, count in shapes if shape is None)
    if not objects:
        return SchemaVerdict(records_checked=records, not_objects=not_objects)

    # One row per distinct shape: the schema question does not depend on how many share one.
    frame = pd.DataFrame.from_records(objects)
    result = _validate(frame, schema_suite(source, present=set(frame.columns)))
    missing: tuple[str, ...] = ()
    new: tuple[str, ...] = ()
    changed: dict[str, list[str]] = {}
    for item in result.results:
        if item.success:
            continue
        details = item.result.get("details", {}).get("mismatched")
        if details is not None:
            missing = tuple(details.get("missing", ()))
            new = tuple(details.get("unexpected", ()))
        else:
            changed[_column(item)] = sorted(set(item.result.get("partial_unexpected_list", ())))
    return SchemaVerdict(
        records_checked=records,
        fields_missing=missing,
        fields_new=new,
        types_changed=changed,
        not_objects=not_objects,
        summary=_summary(result),
    )


def schema_suite(source: Source, present: Collection[str] | None = None) -> Any:
    """The suite of a source's payload shapes: exactly the catalog's fields, each of its types.

    With `present`, type expectations are kept for those fields only: a missing field is the
    column-set expectation's finding, and an expectation on an absent column would only raise.
    """
    import great_expectations as gx

    fields = source.quality.expected_fields
    expectations: list[Any] = [
        gx.expectations.ExpectTableColumnsToMatchSet(column_set=sorted(fields), exact_match=True)
    ]
    expectations += [
        gx.expectations.ExpectColumnValuesToBeInSet(column=name, value_set=types.split("|"))
        for name, types in sorted(fields.items())
        if present is None or name in present
    ]
    return gx.ExpectationSuite(name=f"{source.id}.schema", expectations=expectations)


def _validate(frame: pd.DataFrame, suite: Any) -> ExpectationSuiteValidationResult:
    with _gx_lock:
        batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
        return batch.validate(suite, result_format="SUMMARY")


def _batch_definition() -> Any:
    # One ephemeral context per process: building it costs more than a validation does.
    global _gx_batch_definition
    if _gx_batch_definition is None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        # Progress bars would print to the step's log on every validation.
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        asset = context.data_sources.add_pandas("va_signals_checks").add_dataframe_asset("run")
        _gx_batch_definition = asset.add_batch_definition_whole_dataframe("whole_run")
    return _gx_batch_definition


def _column(item: Any) -> str:
    return str(item.expectation_config.kwargs.get("column", "(table)"))


def _summary(result: ExpectationSuiteValidationResult) -> dict[str, Any]:
    """GX's verdict in a form that fits check metadata: totals and each failed expectation."""
    statistics_ = result.statistics
    failed = [
        {
            "expectation": item.expectation_config.type,
            "column": _column(item),
            "observed": _jsonable(item.result.get("observed_value")),
            "unexpected": _jsonable(item.result.get("partial_unexpected_list")),
            "details": _jsonable(item.result.get("details")),
        }
        for item in result.results
        if not item.success
    ]
    return {
        "suite": result.suite_name,
        "success": bool(result.success),
        "evaluated": int(statistics_.get("evaluated_expectations", 0)),
        "successful": int(statistics_.get("successful_expectations", 0)),
        "failed": failed,
    }


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(item) for item in value]
    return str(value)
