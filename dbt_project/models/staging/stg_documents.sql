-- Canonical documents only: cross-source copies point at their first copy via duplicate_of.
select
    id as document_id,
    source_id,
    external_id,
    title,
    url,
    coalesce(published_on, published_at::date) as published_date,
    first_seen_at,
    last_seen_at
from {{ source('va_signals', 'documents') }}
where duplicate_of is null
