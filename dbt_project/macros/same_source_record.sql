{#- The join condition of two relations on the record key (source_system, source_record_id): how a source
    record meets its cluster in stg_identity__record_clusters (its customer_id) or its canonical row in
    int_customer_records_unioned. `on {{ same_source_record('form_submissions', 'record_clusters') }}`. -#}
{% macro same_source_record(left, right) -%}
    {{ left }}.source_system = {{ right }}.source_system
    and {{ left }}.source_record_id = {{ right }}.source_record_id
{%- endmacro %}
