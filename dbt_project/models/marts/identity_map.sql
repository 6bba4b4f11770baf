with

identity_assignments as (
    select * from {{ source('ml', 'identity_assignments') }}
),

erased_identifiers as (
    select * from {{ ref('int_erased_identifiers') }}
),

typed as (
    select
        cast(identifier_type as varchar) as identifier_type,
        cast(identifier as varchar) as identifier,
        cast(nullif(source_system, '') as varchar) as source_system,
        cast(person_id as varchar) as person_id,
        cast(method as varchar) as method,
        cast(match_probability as double) as match_probability
    from identity_assignments
),

retained as (
    -- defensive: an identifier erased since the identity step ran never comes back
    select typed.*
    from typed
    left join erased_identifiers
        on typed.identifier_type = erased_identifiers.identifier_type
        and typed.identifier = erased_identifiers.identifier
        and coalesce(typed.source_system, '') = coalesce(erased_identifiers.source_system, '')
    where erased_identifiers.identifier is null
)

select * from retained
