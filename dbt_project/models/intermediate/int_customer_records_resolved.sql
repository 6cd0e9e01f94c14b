{{
    affected_customers_config(
        indexes=[
            {'columns': ['customer_id']},
            {'columns': ['source_system', 'source_record_id'], 'unique': true},
        ],
        changes=record_changes(),
    )
}}

-- Every resolved source record in its canonical shape (int_customer_records_unioned) with the customer
-- identity resolution gave it (stg_identity__record_clusters): where a record meets its customer, read by
-- survivorship (int_customer_attributes_ranked), the pii vault (pii_source_identities) and
-- int_customer_sources_aggregated.
-- Incremental: a daily run recomputes only the customers whose records changed (record_changes(),
-- macros/affected_customers.sql).

with

customer_records as (

    select * from {{ ref('int_customer_records_unioned') }}

),

record_clusters as (

    select * from {{ ref('stg_identity__record_clusters') }}
    {{ only_affected_customers(changes=record_changes()) }}

),

final as (

    select
        record_clusters.customer_id,
        customer_records.*
    from customer_records
    inner join record_clusters
        on {{ same_source_record('customer_records', 'record_clusters') }}

)

select * from final
