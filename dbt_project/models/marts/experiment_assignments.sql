{#- A view: a typed projection of ml.experiment_assignments (2.2M rows at L), which the
    experiments step keeps; as a table it was copied again every run (1.2 s at L). -#}
{{ config(materialized='view') }}

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
