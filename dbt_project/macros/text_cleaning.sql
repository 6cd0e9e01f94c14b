{#- Display form of a free-text field: Persian letters/digits unified, whitespace trimmed, blank -> null. -#}
{% macro clean_text(column) -%}
    nullif(btrim(util.normalize_persian({{ column }})), '')
{%- endmacro %}

{#- Postcode as digits only (Persian/Arabic digits converted), blank -> null. -#}
{% macro clean_postcode(column) -%}
    nullif(regexp_replace(util.ascii_digits({{ column }}), '[^0-9]', '', 'g'), '')
{%- endmacro %}

{#- Gender onto the contract's f / m / x; anything unrecognised -> null. -#}
{% macro clean_gender(column) -%}
    case
        when lower(btrim({{ column }})) in ('f', 'female', 'woman', 'w', 'زن', 'خانم') then 'f'
        when lower(btrim({{ column }})) in ('m', 'male', 'man', 'مرد', 'آقا') then 'm'
        when lower(btrim({{ column }})) in ('x', 'other', 'diverse', 'd', 'سایر') then 'x'
    end
{%- endmacro %}

{#-
    Free text with direct identifiers masked, for marts that must hold no PII: e-mail addresses become
    [email] and runs of 7+ digits (phone numbers, national ids, card numbers; separators allowed) become
    [number]. Persian/Arabic digits are converted first so they are caught too.
-#}
{% macro redact_identifiers(column) -%}
    regexp_replace(
        regexp_replace(
            util.ascii_digits({{ column }}),
            '[^[:space:]@<>()]+@[^[:space:]@<>()]+', '[email]', 'g'
        ),
        '\+?[0-9](?:[ .()/-]*[0-9]){6,}', '[number]', 'g'
    )
{%- endmacro %}
