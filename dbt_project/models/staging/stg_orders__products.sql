{{
    config(
        materialized='incremental',
        unique_key='product_id',
        incremental_strategy='delete+insert',
        on_schema_change='sync_all_columns',
        indexes=[
            {'columns': ['product_id'], 'unique': true},
            {'columns': ['loaded_at']},
        ],
        post_hook=[
            "{{ delete_keys_without_loaded_versions(source('orders', 'products'), [['product_id', 'product_id']]) }}",
            "{{ delete_keys_deleted_at_source(source('orders', 'products'), 'product_id', 'product_id') }}",
        ],
    )
}}

-- Small, but incremental like the other orders tables: a rebuilt products table would give every
-- product a new staged_at, and with it re-read every order line in fct_order_items.

with

source as (

    {{ loaded_versions_of_touched_keys(source('orders', 'products'), ['product_id']) }}

),

latest_versions as (

    select
        *,
        row_number() over (
            partition by product_id
            order by updated_at desc nulls last, _loaded_at desc, _row_number desc
        ) as version_number
    from source
    where product_id is not null

),

final as (

    select
        -- ids
        product_id,
        nullif(upper(btrim(sku)), '') as sku,

        -- product
        {{ clean_text('name') }} as product_name,
        coalesce(nullif(lower(btrim(category)), ''), 'uncategorised') as category,
        unit_price,

        -- timestamps
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
