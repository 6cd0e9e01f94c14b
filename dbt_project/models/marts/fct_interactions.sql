{{ incremental_fact_config('interaction_id') }}

-- Contact-centre interactions. Free-text notes are not carried here (they may name people); their
-- redacted form is a knowledge item in customer_knowledge.
-- Incremental (macros/incremental_facts.sql): an interaction is re-written when a version of it reached
-- staging since the last run, when its customer was re-attributed, or when it lost its customer.

with

interactions as (

    select * from {{ ref('int_interactions_classified') }}

),

final as (

    select
        interaction_id,
        customer_id,
        channel,
        topic,
        outcome,
        agent_id,
        knowledge_kind,
        is_complaint,
        is_resolved,
        occurred_at,
        occurred_date,
        {{ incremental_fact_columns() }}
    from interactions
    {{ incremental_fact_filter('interaction_id') }}

)

select * from final
