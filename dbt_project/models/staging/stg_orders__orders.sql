{#- The record key, stated once: [staging column, raw expression] pairs (macros/incremental_staging.sql). -#}
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
        _loaded_at as loaded_at,
        now() as staged_at

    from latest_versions
    where
        version_number = 1
        -- deleted at the source (soft-delete column or key reconciliation): no longer counts
        and _deleted_at_source is not true

)

select * from final
