"""Offline Data Docs (no database): GX's CDN tags become relative links to files copied from wheels."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm_knowledge.quality import offline_docs

# The head and script block GX Core 1.x writes into every page (render/view/templates).
GX_PAGE = """<html><head>
<link rel="stylesheet" href="https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css">
<link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css"/>
<link rel="stylesheet" type="text/css" href="https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css">
<link rel="stylesheet" type="text/css" href="https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css">
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css" />
<style>.navbar-brand a { background: url('https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/full_logo_dark.png') 0 0 no-repeat; }</style>
</head><body>
<a href="https://greatexpectations.io">Great Expectations</a>
<img src="https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png?d=1&dataContextId=x" alt="logo">
<script src="https://cdn.jsdelivr.net/npm/vega@5"></script>
<script src="https://cdn.jsdelivr.net/npm/vega-lite@5"></script>
<script src="https://cdn.jsdelivr.net/npm/vega-embed@6"></script>
<link rel="stylesheet" href="https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css">
<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>
<script src="https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js" integrity="sha384-ApNbgh9B+Y1QKtv3Rn7W3mgPxhU9K/ScQsAP7hUibX39j7fakFPskvXusvfa0b4Q" crossorigin="anonymous"></script>
<script src="https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js" integrity="sha384-JjSmVgyd0p3pXB1rRibZUAYoIIy6OrQ6VrjIEaFf/nJGzIxFDsf4x0xIM+B07jRM" crossorigin="anonymous"></script>
<script src="https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js"></script>
<script src="https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js"></script>
<script src="https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js"></script>
</body></html>"""  # noqa: E501


def test_every_gx_cdn_reference_is_rewritten_relative_to_the_page(tmp_path):
    site = tmp_path / "data_docs"
    page = site / "validations" / "raw" / "form_submissions" / "run" / "20260101T000000Z" / "b1.html"

    out = offline_docs.rewrite(GX_PAGE, site=site, page=page, unknown=(unknown := set()))

    assert unknown == set()
    assert offline_docs.external_references(out) == []
    up = "../../../../../static/offline/"
    for local in ("jquery/jquery.min.js", "bootstrap/js/bootstrap.bundle.min.js", "bootstrap/css/bootstrap.min.css",
                  "bootstrap-table/bootstrap-table.min.js", "bootstrap-table/bootstrap-table.min.css",
                  "bootstrap-table/extensions/filter-control/bootstrap-table-filter-control.min.js",
                  "bootstrap-table/extensions/filter-control/bootstrap-table-filter-control.min.css",
                  "bootstrap-datepicker/bootstrap-datepicker.min.js", "font-awesome/css/all.min.css",
                  "vega/vega.min.js", "vega/vega-lite.min.js", "vega/vega-embed.min.js"):
        assert f'"{up}{local}"' in out, local
    assert "integrity" not in out and "crossorigin" not in out  # would block file:// loads
    assert "popper removed" in out and "bootstrap-dark removed" in out
    assert 'src="../../../../../static/images/logo-long.png"' in out
    assert "url('../../../../../static/images/logo-long.png')" in out
    assert '<a href="https://greatexpectations.io">' in out  # a link is not a download: kept
    # the order of scripts is kept (jQuery before bootstrap-table)
    assert out.index("jquery.min.js") < out.index("bootstrap.bundle.min.js") < out.index("bootstrap-table.min.js")
    assert offline_docs.rewrite(out, site=site, page=page) == out  # idempotent


def test_unknown_cdn_reference_is_reported_not_hidden(tmp_path):
    text = '<script src="https://cdn.example.org/newlib@1/newlib.min.js"></script>'
    unknown: set[str] = set()
    assert offline_docs.rewrite(text, site=tmp_path, page=tmp_path / "index.html", unknown=unknown) == text
    assert unknown == {"https://cdn.example.org/newlib@1/newlib.min.js"}
    assert offline_docs.external_references(text) == ["https://cdn.example.org/newlib@1/newlib.min.js"]


def test_every_rule_has_an_installed_source(tmp_path):
    sources = offline_docs.asset_sources()
    locals_needed = {r.local.removeprefix(offline_docs.OFFLINE_DIR.as_posix() + "/")
                     for r in offline_docs.RULES if r.local and r.local.startswith("static/offline/")}
    assert locals_needed <= set(sources)
    assert any(k.startswith("font-awesome/webfonts/") and k.endswith(".woff2") for k in sources)
    site = tmp_path / "site"
    site.mkdir()
    assert offline_docs.copy_assets(site) == len(sources)
    assert offline_docs.copy_assets(site) == 0  # nothing copied twice
    assert (site / "static/offline/jquery/jquery.min.js").read_bytes()[:3] == b"/*!"


def test_gx_templates_reference_only_known_assets():
    """A GX upgrade that adds a CDN asset fails here first (and the rendered-page test after)."""
    import re

    import great_expectations

    templates = Path(great_expectations.__file__).parent / "render" / "view" / "templates"
    urls = set()
    for tpl in templates.glob("*.j2"):
        urls |= set(re.findall(r"""<(?:script|link)\b[^>]*\b(?:src|href)="(https?://[^"]+)""", tpl.read_text()))
    urls = {u for u in urls if not u.startswith("https://greatexpectations.io")}
    assert urls, "GX templates changed shape: re-check offline_docs.RULES"
    unmatched = sorted(u for u in urls if offline_docs.match(u) is None)
    assert unmatched == []


def test_missing_package_is_named():
    with pytest.raises(offline_docs.OfflineAssetError, match="xstatic-no-such-lib is not installed"):
        offline_docs._xstatic_dir("no_such_lib", "xstatic-no-such-lib")
