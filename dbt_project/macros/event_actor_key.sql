{#-
    Whose inactivity splits an event's derived sessions (int_events_identified): the user, else
    the user its device logged in as (so browsing before a login continues into it), else the
    device. Needs `junk_values` and `device_logins` joined on the event's user and device.
-#}
{% macro event_actor_key(relation) -%}
case
            when {{ relation }}.user_id is not null and junk_values.junk_value is null
                then 'user_id:' || {{ relation }}.user_id
            when device_logins.user_id is not null
                then 'user_id:' || device_logins.user_id
            when {{ relation }}.anonymous_id is not null
                then 'anonymous_id:' || {{ relation }}.anonymous_id
            else 'user_id:' || {{ relation }}.user_id
        end
{%- endmacro %}

{#- Every row of `relation` (events) with its actor, as `actor_key`; joins the CTEs named
    `junk_values` and `device_logins` of the model. -#}
{% macro with_event_actor_key(relation) -%}
select
        {{ relation }}.*,
        {{ event_actor_key(relation) }} as actor_key
    from {{ relation }}
    left join junk_values
        on lower({{ relation }}.user_id) = junk_values.junk_value
    left join device_logins
        on {{ relation }}.anonymous_id = device_logins.anonymous_id
{%- endmacro %}
