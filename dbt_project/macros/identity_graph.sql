{#-
    The identity graph (int_identity_nodes, int_identity_edges) is kept between builds. Its
    rows come in two origins (`_origin`), kept on their own terms:

    - `events`: the identifiers events name and the login stitches they make. A build appends
      those of the events deduplicated since the last one that are not in the graph yet (at
      1M people the whole graph, 4.5M nodes and 3.8M edges rewritten every run, took 13.9-16.0 s
      of a night on the session-45 machine; appending took 0.4-0.5 s and 0.3 s of SQL on a
      copy of that warehouse).
      They are rewritten only when the model's SQL or the junk values change. Like the event
      models, they need no rebuild for an erasure: the identity step deletes the erased
      people's rows from every warehouse table, these and int_events_deduplicated included,
      and ingest keeps their raw rows out later. A replaced file or a changed mapping is a full
      refresh (dagster_project/incremental.py).
    - `profiles`: the records, their user ids, email and phone tokens, the consents' user ids
      (nodes only) and the edges between them: about 1.4M records at L, rewritten whenever
      int_profiles_deduplicated (or int_consent_current) changed since the graph's last build,
      an erasure's sweep included.

    A node named by both events and profiles (a user id) is an `events` row: that origin keeps
    it whatever the profiles do (`keep_event_nodes`, the nodes' post-hook).

    `identity_graph_fingerprint(origin)` is an md5 over the model's SQL, the junk values and,
    for `profiles`, the row count and newest `_built_at` of the kept-per-key models the rows
    are made of (a changed, new or re-keyed row gets a new `_built_at`, a removed one lowers
    the count: reading two aggregates, not hashing 1.4M rows). A stored row carries the
    fingerprint of its origin when it was written (`_inputs_fingerprint`); when tonight's
    differs, the pre-hook `delete_unless_fingerprint` deletes that origin's rows and the build
    writes them again, as a full build does.
-#}
{% macro identity_graph_fingerprint(origin, with_consents=false) -%}
    {%- if not execute -%}
        {{ return('') }}
    {%- endif -%}
    {%- set parts = [
        "'" ~ origin ~ "'",
        "'" ~ local_md5(model.raw_code) ~ "'",
        "(select coalesce(string_agg(junk_value, ',' order by junk_value), '') from "
            ~ ref('stg_config__identity_junk_values') ~ ")",
    ] -%}
    {%- if origin == 'profiles' -%}
        {%- set inputs = [ref('int_profiles_deduplicated')] -%}
        {%- if with_consents -%}
            {%- do inputs.append(ref('int_consent_current')) -%}
        {%- endif -%}
        {%- for relation in inputs -%}
            {%- do parts.append(
                "(select count(*) || ':' || coalesce(max(_built_at)::varchar, '') from "
                ~ relation ~ ")"
            ) -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(run_query(
        "select md5(concat_ws('|', " ~ parts | join(', ') ~ "))"
    ).columns[0].values()[0]) }}
{%- endmacro %}


{#- True on an incremental build whose stored rows of `origin` carry `fingerprint`. -#}
{% macro stored_origin_current(origin, fingerprint) -%}
    {%- if execute and is_incremental() and _has_origin_column() -%}
        {{ return(run_query(
            "select coalesce(bool_and(_inputs_fingerprint = '" ~ fingerprint ~ "'), false) from "
            ~ this ~ " where _origin = '" ~ origin ~ "'"
        ).columns[0].values()[0]) }}
    {%- endif -%}
    {{ return(false) }}
{%- endmacro %}


{% macro _has_origin_column() -%}
    {{ return('_origin' in adapter.get_columns_in_relation(this) | map(attribute='name') | list) }}
{%- endmacro %}


{#- The pre-hook: on an incremental build, delete the stored rows of each origin that another
    fingerprint wrote (every row of a table written before origins were kept apart). -#}
{% macro delete_unless_fingerprint(with_consents=false) -%}
    {%- if is_incremental() and _has_origin_column() -%}
        delete from {{ this }}
        where _inputs_fingerprint is distinct from case _origin
            when 'events' then '{{ identity_graph_fingerprint('events') }}'
            else '{{ identity_graph_fingerprint('profiles', with_consents=with_consents) }}'
        end
    {%- elif is_incremental() -%}
        delete from {{ this }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}


{#- The nodes' post-hook: a node this build added from events replaces the same node stored from
    the profiles (kept, not rewritten, tonight), so a node_key stays one row. -#}
{% macro keep_event_nodes() -%}
    {%- if is_incremental() -%}
        delete from {{ this }}
        where _origin = 'profiles'
            and node_key in (
                select node_key from {{ this }}
                where _origin = 'events' and _built_at = {{ _built_at() }}
            )
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}


{#- A graph row's bookkeeping: what its origin's build was made of, the events it read up to
    (`events`: the model's CTE of every event) and the build. -#}
{% macro identity_graph_bookkeeping(rows, events_fingerprint, profiles_fingerprint) -%}
        case {{ rows }}._origin
            when 'events' then '{{ events_fingerprint }}'
            else '{{ profiles_fingerprint }}'
        end as _inputs_fingerprint,
        (select max(_deduplicated_at) from events) as _events_watermark,
        {{ _built_at() }} as _built_at
{%- endmacro %}
