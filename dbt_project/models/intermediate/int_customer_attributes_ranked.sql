{{ affected_customers_config(indexes=[{'columns': ['customer_id', 'attribute_name']}], changes=record_changes()) }}

-- Survivorship: every non-null attribute value of every resolved source record, ranked within its
-- customer and attribute. Rank 1 survives into the golden record. Rules, in order:
--   1. most trusted source first (seed survivorship_source_trust; the most specific matching row wins),
--   2. then the most recently seen record,
--   3. then the most complete record (most canonical fields filled),
--   4. then source system and record id, so the choice is deterministic.
-- Incremental: a daily run ranks only the records of the customers whose records changed (record_changes(),
-- macros/affected_customers.sql); the weekly full run ranks every record.

with

resolved_records as (

    select * from {{ ref('int_customer_records_resolved') }}
    {{ only_affected_customers(changes=record_changes()) }}

),

source_trust as (

    select * from {{ ref('survivorship_source_trust') }}

),

source_systems as (

    select distinct source_system from resolved_records

),

attribute_names as (

    select attribute_name
    from
        (
            values
            {% for name, column, type in golden_record_attributes() -%}
                ('{{ name }}')
                {%- if not loop.last %},{% endif %}
            {% endfor %}
        ) as names (attribute_name)

),

trust_matched as (

    -- the trust of a source system for an attribute depends on the two alone: the best-matching seed row is
    -- chosen once per pair here (a few hundred rows), not once per record value (tens of millions at scale)
    select
        source_systems.source_system,
        attribute_names.attribute_name,
        source_trust.trust_rank,
        row_number() over (
            partition by source_systems.source_system, attribute_names.attribute_name
            order by
                (source_trust.attribute_name = '*'),
                (source_trust.source_system_pattern like '%\%%'),
                source_trust.trust_rank
        ) as trust_match_number
    from source_systems
    cross join attribute_names
    left join source_trust
        on
            source_systems.source_system like source_trust.source_system_pattern
            and source_trust.attribute_name in (attribute_names.attribute_name, '*')

),

source_attribute_trust as (

    select
        source_system,
        attribute_name,
        trust_rank
    from trust_matched
    where trust_match_number = 1

),

attribute_values as (

    select
        resolved_records.customer_id,
        resolved_records.source_system,
        resolved_records.source_record_id,
        resolved_records.last_seen_at as observed_at,
        resolved_records.completeness_score,
        attributes.attribute_name,
        attributes.attribute_value
    from resolved_records
    cross join
        lateral (
            values
            {% for name, column, type in golden_record_attributes() -%}
                ('{{ name }}', cast(resolved_records.{{ column }} as text))
                {%- if not loop.last %},{% endif %}
            {% endfor %}
        ) as attributes (attribute_name, attribute_value)
    where attributes.attribute_value is not null

),

ranked as (

    select
        attribute_values.customer_id,
        attribute_values.attribute_name,
        attribute_values.attribute_value,
        attribute_values.source_system,
        attribute_values.source_record_id,
        coalesce(source_attribute_trust.trust_rank, 999) as trust_rank,
        attribute_values.observed_at,
        attribute_values.completeness_score,
        row_number() over (
            partition by attribute_values.customer_id, attribute_values.attribute_name
            order by
                coalesce(source_attribute_trust.trust_rank, 999) asc,
                attribute_values.observed_at desc nulls last,
                attribute_values.completeness_score desc,
                attribute_values.source_system asc,
                attribute_values.source_record_id asc
        ) as survivorship_rank
    from attribute_values
    left join source_attribute_trust
        on
            attribute_values.source_system = source_attribute_trust.source_system
            and attribute_values.attribute_name = source_attribute_trust.attribute_name

),

final as (

    select
        *,
        survivorship_rank = 1 as is_surviving_value
    from ranked

)

select * from final
