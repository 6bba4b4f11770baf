{#
    Small value-cleaning helpers used by the staging models. Raw columns are all varchar
    (see docs/warehouse_layout.md); these turn them into typed, canonical values, and a value
    that cannot be used becomes null (the staging models flag it so the audit can count it).
#}

{#-
    `trim(x)`, decoding the string only when trimming can change it. DuckDB's trim strips
    spaces and Unicode spaces (no-break, ideographic, ...) but no other ASCII character, so a
    value that neither starts nor ends with ' ' and is all ASCII (strlen = length) is its own
    trim. trim decodes every character: at 17 M events a dozen trimmed columns cost seconds
    per read of a staging view, the check a fraction of that. Same result for every value.
-#}
{% macro trimmed(column) -%}
    case
        when starts_with({{ column }}, ' ') or ends_with({{ column }}, ' ')
            or strlen({{ column }}) <> length({{ column }})
            then trim({{ column }})
        else {{ column }}
    end
{%- endmacro %}


{% macro clean_string(column) -%}
    nullif({{ trimmed(column) }}, '')
{%- endmacro %}


{#- Lookup key shared with config.event_type_map and config.categorical_map. -#}
{% macro normalize_key(column) -%}
    lower(regexp_replace({{ column }}, '[^A-Za-z0-9]', '', 'g'))
{%- endmacro %}


{#- `Home & Garden ` -> `home_garden`; blank -> null. -#}
{% macro slugify(column) -%}
    nullif(trim(regexp_replace(lower(trim({{ column }})), '[^a-z0-9]+', '_', 'g'), '_'), '')
{%- endmacro %}


{% macro parse_boolean(column) -%}
    case
        when lower(trim({{ column }})) in ('true', 't', '1', 'yes', 'y') then true
        when lower(trim({{ column }})) in ('false', 'f', '0', 'no', 'n') then false
    end
{%- endmacro %}


{#- True when the raw value is present but its parsed value is null (nulled as invalid). -#}
{% macro is_nulled(raw_column, parsed_expression) -%}
    ({{ clean_string(raw_column) }} is not null and ({{ parsed_expression }}) is null)
{%- endmacro %}
