from va_signals_tests.alerting_support import (  # noqa: F401 - fixtures
    database,
    fake_pagerduty,
    fake_slack,
    obs_db,
)
