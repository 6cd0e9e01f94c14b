-- A view: it must show what the identity / scoring / delivery tasks wrote moments ago.
{{ config(materialized="view", tags=["identity_output"]) }}

with

source as (

    select * from {{ source('identity', 'match_pairs') }}

),

final as (

    select
        -- ids
        md5(
            concat_ws(
                '|', source_system_l, source_record_id_l, source_system_r, source_record_id_r
            )
        ) as match_pair_id,
        source_system_l,
        source_record_id_l,
        source_system_r,
        source_record_id_r,

        -- match
        match_rule,
        cast(match_probability as double precision) as match_probability,
        cast(match_weight as double precision) as match_weight,
        explanation,

        -- timestamps
        resolved_at

    from source

)

select * from final
