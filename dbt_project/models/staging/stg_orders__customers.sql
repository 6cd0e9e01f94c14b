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
        {{ staging_times() }}

    {{ current_versions(deleted_at_source=true) }}

)

select * from final
