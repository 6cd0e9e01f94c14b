{#- The record key, stated once: [staging column, raw expression] pairs (macros/incremental_staging.sql). -#}
{%- set record_key = [['orders_customer_id', 'customer_id']] -%}
{{ incremental_staging_config('orders', 'customers', record_key, deleted_at_source=true) }}

with

{{ latest_loaded_versions(source('orders', 'customers'), record_key, ['updated_at desc nulls last']) }},

final as (

    select
        -- ids
        customer_id as orders_customer_id,
        'orders' as source_system,
        cast(customer_id as text) as source_record_id,

        -- canonical customer fields
        {{ normalized_customer_fields(has_full_name=false, has_address_details=false) }},

        -- timestamps
        created_at,
        updated_at,
        _loaded_at as loaded_at,
        now() as staged_at

    from latest_versions
    where
        version_number = 1
        -- deleted at the source (soft-delete column or key reconciliation): no longer counts
        and _deleted_at_source is not true

)

select * from final
