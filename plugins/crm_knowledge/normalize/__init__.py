"""Normalisation of customer identifiers and Persian text, shared by ingestion, staging and identity.

Each function has one job and a stable contract (documented on the function); the SQL twins in
``warehouse/sql/00_functions.sql`` implement the same rules for dbt staging models.
"""

from __future__ import annotations

from crm_knowledge.normalize.dates import gregorian_to_jalali, jalali_to_gregorian, parse_date
from crm_knowledge.normalize.email import normalize_email
from crm_knowledge.normalize.names import normalize_name, romanize
from crm_knowledge.normalize.national_id import is_valid_national_id, normalize_national_id
from crm_knowledge.normalize.persian import normalize_persian, to_ascii_digits
from crm_knowledge.normalize.phone import normalize_phone

__all__ = [
    "gregorian_to_jalali",
    "is_valid_national_id",
    "jalali_to_gregorian",
    "normalize_email",
    "normalize_name",
    "normalize_national_id",
    "normalize_persian",
    "normalize_phone",
    "parse_date",
    "romanize",
    "to_ascii_digits",
]
