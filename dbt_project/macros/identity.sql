{#- Key of an identity graph node, as in docs/warehouse_layout.md. -#}
{% macro identity_node_key(identifier_type, source_system, identifier) -%}
    {{ identifier_type }} || '|' || coalesce({{ source_system }}, '') || '|' || {{ identifier }}
{%- endmacro %}
