{{
    config(
        materialized='incremental',
        unique_key='order_id',
        incremental_strategy='delete+insert',
        on_schema_change='sync_all_columns',
        indexes=[
            {'columns': ['order_id'], 'unique': true},
            {'columns': ['customer_id']},
            {'columns': ['updated_at']},
        ],
    )
}}

-- Incremental on updated_at (with a lookback, var incremental_lookback_hours). An order is also re-read
-- when a version of it was loaded since the last run (loaded_at: late-arriving rows whose updated_at is
-- older than the watermark), and when identity resolution re-attributed its customer since the last run
-- (customer_resolved_at), so merged customers never keep stale ids.

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
        loaded_at,
        customer_resolved_at
    from orders

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
