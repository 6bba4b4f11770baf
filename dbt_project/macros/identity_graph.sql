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
      (nodes only) and the edges between them (about 1.4M records, 3.1M nodes and 3.5M edges
      at L). They are kept per record, like int_profiles_deduplicated, which recomputes only
      the records whose versions changed and stamps them with its build's `_built_at`:
      - `none`: the profiles (and consents) are as the graph's last build saw them (their row
        count and newest `_built_at`, `_profiles_state`): nothing to do, most nights;
      - `changed`: the rows of the records rebuilt since (`_built_at` past the graph's
        `_profiles_watermark`) or gone (erased, removed) are deleted by the pre-hook, the
        rebuilt records' rows are written again, and the user, email and phone nodes that no
        record or consent names any more are deleted (session 46's L bench: rewriting all
        the profiles' rows the night after an erasure took 29.4 s, against a handful of
        records changed);
      - `all`: new SQL, new junk values or a full refresh: every profile row is written again.

    A node named by both events and profiles (a user id) is an `events` row: that origin keeps
    it whatever the profiles do (`keep_event_nodes`, the nodes' post-hook).

    `identity_graph_fingerprint(origin)` is an md5 over the model's SQL and the junk values. A
    stored row carries the fingerprint of its origin when it was written
    (`_inputs_fingerprint`); when tonight's differs, the pre-hook `delete_unless_fingerprint`
    deletes that origin's rows and the build writes them again, as a full build does.
-#}

{% macro identity_graph_fingerprint(origin) -%}
    {%- if not execute -%}
        {{ return('') }}
    {%- endif -%}
    {{ return(run_query(
        "select md5(concat_ws('|', '" ~ origin ~ "', '" ~ local_md5(model.raw_code) ~ "', "
        ~ "(select coalesce(string_agg(junk_value, ',' order by junk_value), '') from "
        ~ ref('stg_config__identity_junk_values') ~ ")))"
    ).columns[0].values()[0]) }}
{%- endmacro %}


{#- The kept-per-key models the profiles' rows are made of. -#}
{% macro _profile_inputs(with_consents) -%}
    {%- set inputs = [ref('int_profiles_deduplicated')] -%}
    {%- if with_consents -%}
        {%- do inputs.append(ref('int_consent_current')) -%}
    {%- endif -%}
    {{ return(inputs) }}
{%- endmacro %}


{#- What the profiles' rows are made of tonight: `state`, the row count and newest `_built_at`
    of each input (a changed, new or re-keyed row gets a new `_built_at`, a removed one lowers
    the count: two aggregates, not hashing 1.4M records), and `watermark`, the newest
    `_built_at` of them all (a row rebuilt later has a later one: a dbt run's start). -#}
{% macro profiles_state(with_consents=false) -%}
    {%- if not execute -%}
        {{ return({'state': '', 'watermark': '-infinity'}) }}
    {%- endif -%}
    {%- set states = [] -%}
    {%- set maxima = [] -%}
    {%- for relation in _profile_inputs(with_consents) -%}
        {%- do states.append(
            "(select count(*) || ':' || coalesce(max(_built_at)::varchar, '') from "
            ~ relation ~ ")"
        ) -%}
        {%- do maxima.append("(select max(_built_at) from " ~ relation ~ ")") -%}
    {%- endfor -%}
    {%- set row = run_query(
        "select concat_ws('|', " ~ states | join(', ') ~ "), "
        ~ "coalesce(greatest(" ~ maxima | join(', ') ~ "), timestamp '-infinity')::varchar"
    ).rows[0] -%}
    {{ return({'state': row[0], 'watermark': row[1]}) }}
{%- endmacro %}


{#- How tonight's build treats the stored profile rows: `none`, `changed` or `all` (above). -#}
{% macro profiles_rows_mode(fingerprint, state) -%}
    {%- if not stored_origin_current('profiles', fingerprint) -%}
        {{ return('all') }}
    {%- endif -%}
    {%- set stored_state = run_query(
        "select arg_max(_profiles_state, _built_at) from " ~ this
    ).columns[0].values()[0] -%}
    {{ return('none' if stored_state == state else 'changed') }}
{%- endmacro %}


{#- The graph's last build saw the profile rows built up to this `_built_at`. -#}
{% macro stored_profiles_watermark() -%}
    {{ return(stored_watermark('_profiles_watermark')) }}
{%- endmacro %}


{#- True on an incremental build whose stored rows of `origin` carry `fingerprint`. -#}
{% macro stored_origin_current(origin, fingerprint) -%}
    {%- if execute and is_incremental() and _has_graph_bookkeeping() -%}
        {{ return(run_query(
            "select coalesce(bool_and(_inputs_fingerprint = '" ~ fingerprint ~ "'), false) from "
            ~ this ~ " where _origin = '" ~ origin ~ "'"
        ).columns[0].values()[0]) }}
    {%- endif -%}
    {{ return(false) }}
{%- endmacro %}


{#- A table written before the profiles' rows were kept per record lacks `_profiles_state`: its
    rows are all deleted, and the changed SQL makes the run a full refresh. -#}
{% macro _has_graph_bookkeeping() -%}
    {{ return('_profiles_state' in adapter.get_columns_in_relation(this) | map(attribute='name') | list) }}
{%- endmacro %}


{#- A profile record's node key. -#}
{% macro _record_node_key(rows) -%}
    {{ identity_node_key("'record_id'", rows ~ '.source_system', rows ~ '.record_id') }}
{%- endmacro %}


{#- The pre-hook: on an incremental build, delete the stored rows of each origin that another
    fingerprint wrote (every row of a table without `_profiles_state`) and, when
    the profiles changed since the graph's last build, the rows of the records rebuilt or gone
    since (`table`: 'nodes' or 'edges'). -#}
{% macro delete_unless_fingerprint(table) -%}
    {%- if is_incremental() and _has_graph_bookkeeping() -%}
        {%- set with_consents = table == 'nodes' -%}
        {%- set profiles_fingerprint = identity_graph_fingerprint('profiles') -%}
        {%- set profiles = profiles_state(with_consents) -%}
        {%- set mode = profiles_rows_mode(profiles_fingerprint, profiles.state) -%}
        {%- set watermark = stored_profiles_watermark() if mode == 'changed' else none -%}
        {%- set records = ref('int_profiles_deduplicated') %}
        delete from {{ this }}
        where _inputs_fingerprint is distinct from case _origin
            when 'events' then '{{ identity_graph_fingerprint('events') }}'
            else '{{ profiles_fingerprint }}'
        end
        {%- if mode == 'changed' and table == 'edges' %};
        -- the links of a record rebuilt since the last build or gone (its node is node_key_a)
        delete from {{ this }}
        where _origin = 'profiles'
            and (
                node_key_a in (
                    select {{ _record_node_key('records') }} from {{ records }} as records
                    where records._built_at > timestamp '{{ watermark }}'
                )
                or node_key_a not in (
                    select {{ _record_node_key('records') }} from {{ records }} as records
                    where records.record_id is not null
                )
            )
        {%- elif mode == 'changed' %};
        -- the nodes no record or consent names any more (a rebuilt record's new identifiers
        -- are added by the build)
        delete from {{ this }}
        where _origin = 'profiles'
            and node_key not in (
                {{ profile_node_keys(records, ref('int_consent_current')) }}
            )
        {%- endif %}
    {%- elif is_incremental() -%}
        delete from {{ this }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}


{#- Every node key the profiles and consents name. -#}
{% macro profile_node_keys(records, consents) -%}
    select {{ _record_node_key('records') }} from {{ records }} as records
    where records.record_id is not null
    union all
    select {{ identity_node_key("'user_id'", 'null', 'user_id') }} from {{ records }}
    where user_id is not null
    union all
    select {{ identity_node_key("'email_token'", 'null', 'email_token') }} from {{ records }}
    where email_token is not null
    union all
    select {{ identity_node_key("'phone_token'", 'null', 'phone_token') }} from {{ records }}
    where phone_token is not null
    union all
    select {{ identity_node_key("'user_id'", 'null', 'subject_id') }} from {{ consents }}
    where subject_type = 'user_id'
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
    (`events`: the model's CTE of every event), the profiles it saw and the build. -#}
{% macro identity_graph_bookkeeping(rows, events_fingerprint, profiles_fingerprint, profiles) -%}
        case {{ rows }}._origin
            when 'events' then '{{ events_fingerprint }}'
            else '{{ profiles_fingerprint }}'
        end as _inputs_fingerprint,
        (select max(_deduplicated_at) from events) as _events_watermark,
        '{{ profiles.state }}' as _profiles_state,
        timestamp '{{ profiles.watermark }}' as _profiles_watermark,
        {{ _built_at() }} as _built_at
{%- endmacro %}
