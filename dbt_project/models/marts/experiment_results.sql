with

results as (
    select * from {{ source('ml', 'experiment_results') }}
),

final as (
    select
        cast(experiment as varchar) as experiment,
        cast(variant as varchar) as variant,
        cast(is_control as boolean) as is_control,
        cast(metric as varchar) as metric,
        cast(users as bigint) as users,
        cast(exposed_users as bigint) as exposed_users,
        cast(clickers as bigint) as clickers,
        cast(converters as bigint) as converters,
        cast(ctr as double) as ctr,
        cast(conversion_rate as double) as conversion_rate,
        cast(lift as double) as lift,
        cast(lift_ci_low as double) as lift_ci_low,
        cast(lift_ci_high as double) as lift_ci_high,
        cast(p_value as double) as p_value,
        cast(is_significant as boolean) as is_significant,
        cast(srm_p_value as double) as srm_p_value,
        cast(has_srm as boolean) as has_srm
    from results
)

select * from final
