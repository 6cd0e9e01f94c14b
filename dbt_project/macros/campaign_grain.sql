{#-
    The grain every campaign measurement is kept at: a campaign (its destination, audience and delivery date)
    and a response window. campaign_results adds the arm, campaign_lift the metric. One list, so the two models
    group, join and select the same columns in the same order.
-#}
{% macro campaign_grain() -%}
    {%- for column in ['campaign_id', 'destination', 'audience', 'campaign_date', 'window_days'] %}
        {{ column }}{{ ',' if not loop.last }}
    {%- endfor %}
{%- endmacro %}

{#- The days of a campaign's response window of `window_days` observed by the as-of date (a campaign is
    measured from the day after its delivery on `campaign_date`): fct_campaign_responses keeps it per window,
    customer_360 computes it at read time for the customer's last campaign. -#}
{% macro campaign_observed_days(window_days, campaign_date) -%}
    least({{ window_days }}, {{ as_of_date() }} - {{ campaign_date }})
{%- endmacro %}

{#- The start (UTC) of the day after the date expression `day`: a campaign delivered on a day counts responses
    from the next day's start, and its window observed so far ends at the start of the day after its last
    observed day. -#}
{% macro start_of_day_after(day) -%}
    cast({{ day }} + 1 as timestamp) at time zone 'UTC'
{%- endmacro %}
