{#-
    The people of int_events_identified's (user_id, anonymous_id) pairs, kept beside it.

    An event's person depends only on its pair, so each build compares the stored pairs'
    people with tonight's identity map and rewrites the events of the pairs whose person
    changed. Reading the pairs off the 17M stored events (a `distinct` over three text columns)
    took 4.1 s of every L night on session 47's machine; this table holds them (1.7M rows at L)
    and is read in 0.3 s.

    The model's post-hook keeps it, in the build's transaction:
    - a full build (`--full-refresh`, or the first build) writes it from the stored events;
    - an incremental build replaces the pairs of the rows it (re)wrote, which carry the
      build's `_identified_at`: every event of a pair gets the same person, so those rows give
      the pair's person.
    Nothing else writes events. A pair whose events all left (erasure, a re-delivered event
    with another user id) may stay here: its person changing then selects no event. The
    erasure step deletes the erased identifiers' rows from this table as from every other.
-#}

{% macro event_pairs_relation() -%}
    {%- do return(this.incorporate(path={'identifier': this.identifier ~ '_pairs'})) -%}
{%- endmacro %}


{#- The stored pairs' people, when the table is there and the build is incremental: none
    otherwise, and the model reads them off its stored rows. -#}
{% macro stored_event_pairs() -%}
    {%- if not execute or not is_incremental() -%}
        {%- do return(none) -%}
    {%- endif -%}
    {%- set pairs = event_pairs_relation() -%}
    {%- do return(adapter.get_relation(
        database=pairs.database, schema=pairs.schema, identifier=pairs.identifier
    )) -%}
{%- endmacro %}


{% macro keep_event_pairs() -%}
    {%- set pairs = event_pairs_relation() -%}
    {%- set existing = adapter.get_relation(
        database=pairs.database, schema=pairs.schema, identifier=pairs.identifier
    ) -%}
    {%- if should_full_refresh() or existing is none -%}
        create or replace table {{ pairs }} as
        select distinct user_id, anonymous_id, person_id
        from {{ this }}
    {%- else -%}
        create or replace temp table _pz_event_pairs_written as
        select distinct user_id, anonymous_id, person_id
        from {{ this }}
        where _identified_at = {{ _built_at() }};

        delete from {{ pairs }} as pairs
        where exists (
            select 1
            from _pz_event_pairs_written as written
            where written.user_id is not distinct from pairs.user_id
                and written.anonymous_id is not distinct from pairs.anonymous_id
        );

        insert into {{ pairs }} (user_id, anonymous_id, person_id)
        select user_id, anonymous_id, person_id from _pz_event_pairs_written;

        drop table _pz_event_pairs_written
    {%- endif -%}
{%- endmacro %}
