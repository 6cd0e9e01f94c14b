"""Make the Great Expectations Data Docs site work offline.

GX Core 1.x renders every Data Docs page with ``<script>``/``<link>`` tags pointing at public CDNs
(jQuery, Bootstrap 4, bootstrap-table, bootstrap-datepicker, Font Awesome, Vega) and an S3-hosted logo.
The pipeline's machines are offline and auditors may be too: without those files the pages show no
tables at all (bootstrap-table builds them in the browser from inline JSON).

After every build (:func:`crm_knowledge.quality.context.build_data_docs`) :func:`localize_site`

1. copies the assets into ``<site>/static/offline/`` from installed Python packages: ``xstatic-jquery``,
   ``xstatic-bootstrap`` (4.5, its bundle includes Popper), ``xstatic-font-awesome`` (CSS + webfonts),
   Vega/Vega-Lite/Vega-Embed from the ``splink`` wheel (already a dependency), and bootstrap-table 1.19.1
   + bootstrap-datepicker 1.9.0 vendored under ``quality/static/vendor/`` (MIT, licence files beside
   them; no Python package ships them);
2. rewrites every page of the site so each of those tags points at the local copy by a relative path
   (``integrity``/``crossorigin`` are dropped: they would block ``file://`` loads and hash another
   build), the logo comes from the site's own ``static/images/``, and the dark-theme stylesheet (no
   offline copy) is removed: pages render in the light theme.

It is idempotent (a localized page has nothing left to rewrite) and never reaches the network. A CDN
reference it does not know (a GX upgrade adding a library) is left in place and logged; the test
``tests/warehouse/test_report_renders.py`` fails on it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: Where the assets go inside the Data Docs site.
OFFLINE_DIR = Path("static") / "offline"
VENDOR_DIR = Path(__file__).resolve().parent / "static" / "vendor"

_LOGO = "static/images/logo-long.png"  # shipped by GX into every site


@dataclass(frozen=True)
class Rule:
    """A CDN URL pattern and the site-relative file replacing it (``None``: the tag is removed)."""

    name: str
    pattern: re.Pattern[str]
    local: str | None
    why_removed: str = ""


def _rule(name: str, pattern: str, local: str | None, why_removed: str = "") -> Rule:
    return Rule(name, re.compile(pattern), local, why_removed)


_OFF = OFFLINE_DIR.as_posix()
RULES: tuple[Rule, ...] = (
    _rule("jquery", r"^https?://code\.jquery\.com/jquery-3[\d.]*(\.min)?\.js$", f"{_OFF}/jquery/jquery.min.js"),
    _rule("popper", r"^https?://[^\"']*/popper(\.js)?[@/][^\"']*popper(\.min)?\.js$", None,
          "Popper is part of bootstrap.bundle.min.js"),
    _rule("bootstrap-js", r"^https?://[^\"']*bootstrapcdn\.com/bootstrap/4[\d.]*/js/bootstrap(\.min)?\.js$",
          f"{_OFF}/bootstrap/js/bootstrap.bundle.min.js"),
    _rule("bootstrap-css", r"^https?://[^\"']*bootstrapcdn\.com/bootstrap/4[\d.]*/css/bootstrap(\.min)?\.css$",
          f"{_OFF}/bootstrap/css/bootstrap.min.css"),
    _rule("bootstrap-table-filter-js",
          r"^https?://unpkg\.com/bootstrap-table@[\d.]+/dist/extensions/filter-control/"
          r"bootstrap-table-filter-control(\.min)?\.js$",
          f"{_OFF}/bootstrap-table/extensions/filter-control/bootstrap-table-filter-control.min.js"),
    _rule("bootstrap-table-filter-css",
          r"^https?://unpkg\.com/bootstrap-table@[\d.]+/dist/extensions/filter-control/"
          r"bootstrap-table-filter-control(\.min)?\.css$",
          f"{_OFF}/bootstrap-table/extensions/filter-control/bootstrap-table-filter-control.min.css"),
    _rule("bootstrap-table-js", r"^https?://unpkg\.com/bootstrap-table@[\d.]+/dist/bootstrap-table(\.min)?\.js$",
          f"{_OFF}/bootstrap-table/bootstrap-table.min.js"),
    _rule("bootstrap-table-css", r"^https?://unpkg\.com/bootstrap-table@[\d.]+/dist/bootstrap-table(\.min)?\.css$",
          f"{_OFF}/bootstrap-table/bootstrap-table.min.css"),
    _rule("datepicker-js", r"^https?://[^\"']*/bootstrap-datepicker/[\d.]+/js/bootstrap-datepicker(\.min)?\.js$",
          f"{_OFF}/bootstrap-datepicker/bootstrap-datepicker.min.js"),
    _rule("datepicker-css",
          r"^https?://[^\"']*/bootstrap-datepicker/[\d.]+/css/bootstrap-datepicker(\.min)?\.css$",
          f"{_OFF}/bootstrap-datepicker/bootstrap-datepicker.min.css"),
    _rule("font-awesome", r"^https?://[^\"']*/font-awesome/[\d.]+/css/all(\.min)?\.css$",
          f"{_OFF}/font-awesome/css/all.min.css"),
    _rule("vega", r"^https?://cdn\.jsdelivr\.net/npm/vega@5[^\"'/]*$", f"{_OFF}/vega/vega.min.js"),
    _rule("vega-lite", r"^https?://cdn\.jsdelivr\.net/npm/vega-lite@5[^\"'/]*$", f"{_OFF}/vega/vega-lite.min.js"),
    _rule("vega-embed", r"^https?://cdn\.jsdelivr\.net/npm/vega-embed@6[^\"'/]*$", f"{_OFF}/vega/vega-embed.min.js"),
    _rule("bootstrap-dark", r"^https?://[^\"']*/bootstrap-dark@[^\"']*\.css$", None,
          "dark theme has no offline copy; the page renders in the light theme"),
    _rule("gx-logo", r"^https?://great-expectations-web-assets\.[^\"']*\.png(\?[^\"']*)?$", _LOGO),
)


class OfflineAssetError(RuntimeError):
    """An asset the offline Data Docs need is not installed."""


def _xstatic_dir(module: str, package: str) -> Path:
    try:
        mod = __import__(f"xstatic.pkg.{module}", fromlist=["BASE_DIR"])
    except ImportError as exc:
        raise OfflineAssetError(f"the Python package {package} is not installed; it is pinned in "
                                "requirements/lock.txt (make venv installs it)") from exc
    return Path(mod.BASE_DIR)


def _splink_js_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("splink")
    if spec is None or not spec.submodule_search_locations:
        raise OfflineAssetError("the Python package splink (which ships vega/vega-lite/vega-embed) is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "internals" / "files" / "external_js"


def _one(directory: Path, prefix: str) -> Path:
    found = sorted(p for p in directory.glob(f"{prefix}@*") if p.is_file())
    if not found:
        raise OfflineAssetError(f"{prefix} not found in {directory} (splink's bundled JavaScript)")
    return found[-1]


def asset_sources() -> dict[str, Path]:
    """Site-relative destination (under ``static/offline``) -> installed source file."""
    jquery = _xstatic_dir("jquery", "xstatic-jquery")
    bootstrap = _xstatic_dir("bootstrap", "xstatic-bootstrap")
    fa = _xstatic_dir("font_awesome", "xstatic-font-awesome")
    vega = _splink_js_dir()
    table = VENDOR_DIR / "bootstrap-table-1.19.1"
    picker = VENDOR_DIR / "bootstrap-datepicker-1.9.0"
    out = {
        "jquery/jquery.min.js": jquery / "jquery.min.js",
        "bootstrap/js/bootstrap.bundle.min.js": bootstrap / "js" / "bootstrap.bundle.min.js",
        "bootstrap/css/bootstrap.min.css": bootstrap / "css" / "bootstrap.min.css",
        "font-awesome/css/all.min.css": fa / "css" / "all.min.css",
        "font-awesome/LICENSE.txt": fa / "LICENSE.txt",
        "vega/vega.min.js": _one(vega, "vega"),
        "vega/vega-lite.min.js": _one(vega, "vega-lite"),
        "vega/vega-embed.min.js": _one(vega, "vega-embed"),
        "bootstrap-table/bootstrap-table.min.js": table / "bootstrap-table.min.js",
        "bootstrap-table/bootstrap-table.min.css": table / "bootstrap-table.min.css",
        "bootstrap-table/extensions/filter-control/bootstrap-table-filter-control.min.js":
            table / "extensions" / "filter-control" / "bootstrap-table-filter-control.min.js",
        "bootstrap-table/extensions/filter-control/bootstrap-table-filter-control.min.css":
            table / "extensions" / "filter-control" / "bootstrap-table-filter-control.min.css",
        "bootstrap-table/LICENSE": table / "LICENSE",
        "bootstrap-datepicker/bootstrap-datepicker.min.js": picker / "bootstrap-datepicker.min.js",
        "bootstrap-datepicker/bootstrap-datepicker.min.css": picker / "bootstrap-datepicker.min.css",
        "bootstrap-datepicker/LICENSE": picker / "LICENSE",
    }
    for font in sorted((fa / "webfonts").glob("*.woff2")) + sorted((fa / "webfonts").glob("*.ttf")):
        out[f"font-awesome/webfonts/{font.name}"] = font
    missing = [str(src) for src in out.values() if not src.is_file()]
    if missing:
        raise OfflineAssetError("offline Data Docs assets missing: " + ", ".join(missing))
    return out


def copy_assets(site: Path) -> int:
    """Copy the assets into ``<site>/static/offline``; only files that are missing or differ in size."""
    copied = 0
    for rel, src in asset_sources().items():
        dest = site / OFFLINE_DIR / rel
        if dest.is_file() and dest.stat().st_size == src.stat().st_size:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        copied += 1
    return copied


def match(url: str) -> Rule | None:
    return next((r for r in RULES if r.pattern.match(url)), None)


_TAG = re.compile(r"<(script|link|img)\b([^>]*?)(/?)>(\s*</script>)?", re.I | re.S)
_ATTR = re.compile(r"""\b(src|href)\s*=\s*(["'])(https?://[^"']+)\2""", re.I)
_CSS_URL = re.compile(r"""url\(\s*(["']?)(https?://[^"')]+)\1\s*\)""", re.I)
_DROP_ATTRS = re.compile(r"""\s+(integrity|crossorigin)(\s*=\s*(["'])[^"']*\3)?""", re.I)


def _relative(site: Path, page: Path, local: str) -> str:
    return Path(os.path.relpath(site / local, page.parent)).as_posix()


def rewrite(text: str, *, site: Path, page: Path, unknown: set[str] | None = None) -> str:
    """`text` (an HTML page or a CSS file of the site at `page`) with every known CDN reference local."""

    def tag(m: re.Match[str]) -> str:
        name, attrs = m.group(1).lower(), m.group(2)
        a = _ATTR.search(attrs)
        if not a:
            return m.group(0)
        if name == "link" and not re.search(r"""rel\s*=\s*["']?stylesheet""", attrs, re.I):
            return m.group(0)
        rule = match(a.group(3))
        if rule is None:
            if unknown is not None and name in ("script", "link"):
                unknown.add(a.group(3))
            return m.group(0)
        if rule.local is None:
            return f"<!-- offline Data Docs: {rule.name} removed: {rule.why_removed} -->"
        new_attrs = _DROP_ATTRS.sub("", attrs)
        new_attrs = new_attrs.replace(a.group(0), f'{a.group(1)}="{_relative(site, page, rule.local)}"')
        return f"<{m.group(1)}{new_attrs}{m.group(3)}>{m.group(4) or ''}"

    def css_url(m: re.Match[str]) -> str:
        rule = match(m.group(2))
        if rule is None or rule.local is None:
            return m.group(0)
        return f"url('{_relative(site, page, rule.local)}')"

    return _CSS_URL.sub(css_url, _TAG.sub(tag, text))


def localize_site(site: Path) -> dict[str, int]:
    """Copy the assets into `site` and point every page (and the copied GX stylesheet) at them.

    Returns counts for the log: files rewritten, assets copied, unknown external references left.
    """
    site = Path(site)
    if not site.is_dir():
        return {"pages_rewritten": 0, "assets_copied": 0, "unknown_references": 0}
    copied = copy_assets(site)
    unknown: set[str] = set()
    rewritten = 0
    files = list(site.rglob("*.html")) + list((site / "static" / "styles").glob("*.css"))
    for path in files:
        text = path.read_text(encoding="utf-8")
        if "http://" not in text and "https://" not in text:
            continue
        new = rewrite(text, site=site, page=path, unknown=unknown)
        if new != text:
            tmp = path.with_name(path.name + ".offline-tmp")
            tmp.write_text(new, encoding="utf-8")
            os.replace(tmp, path)
            rewritten += 1
    if unknown:
        log.warning("Data Docs still reference external assets with no offline copy: %s",
                    ", ".join(sorted(unknown)))
    log.info("Data Docs made offline under %s: %d file(s) rewritten, %d asset(s) copied", site, rewritten, copied)
    return {"pages_rewritten": rewritten, "assets_copied": copied, "unknown_references": len(unknown)}


def external_references(html: str) -> list[str]:
    """URLs of scripts, stylesheets and images a page would fetch from the network (links excluded)."""
    refs = []
    for m in _TAG.finditer(html):
        name, attrs = m.group(1).lower(), m.group(2)
        a = _ATTR.search(attrs)
        if not a:
            continue
        if name == "link" and not re.search(r"""rel\s*=\s*["']?(stylesheet|icon|preload)""", attrs, re.I):
            continue
        refs.append(a.group(3))
    refs += [m.group(2) for m in _CSS_URL.finditer(html)]
    return refs
