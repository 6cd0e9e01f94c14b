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
