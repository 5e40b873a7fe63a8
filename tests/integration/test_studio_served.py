"""The studio on the real ``leadflow serve``: /studio/ and its files with the strict CSP,
revalidation by ETag, gzip, and no file outside the studio's folder."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from projector.studio_assets import CSP
from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc = ServerProcess(tmp_path_factory.mktemp("data"), env={"LEADFLOW_DELIVERY": "off"})
    proc.start()
    try:
        yield proc.http_url
    finally:
        proc.stop()


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_the_page_is_served_with_the_strict_csp_and_revalidated(server: str) -> None:
    status, headers, body = _get(f"{server}/studio/")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Content-Security-Policy"] == CSP
    assert headers["Cache-Control"] == "no-cache"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY"
    assert b'<script type="module" src="studio.js">' in body
    status, again, _ = _get(f"{server}/studio/", {"If-None-Match": headers["ETag"]})
    assert status == 304 and again["ETag"] == headers["ETag"]


def test_the_bundle_is_gzipped_for_clients_that_take_it(server: str) -> None:
    status, headers, body = _get(
        f"{server}/studio/vendor/studio-vendor.js", {"Accept-Encoding": "gzip"}
    )
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert headers["Vary"] == "Accept-Encoding"
    plain_status, plain, raw = _get(f"{server}/studio/vendor/studio-vendor.js")
    assert plain_status == 200 and "Content-Encoding" not in plain
    assert len(body) < len(raw) / 2


def test_studio_without_slash_redirects_and_unknown_files_are_404(server: str) -> None:
    request = urllib.request.Request(f"{server}/studio")
    opener = urllib.request.build_opener(NoRedirect())
    with pytest.raises(urllib.error.HTTPError) as redirect:
        opener.open(request, timeout=5)
    assert redirect.value.code == 308 and redirect.value.headers["Location"] == "/studio/"
    for path in ("/studio/nope.js", "/studio/../app/cli.py", "/studio/%2e%2e/pyproject.toml"):
        status, headers, _ = _get(f"{server}{path}")
        assert status == 404, path
    status, headers, _ = _get(f"{server}/studio/nope.js")
    assert headers["Content-Security-Policy"] == CSP


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def test_the_committed_bundle_carries_its_licences() -> None:
    vendor = Path(__file__).resolve().parents[2] / "projector/static/studio/vendor"
    notices = (vendor / "THIRD_PARTY_LICENSES.txt").read_text("utf-8")
    for package in ("@dagrejs/dagre", "@codemirror/view", "@codemirror/lang-yaml", "yaml@"):
        assert package in notices


def test_the_preview_page_may_style_the_widget(server: str) -> None:
    status, headers, body = _get(f"{server}/studio/preview.html")
    assert status == 200 and b'src="preview.js"' in body
    csp = headers["Content-Security-Policy"]
    assert "style-src 'self' 'sha256-" in csp and "script-src 'self';" in csp
    _, page_headers, _ = _get(f"{server}/studio/")
    assert page_headers["Content-Security-Policy"] == CSP  # only the preview page


def test_every_studio_file_is_package_data_so_an_installed_image_serves_it() -> None:
    """The Docker image installs the package (not editable): files not matched by
    pyproject.toml's package-data are missing there and /studio/ would be 404."""
    import tomllib
    from pathlib import PurePosixPath

    def matches(name: str, pattern: str) -> bool:  # setuptools' globs: '*' stops at '/'
        path, glob = PurePosixPath(name), PurePosixPath(pattern)
        return len(path.parts) == len(glob.parts) and path.match(pattern)

    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["projector"]
    studio = root / "projector" / "static" / "studio"
    files = [p.relative_to(root / "projector").as_posix() for p in studio.rglob("*") if p.is_file()]
    assert files
    missing = [f for f in files if not any(matches(f, p) for p in patterns)]
    assert missing == []
