with

segment_trigger_rules as (
    select * from {{ source('segment_config', 'segment_trigger_rules') }}
),

renamed as (
    select
        cast(segment_id as varchar) as segment_id,
        cast(segment_name as varchar) as segment_name,
        cast(description as varchar) as description,
        lower(trim(cast(score_metric as varchar))) as score_metric,
        cast(condition_number as integer) as condition_number,
        lower(trim(cast(metric as varchar))) as metric,
        trim(cast(operator as varchar)) as operator,
        cast(threshold as double) as threshold
    from segment_trigger_rules
)

select * from renamed
