"""Every alerting sensor of the code location, built for one catalog."""

from __future__ import annotations

import dagster as dg

from va_signals.catalog import Catalog
from va_signals.sensors.asset_checks import build_failed_check_sensor
from va_signals.sensors.incidents import build_incident_sensor
from va_signals.sensors.run_failure import run_failure_alerts, run_recovery_alerts


def build_alert_sensors(catalog: Catalog) -> list[dg.SensorDefinition]:
    return [
        build_incident_sensor(catalog),
        build_failed_check_sensor(catalog),
        run_failure_alerts,
        run_recovery_alerts,
    ]
