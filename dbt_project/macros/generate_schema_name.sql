{#
    Custom schemas are used verbatim (`staging`, `intermediate`, `marts`) instead of dbt's
    default `<target_schema>_<custom_schema>`: the warehouse layout is a contract that the
    Python assets and the published snapshot read by name.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
