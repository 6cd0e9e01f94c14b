-- Records the orders database no longer holds: keys whose latest loaded version marks a deletion at the source
-- (soft-delete column or key reconciliation; ingest/orders_db.py). Staging leaves them out already; the
-- incremental marts facts read this to drop the rows they still hold (their post-hooks).

with

customers as (

    {{ keys_deleted_at_source(source('orders', 'customers'), 'customer_id') }}

),

products as (

    {{ keys_deleted_at_source(source('orders', 'products'), 'product_id') }}

),

orders as (

    {{ keys_deleted_at_source(source('orders', 'orders'), 'order_id') }}

),

order_items as (

    {{ keys_deleted_at_source(source('orders', 'order_items'), 'order_item_id') }}

),

unioned as (

    select
        'customers' as entity,
        cast(customer_id as text) as record_key,
        deleted_at,
        loaded_at
    from customers
    union all
    select
        'products' as entity,
        cast(product_id as text) as record_key,
        deleted_at,
        loaded_at
    from products
    union all
    select
        'orders' as entity,
        cast(order_id as text) as record_key,
        deleted_at,
        loaded_at
    from orders
    union all
    select
        'order_items' as entity,
        cast(order_item_id as text) as record_key,
        deleted_at,
        loaded_at
    from order_items

),

final as (

    select
        entity,
        record_key,
        deleted_at,
        loaded_at
    from unioned

)

select * from final
