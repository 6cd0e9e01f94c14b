{{
    config(
        indexes=[
            {'columns': ['customer_id'], 'unique': true},
        ],
    )
}}

-- The customers a daily run recomputes in the customer-level models that follow them (macros/
-- affected_customers.sql): those whose records, orders, order items, interactions, forms (consent and
-- erasure requests arrive as forms and contacts), deliveries or identity changed since the run
-- began (var dbt_tests_since, set by crm_knowledge.run_mode: the warehouse clock when the run began, or when
-- the earliest run since the last completed one began, so a failed run's changes are not missed). Each
-- probe is a filter on a run timestamp (no join but the forms' one to their records, no sort).
--   identity: a record new, changed or re-attributed (resolved_at; identity also re-stamps every record a
--             customer keeps when it loses one, split off or gone), and both ids of a merge (the retired
--             id is listed so its rows are deleted; it has no records any more, so none are inserted)
--   facts:    an order, order line or interaction (int_customer_facts_unioned) (re-)staged or (re-)attributed
--             (staged_at, customer_resolved_at), a form (re-)staged
--   exports:  a delivery made since the previous run (communicated_at)
--   as_of_day: orders dated on the as-of day (what an as-of date one day later changes in the followed models)
--   as_of_campaigns: treated customers who responded to a campaign whose response window the as-of date still
--             moves (macros/affected_customers.sql campaign_customers_listed; only the models that read campaign
--             responses follow them, activity_changes())
-- Scores are not listed: they are written after this list is built; the models built after scoring
-- (customer_segments, int_customer_360_assembled) follow int_customers_affected_scored, which adds them.
-- Without the var (the weekly full run, a hand-run build) everything counts as changed: every customer id
-- any record, fact, delivery or merge names is listed.
-- Erased customers need no entry: the erasure purge deletes their rows from every layer itself.

with

-- not materialized: is_retired below probes it per listed customer, which must reach the index on
-- identity.record_clusters (customer_id); a materialised CTE (it is read three times) has no index, and with
-- every customer listed (the weekly run) the probes scanned it whole for each: hours at 100k customers
record_clusters as not materialized (

    select * from {{ ref('stg_identity__record_clusters') }}

),

customer_id_merges as (

    select * from {{ ref('stg_identity__customer_id_merges') }}

),

customer_facts as (

    select * from {{ ref('int_customer_facts_unioned') }}

),

-- not materialized: the campaign responders below probe its index on customer_id per assignment
orders as not materialized (

    select * from {{ ref('int_orders_unioned') }}

),

communications as (

    select * from {{ ref('stg_scoring__communications') }}

),

campaign_assignments as (

    select * from {{ ref('stg_scoring__campaign_assignments') }}

),

-- Deliveries are made between warehouse runs (the export DAG), before this run began: they count from the
-- previous run's identity resolution on (the latest resolved_at before this run; an earlier bound lists
-- more customers, never fewer).
previous_run as (

    select coalesce(max(resolved_at), cast('-infinity' as timestamptz)) as resolved_at
    from record_clusters
    where resolved_at < {{ changed_since_timestamp() }}

),

changes as (

    select
        customer_id,
        'identity' as change
    from record_clusters
    where resolved_at >= {{ changed_since_timestamp() }}
    union all
    select
        old_customer_id as customer_id,
        'merged_away' as change
    from customer_id_merges
    where merged_at >= {{ changed_since_timestamp() }}
    union all
    select
        new_customer_id as customer_id,
        'merged_into' as change
    from customer_id_merges
    where merged_at >= {{ changed_since_timestamp() }}
    union all
    -- a form's customer_resolved_at is its own record's resolved_at (listed by identity above), computed by a
    -- join of every form to its cluster: not probed, so the forms are filtered on staged_at before that join
    select
        customer_id,
        case when fact = 'order_items' then 'orders' else fact end as change
    from customer_facts
    where
        staged_at >= {{ changed_since_timestamp() }}
        or (fact <> 'forms' and customer_resolved_at >= {{ changed_since_timestamp() }})
    union all
    select
        customer_id,
        'deliveries' as change
    from communications
    where communicated_at >= (select previous_run.resolved_at from previous_run)
    union all
    -- the as-of date moves what is known of them: orders of the as-of day enter the customer's history, and
    -- a response to a campaign whose window is still open (or closing today) is measured over one more day
    select
        customer_id,
        'as_of_day' as change
    from orders
    where
        customer_id is not null
        and ordered_at >= {{ as_of_cutoff() }} - interval '1 day'
        and ordered_at < {{ as_of_cutoff() }}
    union all
    {{ campaign_customers_listed(open_since=as_of_date() ~ ' - ' ~ (var('campaign_response_windows') | max)) }}

),

listed as (

    {{ customers_with_changes() }}

),

final as (

    select
        listed.customer_id,
        listed.changes,
        not exists (
            select 1 from record_clusters
            where record_clusters.customer_id = listed.customer_id
        ) as is_retired
    from listed

)

select * from final
