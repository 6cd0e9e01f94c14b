{{
    incremental_fact_config(
        'order_item_id',
        more_indexes=[{'columns': ['order_id']}],
        post_hook=[
            "{{ delete_facts_deleted_at_source([['order_item_id', 'order_items'], ['order_id', 'orders']]) }}",
        ],
    )
}}

-- depends_on: {{ ref('stg_orders__deletions') }}

-- Incremental like fct_orders (macros/incremental_facts.sql): a line is re-written when the line, its
-- order or its product (for a shop export: any product of its order, which shares the amount) reached
-- staging since the last run, when its customer was re-attributed, or when it lost its customer.

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
        {{ incremental_fact_columns() }}
    from order_items
    {{ incremental_fact_filter('order_item_id') }}

)

select * from final
