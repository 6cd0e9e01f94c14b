{%- set record_key = [['order_id', 'order_id']] -%}
{{ incremental_staging_config('orders', 'orders', record_key, deleted_at_source=true) }}

with

{{ latest_loaded_versions(source('orders', 'orders'), record_key, ['updated_at desc nulls last']) }},

final as (

    select
        -- ids
        order_id,
        customer_id as orders_customer_id,

        -- order
        lower(btrim(status)) as status,
        lower(btrim(channel)) as channel,
        total_amount,
        coalesce(upper(btrim(currency)), 'IRR') as currency,

        -- timestamps
        ordered_at,
        updated_at,
        {{ staging_times() }}

    {{ current_versions(deleted_at_source=true) }}

)

select * from final
