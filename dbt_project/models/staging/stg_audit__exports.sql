-- A view: it must show what the identity / scoring / delivery tasks wrote moments ago.
{{ config(materialized="view") }}

with

source as (

    select * from {{ source('audit', 'exports') }}

),

final as (

    select
        -- ids
        export_id,

        -- delivery
        destination,
        kind as export_kind,
        status,
        rows_added,
        rows_changed,
        rows_removed,

        -- dates
        as_of_date,
        started_at,
        finished_at

    from source

)

select * from final
