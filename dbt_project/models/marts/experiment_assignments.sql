with

assignments as (
    select * from {{ source('ml', 'experiment_assignments') }}
),

final as (
    select
        cast(experiment as varchar) as experiment,
        cast(person_id as varchar) as person_id,
        cast(variant as varchar) as variant,
        cast(bucket as double) as bucket
    from assignments
)

select * from final
