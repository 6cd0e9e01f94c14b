-- Contact-centre interactions. Free-text notes are not carried here (they may name people); their
-- redacted form is a knowledge item in customer_knowledge.

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
        occurred_date
    from interactions

)

select * from final
