with

segment_drift as (
    select * from {{ source('ml', 'segment_drift') }}
),

final as (
    select
        cast(run_at as timestamp) as run_at,
        cast(previous_run_at as timestamp) as previous_run_at,
        cast(drift_kind as varchar) as drift_kind,
        cast(subject as varchar) as subject,
        cast(previous_share as double) as previous_share,
        cast(current_share as double) as current_share,
        cast(psi as double) as psi,
        cast(is_above_threshold as boolean) as is_above_threshold
    from segment_drift
)

select * from final
