{{
    config(
        materialized='incremental',
        unique_key='order_item_id',
        incremental_strategy='delete+insert',
        on_schema_change='sync_all_columns',
        indexes=[
            {'columns': ['order_item_id'], 'unique': true},
            {'columns': ['order_id']},
            {'columns': ['customer_id']},
        ],
    )
}}

-- Incremental like fct_orders: on updated_at (the line's, its order's or its product's), plus every line
-- loaded since the last run and every line whose customer identity resolution re-attributed.

with

order_items as (

    select * from {{ ref('int_order_items_unioned') }}

),

final as (

    select
        order_item_id,
        order_id,
        customer_id,
        product_id,
        sku,
        category,
        quantity,
        unit_price,
        line_amount,
        is_line_amount_estimated,
        is_revenue_order,
        ordered_at,
        order_date,
        updated_at,
        loaded_at,
        customer_resolved_at
    from order_items

    {% if is_incremental() %}
        where
            updated_at >= (
                select
                    coalesce(max(existing.updated_at), '-infinity')
                    - interval '{{ var("incremental_lookback_hours") }} hours'
                from {{ this }} as existing
            )
            or loaded_at > (
                select coalesce(max(existing.loaded_at), '-infinity')
                from {{ this }} as existing
            )
            or customer_resolved_at > (
                select coalesce(max(existing.customer_resolved_at), '-infinity')
                from {{ this }} as existing
            )
    {% endif %}

)

select * from final
