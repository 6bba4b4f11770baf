-- Each segmentation run keeps at most one (algorithm, k).
with

segment_quality as (
    select * from {{ ref('segment_quality') }}
),

chosen_per_run as (
    select
        run_at,
        count(case when is_chosen then 1 end) as n_chosen
    from segment_quality
    group by run_at
)

select * from chosen_per_run
where n_chosen > 1
