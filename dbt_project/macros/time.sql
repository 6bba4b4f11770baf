{#
    Time helpers. Every timestamp in the warehouse is a naive `timestamp` in UTC and the
    session time zone is UTC (profiles.yml); these macros hold the engine-specific SQL.
#}

{#- An IANA time zone name the engine knows, else null (so it can fall back to UTC). -#}
{% macro valid_timezone(column) -%}
    {{ return(adapter.dispatch('valid_timezone', 'personalization')(column)) }}
{%- endmacro %}

{% macro default__valid_timezone(column) -%}
    case
        when {{ clean_string(column) }} in (select tz.name from pg_timezone_names() as tz)
            then {{ trimmed(column) }}
    end
{%- endmacro %}


{#- Wall-clock time in `tz` (a valid IANA name) of a naive UTC timestamp. -#}
{% macro utc_to_local(timestamp_column, tz) -%}
    {{ return(adapter.dispatch('utc_to_local', 'personalization')(timestamp_column, tz)) }}
{%- endmacro %}

{% macro default__utc_to_local(timestamp_column, tz) -%}
    timezone({{ tz }}, cast({{ timestamp_column }} as timestamptz))
{%- endmacro %}

{% macro spark__utc_to_local(timestamp_column, tz) -%}
    from_utc_timestamp({{ timestamp_column }}, {{ tz }})
{%- endmacro %}


{#- Part of the day of a local hour: morning 5-11, afternoon 12-16, evening 17-21, night 22-4. -#}
{% macro daypart(hour_expression) -%}
    case
        when {{ hour_expression }} between 5 and 11 then 'morning'
        when {{ hour_expression }} between 12 and 16 then 'afternoon'
        when {{ hour_expression }} between 17 and 21 then 'evening'
        when {{ hour_expression }} is not null then 'night'
    end
{%- endmacro %}


{#- Fractional days from `start_ts` to `end_ts` (both naive UTC timestamps). -#}
{% macro days_between(start_ts, end_ts) -%}
    ({{ dbt.datediff(start_ts, end_ts, 'second') }} / 86400.0)
{%- endmacro %}


{#- Completed years of age on `as_of_date` for someone born on `birth_date`. -#}
{% macro age_in_years(birth_date, as_of_date) -%}
    (
        extract(year from {{ as_of_date }}) - extract(year from {{ birth_date }})
        - case
            when extract(month from {{ as_of_date }}) * 100 + extract(day from {{ as_of_date }})
                < extract(month from {{ birth_date }}) * 100 + extract(day from {{ birth_date }})
                then 1
            else 0
        end
    )
{%- endmacro %}
