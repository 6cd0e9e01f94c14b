-- A view: it must show the arms the delivery task recorded moments ago.
{{ config(materialized="view") }}

with

source as (

    select * from {{ source('scoring', 'campaign_assignments') }}

),

final as (

    select
        -- ids
        concat_ws(':', destination, audience, campaign_date) as campaign_id,
        customer_id,
        export_id,

        -- campaign
        destination,
        audience,
        campaign_date,

        -- assignment
        arm,
        holdout_share,
        assignment_bucket,
        churn_probability as predicted_churn_probability,
        model_run_ids,

        -- timestamps
        assigned_at

    from source

)

select * from final
