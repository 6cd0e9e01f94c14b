"""The next best action for one customer: explicit, ordered rules over the profile, first match wins.

Every rule is written out below (and in docs/serve.md) so an agent, a supervisor or an auditor can say why
the card shows what it shows. Two principles hold over all of them:

* **service before sales**: an open complaint is resolved before anything is offered;
* **consent before offers**: without marketing consent no rule proposes an offer (the service variant of
  the rule applies instead), and for a customer who opted out of profiling no rule looks at a score,
  segment or value tier (only facts: complaints, relationship stage from their own activity).

Thresholds are constants here, not settings: changing a rule is a reviewed code change, like the rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: churn probability at or above which a customer counts as at risk
AT_RISK_CHURN = 0.5
#: value tiers that count as high value
HIGH_VALUE_TIERS = ("platinum", "gold")


@dataclass(frozen=True)
class Action:
    """What the card shows on top: an id, the words in English and Persian, and why."""

    action: str
    title_en: str
    title_fa: str
    rule: str
    reason: str
    is_offer: bool

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "title_en": self.title_en, "title_fa": self.title_fa, "rule": self.rule,
                "reason": self.reason, "is_offer": self.is_offer}


@dataclass(frozen=True)
class Facts:
    """What the rules read (from marts.customer_360 through serve.profile)."""

    open_complaints: int
    relationship_stage: str | None
    has_marketing_consent: bool
    has_profiling_opt_out: bool
    churn_probability: float | None
    value_tier: str | None

    @property
    def at_risk(self) -> bool:
        return (not self.has_profiling_opt_out and self.churn_probability is not None
                and self.churn_probability >= AT_RISK_CHURN)

    @property
    def high_value(self) -> bool:
        return not self.has_profiling_opt_out and self.value_tier in HIGH_VALUE_TIERS


Rule = tuple[str, Callable[[Facts], bool], Action, Action | None]


def _a(action: str, en: str, fa: str, rule: str, reason: str, offer: bool = False) -> Action:
    return Action(action, en, fa, rule, reason, offer)


#: (rule id, condition, action with marketing consent, action without it (None: the same)). In order.
RULES: tuple[Rule, ...] = (
    ("R1_complaint_high_value_at_risk", lambda f: f.open_complaints > 0 and f.at_risk and f.high_value,
     _a("resolve_complaint_priority", "Resolve the open complaint first: valuable customer at risk",
        "ابتدا شکایت باز را حل کنید: مشتری ارزشمند در خطر ریزش", "R1_complaint_high_value_at_risk",
        "open complaint, high value tier and churn risk: fix the complaint now, offer nothing"), None),
    ("R2_open_complaint", lambda f: f.open_complaints > 0,
     _a("resolve_complaint", "Resolve the open complaint first", "ابتدا شکایت باز را پیگیری و حل کنید",
        "R2_open_complaint", "an open complaint comes before any offer"), None),
    ("R3_high_value_at_risk", lambda f: f.at_risk and f.high_value,
     _a("retention_offer", "Retention offer: valuable customer at risk", "پیشنهاد حفظ مشتری: مشتری ارزشمند در خطر",
        "R3_high_value_at_risk", "high value tier and churn risk, marketing consent given", offer=True),
     _a("retention_check_in", "Service check-in: ask how we can help (no offer)",
        "تماس پیگیری خدمات: بپرسید چه کمکی از ما برمی‌آید (بدون پیشنهاد)", "R3_high_value_at_risk",
        "high value tier and churn risk, but no marketing consent: no offer")),
    ("R4_at_risk", lambda f: f.at_risk or f.relationship_stage == "eroding",
     _a("win_back_offer", "Win-back offer", "پیشنهاد بازگشت مشتری", "R4_at_risk",
        "churn risk or an eroding relationship, marketing consent given", offer=True),
     _a("service_check_in", "Service check-in (no offer)", "تماس پیگیری خدمات (بدون پیشنهاد)", "R4_at_risk",
        "churn risk or an eroding relationship, but no marketing consent: no offer")),
    ("R5_lost", lambda f: f.relationship_stage == "lost",
     _a("reactivation_offer", "Reactivation offer", "پیشنهاد فعال‌سازی دوباره", "R5_lost",
        "no order and no contact for a long time, marketing consent given", offer=True),
     _a("update_contact_preferences", "Confirm contact preferences (no offer)",
        "تأیید ترجیحات تماس (بدون پیشنهاد)", "R5_lost", "lost relationship without marketing consent")),
    ("R6_new", lambda f: f.relationship_stage == "new",
     _a("welcome_offer", "Welcome: first-purchase offer", "خوش‌آمدگویی: پیشنهاد اولین خرید", "R6_new",
        "new customer, marketing consent given", offer=True),
     _a("welcome_call", "Welcome the customer (no offer)", "به مشتری خوش‌آمد بگویید (بدون پیشنهاد)", "R6_new",
        "new customer without marketing consent")),
    ("R7_committed_high_value", lambda f: f.high_value and f.relationship_stage == "committed",
     _a("loyalty_reward", "Loyalty reward", "پاداش وفاداری", "R7_committed_high_value",
        "committed, high value tier, marketing consent given", offer=True),
     _a("thank_you", "Thank the customer for their loyalty (no offer)", "از وفاداری مشتری تشکر کنید (بدون پیشنهاد)",
        "R7_committed_high_value", "committed, high value tier, no marketing consent")),
)

DEFAULT_WITH_CONSENT = _a("cross_sell", "Suggest a product from their favourite category",
                          "محصولی از دسته مورد علاقه مشتری پیشنهاد دهید", "R8_default",
                          "no rule above applies, marketing consent given", offer=True)
DEFAULT_WITHOUT_CONSENT = _a("listen_and_record", "Listen and record the customer's needs (no offer)",
                             "نیازهای مشتری را بشنوید و ثبت کنید (بدون پیشنهاد)", "R8_default",
                             "no rule above applies and no marketing consent: no offer")


def next_best_action(facts: Facts) -> Action:
    """The first rule whose condition holds; its consent variant when there is no marketing consent."""
    for _rule_id, condition, with_consent, without_consent in RULES:
        if condition(facts):
            if facts.has_marketing_consent or without_consent is None:
                return with_consent
            return without_consent
    return DEFAULT_WITH_CONSENT if facts.has_marketing_consent else DEFAULT_WITHOUT_CONSENT
