select
    id as source_run_id,
    source_id,
    status,
    started_at,
    ended_at,
    duration_ms,
    records_new,
    records_updated,
    records_unchanged,
    error_class
from {{ source('va_signals', 'source_runs') }}
where status <> 'RUNNING'
