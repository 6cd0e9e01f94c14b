{#-
    Typed values from a file source's raw text as received: raw keeps what the file held, staging
    converts it with the util.* SQL functions (plugins/crm_knowledge/warehouse/sql/00_functions.sql, twins of
    crm_knowledge.normalize.values). A value that does not convert is NULL here, the record is kept, and
    ingest/field_issues.py has recorded it in audit.field_issues with the same functions.
-#}

{#- A date in the source's calendar and format: the version's batch convention (latest_loaded_versions with
    as_received=true puts `_date_calendar` and `_date_format` in scope). -#}
{% macro source_date(column) -%}
    util.parse_date({{ column }}, _date_calendar, _date_format)
{%- endmacro %}
