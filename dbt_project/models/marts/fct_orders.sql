{{
    incremental_fact_config(
        'order_id',
        more_indexes=[{'columns': ['updated_at']}],
        post_hook=["{{ delete_facts_deleted_at_source([['order_id', 'orders']]) }}"],
    )
}}

-- depends_on: {{ ref('stg_orders__deletions') }}

-- Incremental (macros/incremental_facts.sql): an order is re-written when one of its inputs (the order,
-- one of its lines, the shop export) reached staging since the last run (staged_at: new versions,
-- late-arriving versions with an old updated_at, batches released by the quality gate), when identity
-- resolution re-attributed its customer (customer_resolved_at), or when its customer became unresolved.

with

orders as (

    select * from {{ ref('int_orders_unioned') }}

),

final as (

    select
        order_id,
        customer_id,
        order_source,
        shop,
        source_order_id,
        status,
        channel,
        is_revenue_order,
        total_amount,
        currency,
        item_quantity,
        ordered_at,
        order_date,
        updated_at,
        {{ incremental_fact_columns() }}
    from orders
    {{ incremental_fact_filter('order_id') }}

)

select * from final
