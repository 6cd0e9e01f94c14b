{{ incremental_fact_config('interaction_id') }}

-- depends_on: {{ ref('stg_identity__unresolved') }}

-- Contact-centre interactions attributed to customers and filed as knowledge (kind and flow by topic,
-- seed contact_topic_knowledge_kinds; unlisted topics are a customer need).
-- Incremental (macros/incremental_facts.sql, rows_reattributed): an interaction is re-written when it was
-- staged since the newest row held here, or identity (re-)attributed its record since then, or its record left
-- identity. A change of the topic seed reaches the rows already held at the weekly full refresh.

with

changed_interactions as (

    {%- if is_incremental() %}
        select changed.interaction_id
        from {{ ref('stg_contacts__interactions') }} as changed
        where changed.staged_at > {{ newest_in_this('staged_at') }}
        union
        {{ rows_reattributed('existing.interaction_id', 'contacts', 'interaction_id') }}
    {%- else %}
        {{ no_rows({'interaction_id': 'text'}) }}
    {%- endif %}

),

interactions as (

    select * from {{ ref('stg_contacts__interactions') }}
    {%- if is_incremental() %}
        where interaction_id in (select changed_interactions.interaction_id from changed_interactions)
    {%- endif %}

),

record_clusters as (

    select * from {{ ref('stg_identity__record_clusters') }}

),

topic_kinds as (

    select * from {{ ref('contact_topic_knowledge_kinds') }}

),

final as (

    select
        interactions.interaction_id,
        record_clusters.customer_id,
        interactions.channel,
        interactions.topic,
        interactions.outcome,
        interactions.agent_id,
        interactions.notes,
        coalesce(topic_kinds.kind, 'need') as knowledge_kind,
        coalesce(topic_kinds.flow, 'about') as knowledge_flow,
        coalesce(topic_kinds.kind = 'complaint', false) as is_complaint,
        interactions.outcome in ('resolved', 'sale') as is_resolved,
        interactions.occurred_at,
        cast(interactions.occurred_at at time zone 'UTC' as date) as occurred_date,
        interactions.loaded_at,
        interactions.staged_at,
        record_clusters.resolved_at as customer_resolved_at
    from interactions
    left join record_clusters
        on {{ same_source_record('interactions', 'record_clusters') }}
    left join topic_kinds
        on interactions.topic = lower(btrim(topic_kinds.topic))

)

select * from final
