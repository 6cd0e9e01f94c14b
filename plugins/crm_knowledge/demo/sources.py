"""Source record builders and writers: forms, contact centre, sibling units, kiosk order export.

Builders turn person indices + time windows into rows (lists of values) plus ground-truth rows; the
caller streams them to the open writers in `Outputs`. Everything random comes from the numpy Generator
passed in, so a chunk's output depends only on (seed, chunk).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crm_knowledge.demo import names_fa as N
from crm_knowledge.demo.messiness import (
    EPOCH,
    NO_DAY,
    arabic_letters,
    cp1256_safe,
    jalali_str,
    to_persian_digits,
)
from crm_knowledge.demo.people import People, person_id
from crm_knowledge.demo.render import Fresh, Profile, render
from crm_knowledge.privacy.file_modes import open_private

TEHRAN_OFFSET = 3 * 3600 + 1800
DAY = 86400

# --- source profiles ----------------------------------------------------------------------------------
ORDERS_PROFILE = Profile(latin=0.15, arabic=0.1, typo=0.02, swap=0.01, email=0.88, phone=0.96, nid=0.55,
                         dob=0.8, gender=0.95, street=0.9, city=0.97, postcode=0.8, weak=0.015,
                         phone_formats=(0.1, 0.05, 0.6, 0.1, 0.05, 0.05, 0.05))
FORMS_PROFILE = Profile(latin=0.35, arabic=0.15, typo=0.035, swap=0.02, nick=0.05, email=0.9, phone=0.8,
                        nid=0.25, dob=0.55, gender=0.6, street=0.35, city=0.6, postcode=0.35, weak=0.025,
                        email_messy=0.18)
CONTACTS_PROFILE = Profile(latin=0.45, arabic=0.12, typo=0.04, swap=0.03, nick=0.08, email=0.6, phone=0.9,
                           nid=0.0, dob=0.0, gender=0.0, street=0.0, city=0.0, postcode=0.0, can_weak=False,
                           alt=0.6)
INSURANCE_PROFILE = Profile(latin=0.85, arabic=0.05, typo=0.03, swap=0.02, upper=0.3, lower=0.03, email=0.7,
                            phone=0.92, nid=0.9, dob=0.97, gender=0.95, street=0.9, city=0.97, postcode=0.85,
                            nid_formats=(0.9, 0.0, 0.05, 0.05), weak=0.03,
                            phone_formats=(0.3, 0.3, 0.2, 0.1, 0.0, 0.1, 0.0))
TRAVEL_PROFILE = Profile(latin=0.5, arabic=0.1, typo=0.035, swap=0.03, nick=0.03, email=0.85, phone=0.8,
                         nid=0.0, dob=0.9, gender=0.0, street=0.0, city=0.9, postcode=0.0, weak=0.035,
                         email_messy=0.15)
BANK_PROFILE = Profile(latin=0.0, arabic=0.3, typo=0.02, swap=0.01, email=0.0, phone=0.95, nid=0.97, dob=0.98,
                       gender=0.0, street=0.0, city=0.97, postcode=0.9, digits_fa=0.0, addr_flip=0.0,
                       nid_formats=(0.97, 0.0, 0.03, 0.0), weak=0.025,
                       phone_formats=(0.05, 0.0, 0.8, 0.1, 0.0, 0.05, 0.0))

FORM_TYPES = np.array(["registration", "order_form", "feedback", "complaint", "idea", "newsletter_consent"],
                      dtype=object)
FORM_TYPE_P = [0.15, 0.25, 0.2, 0.1, 0.05, 0.25]
CHANNELS = np.array(["phone", "email", "web_chat", "mail", "fax", "in_person"], dtype=object)
CHANNEL_P = [0.45, 0.2, 0.15, 0.03, 0.02, 0.15]
TOPICS = ["billing", "delivery", "product question", "complaint", "cancellation", "return", "account",
          "payment", "technical issue", "other"]
TOPIC_P = [0.12, 0.24, 0.18, 0.1, 0.06, 0.08, 0.07, 0.06, 0.05, 0.04]
OUTCOMES = np.array(["resolved", "follow_up", "escalated", "no_answer", "sale"], dtype=object)
OUTCOME_P = [0.55, 0.2, 0.07, 0.08, 0.1]
NOTES = {
    "billing": ("سوال درباره فاکتور خرید", "Question about an invoice"),
    "delivery": ("پیگیری وضعیت ارسال سفارش", "Asked where the parcel is"),
    "product question": ("سوال درباره مشخصات محصول", "Asked about product specifications"),
    "complaint": ("شکایت از کیفیت کالا", "Complained about product quality"),
    "cancellation": ("درخواست لغو سفارش", "Wants to cancel the order"),
    "return": ("درخواست مرجوعی کالا", "Requested a return label"),
    "account": ("مشکل در ورود به حساب کاربری", "Cannot log in to the account"),
    "payment": ("پرداخت ناموفق ولی مبلغ کسر شده", "Payment failed but money was debited"),
    "technical issue": ("سایت هنگام پرداخت خطا می‌دهد", "Website error at checkout"),
    "other": ("تماس عمومی", "General enquiry"),
}
MESSAGES = {
    "feedback": (["خرید خیلی خوبی بود، ممنون از ارسال سریع", "کیفیت محصول عالی بود",
                  "بسته‌بندی مناسب نبود ولی محصول سالم رسید", "پشتیبانی خوب جواب داد"],
                 ["Great service, fast delivery", "Product quality was fine", "Packaging could be better",
                  "Website is slow at checkout"]),
    "complaint": (["سفارشم هنوز نرسیده", "محصول معیوب بود", "مبلغ دو بار از حسابم کسر شد", "رفتار پیک مناسب نبود"],
                  ["My order has not arrived yet", "The item arrived damaged", "I was charged twice",
                   "Wrong size delivered"]),
    "idea": (["لطفا امکان پرداخت اقساطی اضافه کنید", "اپلیکیشن موبایل داشته باشید", "ارسال رایگان برای شهرستان‌ها"],
             ["Please add installment payments", "A mobile app would be great",
              "Offer free shipping to smaller cities"]),
}
CATEGORY_FA = [c[1] for c in N.CATEGORIES]
CATEGORY_EN = [c[2] for c in N.CATEGORIES]
POLICY_TYPES = np.array(["auto", "home", "health", "life", "travel"], dtype=object)
LOYALTY = np.array(["bronze", "silver", "gold", "platinum"], dtype=object)
ACCOUNT_TYPES = np.array(["قرض‌الحسنه", "سپرده کوتاه مدت", "سپرده بلند مدت", "جاری"], dtype=object)

JUNK_PHONE = "02100000000"
JUNK_EMAIL = "test@test.com"
JUNK_NID = "0000000000"

INSURANCE_HEADER = ["PolicyHolderNo", "GivenName", "FamilyName", "EMail", "Mobile", "NationalCode", "DateOfBirth",
                    "Sex", "Address", "City", "Province", "ZIP", "CustomerSince", "PolicyType"]
TRAVEL_HEADER = ["member_id", "full_name", "email", "phone", "birth_date", "city", "joined", "loyalty_tier"]
BANK_HEADER = ["شماره مشتری", "نام", "نام خانوادگی", "کد ملی", "تلفن همراه", "تاریخ تولد", "شهر", "استان",
               "کد پستی", "تاریخ عضویت", "نوع حساب"]
CONTACT_HEADER = ["interaction_id", "channel", "occurred_at", "customer_name", "email", "phone", "customer_ref",
                  "topic", "outcome", "notes", "agent_id"]
KIOSK_HEADER = ["order_id", "customer_source_id", "order_date", "quantity", "amount", "items"]
GT_HEADER = ["source_system", "source_record_id", "person_id"]


# --- small helpers ------------------------------------------------------------------------------------
def iso_tehran(epoch: np.ndarray) -> list[str]:
    s = np.datetime_as_string((np.asarray(epoch, dtype=np.int64) + TEHRAN_OFFSET).astype("datetime64[s]"), unit="s")
    return [x + "+03:30" for x in s.tolist()]


def iso_day(days: np.ndarray) -> list[str]:
    return np.datetime_as_string(np.asarray(days, dtype=np.int64).astype("datetime64[D]"), unit="D").tolist()


def d_of(days: int) -> dt.date:
    return EPOCH + dt.timedelta(days=int(days))


def uniform_times(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray | int) -> np.ndarray:
    lo = np.asarray(lo, dtype=np.int64)
    hi = np.broadcast_to(np.asarray(hi, dtype=np.int64), lo.shape)
    lo = np.minimum(lo, hi)
    return lo + (rng.random(len(lo)) * (hi - lo)).astype(np.int64)


@dataclass
class Planted:
    """Deliberate problems, for DemoSummary.planted (ids capped, counts complete)."""

    items: dict[str, dict] = field(default_factory=dict)

    def add(self, kind: str, source: str, ids: list[str], note: str, file: str | None = None) -> None:
        if not ids:
            return
        e = self.items.setdefault(f"{kind}|{source}", {"kind": kind, "source": source, "count": 0, "examples": [],
                                         "note": note, "files": []})
        e["count"] += len(ids)
        room = 25 - len(e["examples"])
        if room > 0:
            e["examples"].extend(ids[:room])
        if file and file not in e["files"]:
            e["files"].append(file)

    def as_list(self) -> list[dict]:
        return list(self.items.values())


# --- writers ------------------------------------------------------------------------------------------
class CsvOut:
    def __init__(self, path: Path, header: list[str], delimiter: str = ",", encoding: str = "utf-8",
                 lineterminator: str = "\n"):
        self.path = path
        self.fh = open_private(path, "w", encoding=encoding, newline="")
        self.w = csv.writer(self.fh, delimiter=delimiter, lineterminator=lineterminator)
        self.w.writerow(header)
        self.rows = 0

    def write(self, rows) -> None:
        rows = list(rows)
        self.w.writerows(rows)
        self.rows += len(rows)

    def close(self) -> None:
        self.fh.close()


class JsonlOut:
    def __init__(self, path: Path):
        self.path = path
        self.fh = open_private(path, "w", encoding="utf-8", newline="\n")
        self.rows = 0

    def write(self, records: list[dict]) -> None:
        self.fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        self.rows += len(records)

    def close(self) -> None:
        self.fh.close()


class XlsxOut:
    """Streaming single-sheet .xlsx writer (inline strings), byte-identical for identical content.

    openpyxl's write-only mode is correct but slow (~0.3 ms a row without lxml) and stamps the current
    time into the archive; a sheet of strings needs only a handful of fixed XML parts.
    """

    def __init__(self, path: Path, sheet: str, header: list[str], as_of: dt.date):
        self.path = path
        self.sheet = sheet
        self.stamp = (as_of.year, as_of.month, as_of.day, 20, 0, 0)
        self.iso = f"{as_of.isoformat()}T20:00:00Z"
        self.tmp = path.with_name(path.name + ".sheet.tmp")
        self.fh = open_private(self.tmp, "w", encoding="utf-8", newline="")
        self.fh.write('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                      '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
                      "<sheetData>")
        self.n = 0
        self.ncols = len(header)
        self._row(header)
        self.rows = 0

    def _row(self, values) -> None:
        self.n += 1
        r = self.n
        cells = []
        for i, v in enumerate(values):
            if v is None or v == "":
                continue
            ref = f"{_col_letter(i)}{r}"
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                cells.append(f'<c r="{ref}"><v>{v}</v></c>')
            else:
                text = _xml_escape(str(v))
                cells.append(f'<c r="{ref}" t="inlineStr"><is><t xml:space="preserve">{text}</t></is></c>')
        self.fh.write(f'<row r="{r}">{"".join(cells)}</row>')

    def write(self, rows) -> None:
        for row in rows:
            self._row(row)
            self.rows += 1

    def close(self) -> None:
        self.fh.write("</sheetData></worksheet>")
        self.fh.close()
        parts = {
            "[Content_Types].xml": (
                '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
                '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
                '<Default Extension="xml" ContentType="application/xml"/>'
                '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.'
                'spreadsheetml.sheet.main+xml"/>'
                '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-'
                'officedocument.spreadsheetml.worksheet+xml"/>'
                '<Override PartName="/docProps/core.xml" ContentType="application/vnd.openxmlformats-package.'
                'core-properties+xml"/>'
                "</Types>"),
            "_rels/.rels": (
                '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
                '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
                'relationships/officeDocument" Target="xl/workbook.xml"/>'
                '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/relationships/'
                'metadata/core-properties" Target="docProps/core.xml"/>'
                "</Relationships>"),
            "docProps/core.xml": (
                '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/'
                'core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/'
                'dc/terms/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
                "<dc:creator>travel-crm</dc:creator>"
                f'<dcterms:created xsi:type="dcterms:W3CDTF">{self.iso}</dcterms:created>'
                f'<dcterms:modified xsi:type="dcterms:W3CDTF">{self.iso}</dcterms:modified>'
                "</cp:coreProperties>"),
            "xl/workbook.xml": (
                '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
                'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
                f'<sheets><sheet name="{_xml_escape(self.sheet)}" sheetId="1" r:id="rId1"/></sheets></workbook>'),
            "xl/_rels/workbook.xml.rels": (
                '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
                '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
                'relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>'),
        }
        with open_private(self.path, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as z:
            for name, text in parts.items():
                z.writestr(self._info(name), text)
            with open(self.tmp, "rb") as src, z.open(self._info("xl/worksheets/sheet1.xml"), "w") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
        self.tmp.unlink()

    def _info(self, name: str) -> zipfile.ZipInfo:
        zi = zipfile.ZipInfo(name, date_time=self.stamp)
        zi.compress_type = zipfile.ZIP_DEFLATED
        zi.external_attr = 0o600 << 16
        return zi


def _col_letter(i: int) -> str:
    s = ""
    i += 1
    while i:
        i, rem = divmod(i - 1, 26)
        s = chr(65 + rem) + s
    return s


_XML_ESC = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})


def _xml_escape(text: str) -> str:
    return text.translate(_XML_ESC)


# --- context --------------------------------------------------------------------------------------------
@dataclass
class Ctx:
    people: People
    fresh: Fresh
    as_of: dt.date
    snap: int                     # epoch seconds: the moment the demo data is "as of"
    counters: dict[str, int]
    planted: Planted

    def next_ids(self, name: str, n: int) -> np.ndarray:
        start = self.counters.get(name, 0)
        self.counters[name] = start + n
        return np.arange(start + 1, start + n + 1, dtype=np.int64)


def _gt(system: str, ids: list[str], pidx: np.ndarray) -> list[tuple[str, str, str]]:
    return [(system, rid, f"P{int(p) + 1:07d}") for rid, p in zip(ids, pidx, strict=True)]


def _date_or_none(days: int, fmt: str = "iso") -> str | None:
    if days == NO_DAY:
        return None
    d = d_of(days)
    if fmt == "dmy":
        return d.strftime("%d.%m.%Y")
    return d.isoformat()


# --- forms ---------------------------------------------------------------------------------------------
def build_forms(ctx: Ctx, rng: np.random.Generator, fp: np.ndarray, t_lo: np.ndarray, t_hi: int | np.ndarray,
                person_cust: dict | np.ndarray, cust_orders=None, types: np.ndarray | None = None,
                file: str | None = None, withdrawals: bool = True):
    """Form submissions of persons `fp` between t_lo and t_hi. Returns (records, ground-truth rows)."""
    people = ctx.people
    n = len(fp)
    ftype = rng.choice(len(FORM_TYPES), size=n, p=FORM_TYPE_P) if types is None else types
    when = uniform_times(rng, t_lo, t_hi)
    mk = rng.random(n)
    pf = rng.random(n)
    cm = np.full(n, None, dtype=object)
    cpf = np.full(n, None, dtype=object)
    reg = ftype == 0
    news = ftype == 5
    cm[reg] = mk[reg] < 0.55
    cpf[reg] = pf[reg] < 0.4
    cm[news] = mk[news] < 0.85
    cpf[news] = np.where(pf[news] < 0.3, pf[news] < 0.15, None)
    if withdrawals:  # a few customers later withdraw their newsletter consent
        wd = np.flatnonzero(news & (cm == True) & (rng.random(n) < 0.04))  # noqa: E712
        if len(wd):
            fp = np.concatenate([fp, fp[wd]])
            ftype = np.concatenate([ftype, np.full(len(wd), 5)])
            when = np.concatenate([when, uniform_times(rng, when[wd] + 3600, t_hi)])
            cm = np.concatenate([cm, np.full(len(wd), False, dtype=object)])
            cpf = np.concatenate([cpf, np.full(len(wd), False, dtype=object)])
            n = len(fp)
    order = np.argsort(when, kind="stable")
    fp, ftype, when, cm, cpf = fp[order], ftype[order], when[order], cm[order], cpf[order]
    r = render(people, fp, rng, FORMS_PROFILE, ctx.fresh)
    ids = [f"F{i:08d}" for i in ctx.next_ids("submission", n)]
    submitted = iso_tehran(when)
    cref = np.asarray([person_cust.get(int(p), -1) for p in fp]) if isinstance(person_cust, dict) \
        else person_cust[fp]
    logged_in = (cref > 0) & (rng.random(n) < 0.57)
    split_name = rng.random(n) < 0.7
    dob_fa = rng.random(n) < 0.05
    gx = rng.random(n) < 0.01
    rating = rng.choice(5, size=n, p=[0.05, 0.08, 0.17, 0.35, 0.35]) + 1
    msg_i = rng.integers(0, 4, size=n)
    interest = rng.integers(0, len(CATEGORY_EN), size=n)
    want_interest = rng.random(n) < 0.5
    want_company = rng.random(n) < 0.6
    want_order = rng.random(n) < 0.7
    recs = []
    for j in range(n):
        t = int(ftype[j])
        tname = FORM_TYPES[t]
        latin = bool(r.latin[j])
        rec: dict = {"submission_id": ids[j], "form_type": tname, "submitted_at": submitted[j]}
        if split_name[j]:
            rec["first_name"] = r.first[j]
            rec["last_name"] = r.last[j]
        else:
            rec["full_name"] = r.full[j]
        for key, val in (("email", r.email[j]), ("phone", r.phone[j]), ("national_id", r.national_id[j])):
            if val is not None:
                rec[key] = val
        if r.birth[j] != NO_DAY:
            b = d_of(r.birth[j]).isoformat()
            rec["birth_date"] = to_persian_digits(b) if dob_fa[j] and not latin else b
        if r.gender[j] is not None:
            rec["gender"] = "x" if gx[j] else r.gender[j]
        for key, val in (("street", r.street[j]), ("city", r.city[j]), ("province", r.province[j]),
                         ("postcode", r.postcode[j])):
            if val is not None:
                rec[key] = val
        p = int(fp[j])
        if people.company[p] >= 0 and t in (0, 1) and want_company[j]:
            c = N.COMPANIES[people.company[p]]
            rec["company"] = c[1] if latin else c[0]
            rec["business_type"] = N.BUSINESS_TYPES[people.business_type[p]]
        if logged_in[j]:
            rec["customer_ref"] = str(int(cref[j]))
        if t in (1, 3) and cust_orders is not None and cref[j] > 0 and want_order[j]:
            o = cust_orders(int(cref[j]), rng)
            if o is not None:
                rec["order_ref"] = str(o)
        if t in (0, 1, 4) and want_interest[j]:
            rec["product_interest"] = CATEGORY_EN[interest[j]] if latin else CATEGORY_FA[interest[j]]
        if tname in MESSAGES:
            fa, en = MESSAGES[tname]
            rec["message"] = en[msg_i[j] % len(en)] if latin else fa[msg_i[j] % len(fa)]
        if t == 2:
            rec["rating"] = int(rating[j])
        elif t == 3 and rating[j] <= 2:
            rec["rating"] = 1
        rec["consent_marketing"] = cm[j]
        rec["consent_profiling"] = cpf[j]
        recs.append(rec)
    _plant_hard_records(ctx, "forms", ids, r, file)
    return recs, _gt("forms", ids, fp)


def plant_junk_emails(ctx: Ctx, rng: np.random.Generator, recs: list[dict], k: int, file: str | None) -> None:
    """The same throw-away address typed by several different persons."""
    if not recs:
        return
    k = min(k, len(recs))
    chosen = rng.choice(len(recs), size=k, replace=False)
    ids = []
    for j in sorted(chosen.tolist()):
        recs[j]["email"] = JUNK_EMAIL if j % 2 else " Test@Test.com"
        ids.append(recs[j]["submission_id"])
    ctx.planted.add("junk_email", "forms", ids, f"{JUNK_EMAIL} typed by different persons", file)


def _plant_hard_records(ctx: Ctx, source: str, ids: list[str], r, file: str | None) -> None:
    """Record the source's records identity resolution must work hardest for: no identifier at all, and none
    shared with the person's other records."""
    ctx.planted.add("no_usable_identifier", source, [ids[j] for j in np.flatnonzero(r.noid)],
                    "no email, phone or national id: a name only", file)
    ctx.planted.add("fuzzy_only", source, [ids[j] for j in np.flatnonzero(r.weak)],
                    "no identifier shared with the person's other records: linkable by name + birth date "
                    "+ postcode/city only", file)


# --- contacts -------------------------------------------------------------------------------------------
def build_contacts(ctx: Ctx, rng: np.random.Generator, cp: np.ndarray, t_lo, t_hi, person_cust,
                   file: str | None = None):
    people = ctx.people
    n = len(cp)
    when = uniform_times(rng, t_lo, t_hi)
    order = np.argsort(when, kind="stable")
    cp, when = cp[order], when[order]
    r = render(people, cp, rng, CONTACTS_PROFILE, ctx.fresh)
    ch = rng.choice(len(CHANNELS), size=n, p=CHANNEL_P)
    u1 = rng.random(n)
    u2 = rng.random(n)
    email = list(r.email)
    phone = list(r.phone)
    for j in range(n):
        c = ch[j]
        if r.noid[j]:
            continue
        if c == 0:                       # phone call: caller id is logged, the email rarely asked
            if phone[j] is None:
                phone[j] = f"0{people.mobile[cp[j]]:010d}"
            if u1[j] < 0.5:
                email[j] = None
        elif c == 1:                     # email: the address is always there, a phone rarely
            if email[j] is None:
                email[j] = people.email2[cp[j]] or people.email[cp[j]]
            if u2[j] < 0.8:
                phone[j] = None
        elif c in (3, 4) and u1[j] < 0.5 and phone[j] is not None:  # letter / fax
            email[j] = None
        if email[j] is None and phone[j] is None:
            phone[j] = f"0{people.mobile[cp[j]]:010d}"
    junk = rng.random(n) < 0.01
    for j in np.flatnonzero(junk):
        phone[j] = JUNK_PHONE
    ids = [f"I{i:08d}" for i in ctx.next_ids("interaction", n)]
    occurred = iso_tehran(when)
    cref = np.asarray([person_cust.get(int(p), -1) for p in cp]) if isinstance(person_cust, dict) \
        else person_cust[cp]
    with_ref = (cref > 0) & (rng.random(n) < 0.3)
    topic = rng.choice(len(TOPICS), size=n, p=TOPIC_P)
    outcome = rng.choice(len(OUTCOMES), size=n, p=OUTCOME_P)
    agent = rng.integers(1, 121, size=n)
    name_style = rng.random(n)
    rows = []
    for j in range(n):
        name = r.full[j]
        if name_style[j] < 0.05:
            name = r.first[j]  # only the first name was noted
        elif name_style[j] < 0.1:
            name = f"{r.last[j]}, {r.first[j]}"
        tp = TOPICS[topic[j]]
        fa, en = NOTES[tp]
        rows.append((ids[j], CHANNELS[ch[j]], occurred[j], name, email[j] or "", phone[j] or "",
                     str(int(cref[j])) if with_ref[j] else "", tp, OUTCOMES[outcome[j]],
                     en if r.latin[j] else fa, f"AG{agent[j]:03d}"))
    ctx.planted.add("junk_phone", "contacts", [ids[j] for j in np.flatnonzero(junk)],
                    f"the call centre's own number {JUNK_PHONE} typed as the customer's phone", file)
    noid = [ids[j] for j in range(n) if not email[j] and not phone[j] and not with_ref[j]]
    ctx.planted.add("no_usable_identifier", "contacts", noid, "no email, phone or customer_ref: a name only", file)
    return rows, _gt("contacts", ids, cp)


# --- siblings --------------------------------------------------------------------------------------------
def _since_days(ctx: Ctx, rng: np.random.Generator, pidx: np.ndarray) -> np.ndarray:
    as_of_days = (ctx.as_of - EPOCH).days
    s = ctx.people.since[pidx].astype(np.int64)
    return s + (rng.random(len(pidx)) * (as_of_days - s)).astype(np.int64)


def _unit_members(ctx: Ctx, rng: np.random.Generator, pidx: np.ndarray, profile):
    """A sibling unit's members in its file's order (shuffled), rendered the way that unit writes people,
    and the day each joined it."""
    pidx = pidx[rng.permutation(len(pidx))]
    r = render(ctx.people, pidx, rng, profile, ctx.fresh)
    return pidx, r, _since_days(ctx, rng, pidx)


def build_insurance(ctx: Ctx, rng: np.random.Generator, pidx: np.ndarray, file: str | None = None):
    pidx, r, since = _unit_members(ctx, rng, pidx, INSURANCE_PROFILE)
    n = len(pidx)
    ids = [f"PH{i:07d}" for i in 1_000_000 + 3 * ctx.next_ids("insurance", n)]
    policy = rng.choice(len(POLICY_TYPES), size=n, p=[0.4, 0.2, 0.25, 0.1, 0.05])
    rows = []
    for j in range(n):
        g = r.gender[j]
        rows.append([ids[j], r.first[j], r.last[j], r.email[j] or "", r.phone[j] or "", r.national_id[j] or "",
                     _date_or_none(r.birth[j], "dmy") or "", {"m": "M", "f": "F"}.get(g, "") if g else "",
                     r.street[j] or "", r.city[j] or "", r.province[j] or "", r.postcode[j] or "",
                     d_of(since[j]).strftime("%d.%m.%Y"), POLICY_TYPES[policy[j]]])
    _plant_hard_records(ctx, "sibling:insurance", ids, r, file)
    return rows, _gt("sibling:insurance", ids, pidx)


def build_travel(ctx: Ctx, rng: np.random.Generator, pidx: np.ndarray, file: str | None = None):
    pidx, r, since = _unit_members(ctx, rng, pidx, TRAVEL_PROFILE)
    n = len(pidx)
    ids = [f"TRV-{i:06d}" for i in 100_000 + ctx.next_ids("travel", n)]
    tier = rng.choice(len(LOYALTY), size=n, p=[0.55, 0.27, 0.13, 0.05])
    style = rng.random(n)
    rows = []
    for j in range(n):
        if style[j] < 0.8:
            name = r.full[j]
        elif style[j] < 0.9 and r.latin[j]:
            name = f"{r.last[j].upper()}, {r.first[j]}"
        else:
            name = f"{r.last[j]} {r.first[j]}"
        rows.append([ids[j], name, r.email[j], r.phone[j], _date_or_none(r.birth[j]), r.city[j],
                     d_of(since[j]).isoformat(), LOYALTY[tier[j]]])
    _plant_hard_records(ctx, "sibling:travel", ids, r, file)
    return rows, _gt("sibling:travel", ids, pidx)


def build_bank(ctx: Ctx, rng: np.random.Generator, pidx: np.ndarray, file: str | None = None):
    pidx, r, since = _unit_members(ctx, rng, pidx, BANK_PROFILE)
    n = len(pidx)
    ids = [str(i) for i in 1_000_000_000 + 7 * ctx.next_ids("bank", n)]
    acct = rng.choice(len(ACCOUNT_TYPES), size=n, p=[0.35, 0.35, 0.15, 0.15])
    rows = []
    for j in range(n):
        b = r.birth[j]
        rows.append([ids[j], cp1256_safe(r.first[j]), cp1256_safe(r.last[j]), r.national_id[j] or "",
                     r.phone[j] or "", jalali_str(d_of(b)) if b != NO_DAY else "", cp1256_safe(r.city[j] or ""),
                     cp1256_safe(r.province[j] or ""), r.postcode[j] or "", jalali_str(d_of(since[j])),
                     cp1256_safe(ACCOUNT_TYPES[acct[j]])])
    _plant_hard_records(ctx, "sibling:bank_fa", ids, r, file)
    return rows, _gt("sibling:bank_fa", ids, pidx)


def plant_sibling_problems(ctx: Ctx, rng: np.random.Generator, rows: list[list], unit: str, k_nid: int,
                           k_date: int, file: str | None) -> None:
    """A few junk national ids (0000000000) and impossible dates in a sibling file."""
    if not rows:
        return
    nid_col, dob_col, bad = {"insurance": (5, 6, "31.02.1990"), "bank_fa": (3, 5, "1370/13/45")}[unit]
    k_nid = min(k_nid, len(rows))
    chosen = rng.choice(len(rows), size=min(len(rows), k_nid + k_date), replace=False).tolist()
    nid_rows, date_rows = chosen[:k_nid], chosen[k_nid:]
    for j in nid_rows:
        rows[j][nid_col] = JUNK_NID
    for j in date_rows:
        rows[j][dob_col] = bad
    ctx.planted.add("junk_national_id", f"sibling:{unit}", [rows[j][0] for j in sorted(nid_rows)],
                    f"national id {JUNK_NID} typed as a placeholder", file)
    ctx.planted.add("bad_date", f"sibling:{unit}", [rows[j][0] for j in sorted(date_rows)],
                    f"impossible birth date {bad}", file)


# --- kiosk order export -----------------------------------------------------------------------------------
KIOSK_CATEGORIES = {"Groceries", "Stationery", "Health & pharmacy", "Beauty & personal care", "Books"}


def build_kiosk(ctx: Ctx, rng: np.random.Generator, cat, customer_ids: np.ndarray, n: int, day_lo: int,
                day_hi: int):
    """`n` kiosk orders of random customers on days [day_lo, day_hi] (days since epoch)."""
    if n <= 0 or len(customer_ids) == 0:
        return []
    in_kiosk = np.flatnonzero(np.isin(cat.category, list(KIOSK_CATEGORIES)))
    p = cat.p[in_kiosk] / cat.p[in_kiosk].sum()
    cust = customer_ids[rng.integers(0, len(customer_ids), size=n)]
    days = np.sort(rng.integers(day_lo, day_hi + 1, size=n))
    n_items = 1 + rng.poisson(0.8, size=n)
    ids = [f"K{i:07d}" for i in ctx.next_ids("kiosk", n)]
    rows = []
    for j in range(n):
        prods = rng.choice(in_kiosk, size=n_items[j], p=p)
        qtys = 1 + rng.binomial(cat.max_qty[prods] - 1, 0.25)
        amount = int((qtys * cat.price[prods]).sum())
        items = "|".join(f"{cat.sku[q]}:{int(k)}" for q, k in zip(prods, qtys, strict=True))
        rows.append([ids[j], str(int(cust[j])), d_of(days[j]).isoformat(), int(qtys.sum()), amount, items])
    return rows


def plant_kiosk_amounts(ctx: Ctx, rows: list[list], rng: np.random.Generator, file: str | None) -> None:
    if not rows:
        return
    bad_values = ["N/A", "1,2OO,000", "قیمت نامعلوم"]
    k = min(len(rows), 3)
    chosen = sorted(rng.choice(len(rows), size=k, replace=False).tolist())
    for t, j in enumerate(chosen):
        rows[j][4] = bad_values[t % len(bad_values)]
    ctx.planted.add("non_numeric_amount", "order_export:kiosk", [rows[j][0] for j in chosen],
                    "amount is not a number", file)


def write_corrupt_kiosk(path: Path, rng: np.random.Generator, customer_ids: np.ndarray, as_of: dt.date) -> int:
    """A whole file with the wrong header (the shop's till software changed its export)."""
    n = 12
    with open_private(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["OrderNo", "Client", "Date", "Total", "PaymentMethod"])
        for j in range(n):
            c = int(customer_ids[j % len(customer_ids)]) if len(customer_ids) else j + 1
            w.writerow([f"KX{j + 1:05d}", c, (as_of - dt.timedelta(days=j)).strftime("%d/%m/%Y"),
                        int(rng.integers(5, 500)) * 10_000, ["cash", "card", "pos"][j % 3]])
    return n


def remove_files(paths: list[str]) -> None:
    for p in paths:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


__all__ = ["Ctx", "Planted", "CsvOut", "JsonlOut", "XlsxOut", "person_id", "arabic_letters"]
