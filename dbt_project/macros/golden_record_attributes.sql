{#-
    The canonical attributes of the golden record, in column order: [name, the unioned customer record's
    column it comes from, its type in the golden record]. Survivorship ranks every record's values of them
    (int_customer_attributes_ranked, as text) and the pivot turns the surviving values back into columns
    (int_customer_attributes_pivoted); a new attribute is added here once.
-#}
{% macro golden_record_attributes() %}
    {{ return([
        ['first_name', 'first_name', 'text'],
        ['last_name', 'last_name', 'text'],
        ['full_name', 'full_name', 'text'],
        ['email', 'email', 'text'],
        ['phone', 'phone_e164', 'text'],
        ['national_id', 'national_id', 'text'],
        ['birth_date', 'birth_date', 'date'],
        ['gender', 'gender', 'text'],
        ['street', 'street', 'text'],
        ['city', 'city', 'text'],
        ['province', 'province', 'text'],
        ['postcode', 'postcode', 'text'],
        ['company', 'company', 'text'],
        ['business_type', 'business_type', 'text'],
    ]) }}
{% endmacro %}
