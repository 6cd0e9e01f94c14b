{#-
    Welch's t-interval for a difference of two means (campaign_lift; method in docs/campaigns.md).

    welch_df: the Welch-Satterthwaite degrees of freedom from the two arms' sample variances and sizes;
    null when both variances are zero or an arm has fewer than 2 customers.

    t_critical_975: the 97.5% quantile of Student's t with `df` degrees of freedom (a two-sided 95% interval),
    by the Cornish-Fisher expansion of Abramowitz & Stegun 26.7.5 around the normal quantile z = 1.959964.
    Postgres has no t quantile function; the expansion is within 0.001 of the exact value from 5 degrees of
    freedom up (tests/unit/test_campaign_statistics.py checks it against scipy), and campaign_lift reports no
    interval below campaign_min_customers_per_arm customers per arm anyway.
-#}
{% macro welch_df(var_a, n_a, var_b, n_b) -%}
    (
        case
            when {{ n_a }} >= 2 and {{ n_b }} >= 2 and ({{ var_a }} > 0 or {{ var_b }} > 0)
                then
                    power({{ var_a }} / {{ n_a }} + {{ var_b }} / {{ n_b }}, 2)
                    / (
                        power({{ var_a }} / {{ n_a }}, 2) / ({{ n_a }} - 1)
                        + power({{ var_b }} / {{ n_b }}, 2) / ({{ n_b }} - 1)
                    )
        end
    )
{%- endmacro %}

{% macro t_critical_975(df) -%}
    {%- set z = 1.959963984540054 -%}
    {%- set g1 = (z ** 3 + z) / 4 -%}
    {%- set g2 = (5 * z ** 5 + 16 * z ** 3 + 3 * z) / 96 -%}
    {%- set g3 = (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / 384 -%}
    {%- set g4 = (79 * z ** 9 + 776 * z ** 7 + 1482 * z ** 5 - 1920 * z ** 3 - 945 * z) / 92160 -%}
    (
        {{ z }} + {{ g1 }} / ({{ df }}) + {{ g2 }} / power({{ df }}, 2)
        + {{ g3 }} / power({{ df }}, 3) + {{ g4 }} / power({{ df }}, 4)
    )
{%- endmacro %}
