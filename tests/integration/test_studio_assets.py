"""The studio's static files, pure part: the asset table, ETags, gzip and headers."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from projector.studio_assets import (
    CSP,
    STUDIO_DIR,
    accepts_gzip,
    asset_name,
    load_assets,
    make_asset,
    not_modified,
    preview_csp,
    security_headers,
)


def test_the_table_has_the_page_its_scripts_and_the_vendored_bundle() -> None:
    assets = load_assets(STUDIO_DIR)
    for name in ("index.html", "studio.js", "studio.css", "graph.js", "vendor/studio-vendor.js"):
        assert name in assets, name
    assert assets["index.html"].content_type == "text/html; charset=utf-8"
    assert assets["vendor/studio-vendor.js"].content_type == "text/javascript; charset=utf-8"
    assert "vendor/THIRD_PARTY_LICENSES.txt" in assets


def test_other_files_are_left_out_and_names_are_relative(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.js").write_text("x")
    (tmp_path / "notes.md").write_text("no")
    (tmp_path / ".env").write_text("SECRET=1")
    assert list(load_assets(tmp_path)) == ["sub/a.js"]


def test_an_unknown_suffix_is_refused() -> None:
    with pytest.raises(ValueError, match=r"serves no \.php"):
        make_asset("x.php", b"")


def test_gzip_only_when_it_pays_and_the_etag_is_of_the_bytes() -> None:
    big = make_asset("a.js", b"let x = 1;\n" * 500)
    assert big.gzipped is not None and gzip.decompress(big.gzipped) == big.body
    assert make_asset("b.js", b"x").gzipped is None  # under the threshold
    assert make_asset("c.js", b"let x = 1;\n" * 500).etag == big.etag
    assert make_asset("d.js", b"let y = 1;\n" * 500).etag != big.etag


def test_the_page_is_the_index() -> None:
    assert asset_name("") == "index.html"
    assert asset_name("studio.js") == "studio.js"


def test_if_none_match() -> None:
    assert not_modified('"abc"', '"abc"')
    assert not_modified('W/"abc", "x"', '"abc"')
    assert not_modified("*", '"abc"')
    assert not not_modified('"x"', '"abc"')
    assert not not_modified(None, '"abc"')


def test_accept_encoding() -> None:
    assert accepts_gzip("gzip, deflate, br")
    assert accepts_gzip("br;q=1, gzip;q=0.5")
    assert not accepts_gzip("gzip;q=0")
    assert not accepts_gzip("br")
    assert not accepts_gzip(None)
    assert accepts_gzip("*")


def test_the_csp_allows_no_inline_script_no_eval_and_no_form_submission() -> None:
    assert "script-src 'self'" in CSP
    assert "unsafe-inline" not in CSP and "unsafe-eval" not in CSP
    assert "form-action 'none'" in CSP and "frame-ancestors 'none'" in CSP
    headers = security_headers()
    assert headers["Content-Security-Policy"] == CSP
    assert headers["Cache-Control"] == "no-cache"
    assert headers["Referrer-Policy"] == "no-referrer"


def test_the_page_has_no_inline_script_or_style() -> None:
    page = (STUDIO_DIR / "index.html").read_text("utf-8")
    assert "<style" not in page and " style=" not in page
    for chunk in page.split("<script")[1:]:
        assert 'src="' in chunk.split(">", 1)[0]  # every script is a file


def test_the_preview_page_allows_the_widgets_stylesheet_and_nothing_else() -> None:
    widget = "x;\n  const CSS = `.lf { color: red; }`;\n"
    csp = preview_csp(widget)
    assert "style-src 'self' 'sha256-" in csp
    assert csp.replace(csp.split("style-src ")[1].split(";")[0], "'self'") == CSP
    assert "unsafe-inline" not in csp
