{#-
    A model whose inputs rarely change (the profiles, the consents: a night lands events and
    contexts) is kept per key: a build recomputes only the keys (a profile record, a consent
    subject) whose input rows changed, and keeps the rows of every other key.

    - `inputs_fingerprint(views=...)` is an md5 over the model's own SQL and the SQL of the
      views it reads (DuckDB stores them rendered: a changed macro or var shows). Stored rows
      carrying another fingerprint were built by other code: every key is recomputed.
    - `key_hashes(relation, keys)` hashes, per key, the input rows naming it (count, xor and
      sum of a hash of every row: a delivered, edited or erased row shows; the sum catches a
      pair of identical rows the xor would cancel). Stored rows keep the hash they were built
      from (`_source_hash`); `changed_keys` lists the keys whose hash differs, appeared or
      went away.
    - `kept_per_key_rows` is the model's last select: the recomputed rows, plus a removal row
      for each recomputed key left without rows (its records gone or erased).
    - The post-hook `replace_recomputed_keys(keys)` deletes the stored rows of every key
      written tonight, and the removal rows (one transaction: a failed build leaves the last
      rows).

    Before, a changed row anywhere rebuilt every row: at L, each night after an erasure (whose
    sweep deletes raw rows) rebuilt int_profiles_deduplicated (10 s) and int_consent_current
    (8 s); per key, both took 8 s on a copy of that warehouse, most of it staging and hashing
    every input row (the whole build costs as much more). A code change to either model is a
    full refresh (dagster_project/incremental.py), so a new column never meets the stored rows.
-#}
{% macro inputs_fingerprint(views=[]) -%}
    {%- if not execute -%}
        {{ return('') }}
    {%- endif -%}
    {%- set parts = ["'" ~ local_md5(model.raw_code) ~ "'"] -%}
    {%- for view in views -%}
        {%- do parts.append(
            "coalesce((select sql from duckdb_views() where database_name = '"
            ~ view.database ~ "' and schema_name = '" ~ view.schema ~ "' and view_name = '"
            ~ view.identifier ~ "'), 'missing')"
        ) -%}
    {%- endfor -%}
    {{ return(run_query("select md5(concat_ws('|', " ~ parts | join(', ') ~ "))").columns[0].values()[0]) }}
{%- endmacro %}


{#- True on an incremental build whose stored rows were built by the same code (fingerprint). -#}
{% macro stored_rows_current(fingerprint) -%}
    {%- if execute and is_incremental() -%}
        {%- set stored = run_query(
            "select max(_inputs_fingerprint) from " ~ this
        ).columns[0].values()[0] -%}
        {{ return(stored == fingerprint) }}
    {%- endif -%}
    {{ return(false) }}
{%- endmacro %}


{% macro _keys_match(left, right, keys) -%}
    {%- for key in keys %}{{ left }}.{{ key }} is not distinct from {{ right }}.{{ key }}
    {%- if not loop.last %} and {% endif %}{% endfor -%}
{%- endmacro %}


{% macro key_hashes(relation, keys) -%}
    select
        {%- for key in keys %}
        {{ key }},
        {%- endfor %}
        count(*) || ':' || bit_xor(hash(keyed)) || ':' || sum(hash(keyed)::hugeint)
            as _source_hash
    from {{ relation }} as keyed
    group by all
{%- endmacro %}


{% macro changed_keys(hashes, keys) -%}
    select
        {%- for key in keys %}
        coalesce(current_hashes.{{ key }}, stored_hashes.{{ key }}) as {{ key }}
        {{- ',' if not loop.last }}
        {%- endfor %}
    from {{ hashes }} as current_hashes
    full outer join (
        select distinct {{ keys | join(', ') }}, _source_hash from {{ this }}
    ) as stored_hashes
        on {{ _keys_match('current_hashes', 'stored_hashes', keys) }}
    where current_hashes._source_hash is distinct from stored_hashes._source_hash
{%- endmacro %}


{% macro _built_at() -%}
    cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as timestamp)
{%- endmacro %}


{#- `cte`: the recomputed rows; `changed`: the recomputed keys (on a build keeping the others;
    none otherwise); `hashes`: every key's `key_hashes`. -#}
{% macro kept_per_key_rows(cte, keys, hashes, fingerprint, changed=none) -%}
select
    {{ cte }}.*,
    {{ hashes }}._source_hash,
    false as _is_removal,
    '{{ fingerprint }}' as _inputs_fingerprint,
    {{ _built_at() }} as _built_at
from {{ cte }}
left join {{ hashes }}
    on {{ _keys_match(cte, hashes, keys) }}
{%- if changed %}

union all by name

-- a recomputed key left without rows: the post-hook deletes its stored rows, then this one
select
    {%- for key in keys %}
    {{ changed }}.{{ key }},
    {%- endfor %}
    true as _is_removal,
    '{{ fingerprint }}' as _inputs_fingerprint,
    {{ _built_at() }} as _built_at
from {{ changed }}
anti join {{ cte }}
    on {{ _keys_match(changed, cte, keys) }}
{%- endif %}
{%- endmacro %}


{#- Post-hook of a model kept per key: the rows written tonight replace the stored rows of their
    keys; rows of other code (another fingerprint) go; then the removal rows go. -#}
{% macro replace_recomputed_keys(keys) -%}
    delete from {{ this }} as stored
    using (
        select distinct {{ keys | join(', ') }} from {{ this }} where _built_at = {{ _built_at() }}
    ) as tonight
    where stored._built_at < {{ _built_at() }}
        and {{ _keys_match('stored', 'tonight', keys) }};
    delete from {{ this }}
    where _built_at < {{ _built_at() }}
        and _inputs_fingerprint <> (
            select any_value(_inputs_fingerprint) from {{ this }} where _built_at = {{ _built_at() }}
        );
    delete from {{ this }} where _is_removal
{%- endmacro %}


{#-
    The rows of `cte` whose person is in the model's `touched` CTE on an incremental build (the
    people it recomputes), every row on a full one. Used by the person-level incremental models
    (int_person_activity, int_profiles_survived), which define `touched` when incremental.
-#}
{% macro of_touched_people(cte) -%}
    {%- if is_incremental() %}
    select {{ cte }}.*
    from {{ cte }}
    semi join touched
        on {{ cte }}.person_id = touched.person_id
    {%- else %}
    select * from {{ cte }}
    {%- endif %}
{%- endmacro %}
