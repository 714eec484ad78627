"""Static files as make run serves them (collected, hashed, gzipped by whitenoise): far-future
caching, compression, the small plotly.js bundle, and /api/docs from local files only."""
from __future__ import annotations

import re

import pytest

from tests.runs_helpers import make_dataset, make_run

pytestmark = pytest.mark.django_db
TEN_YEARS = "max-age=315360000, public, immutable"


def script_urls(html: str) -> list[str]:
    return re.findall(r'<script src="([^"]+)"', html)


def fetch(client, url, **headers):
    response = client.get(url, **headers)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response, body


def test_the_run_pages_plotly_is_the_basic_bundle_hashed_gzipped_and_cached_for_years(client,
                                                                                      user):
    run = make_run(user, make_dataset(user), steps=2)
    client.force_login(user)
    html = client.get(f"/runs/{run.pk}/").content.decode()
    plotly = next(u for u in script_urls(html) if "plotly" in u)
    assert re.fullmatch(r"/static/vendor/plotly/plotly\.min\.[0-9a-f]{12}\.js", plotly)
    response, body = fetch(client, plotly, HTTP_ACCEPT_ENCODING="gzip, deflate")
    assert response.status_code == 200
    assert response["Cache-Control"] == TEN_YEARS
    assert response["Content-Encoding"] == "gzip" and len(body) < 450_000  # 4.8 MB before
    _, plain = fetch(client, plotly)
    assert plain.startswith(b"/**\n* plotly.js (basic - minified) v4.")
    for url in script_urls(html) + re.findall(r'<link rel="stylesheet" href="([^"]+)"', html):
        assert url.startswith("/static/") and fetch(client, url)[0]["Cache-Control"] == TEN_YEARS


def test_the_api_docs_load_swagger_ui_from_this_server(client, user):
    client.force_login(user)
    html = client.get("/api/docs").content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and all(a.startswith("/static/") for a in assets), assets
    assert "cdn" not in html.lower()
    assert '"validatorUrl": null' in html  # no badge image from the online validator
    bundle = next(a for a in assets if "swagger-ui-bundle" in a)
    response, body = fetch(client, bundle)
    assert response.status_code == 200 and b"SwaggerUIBundle" in body


def test_a_page_names_no_file_collectstatic_has_not_seen(client, user):
    """Without DEBUG, a template naming a missing static file is an error, not a silent 404
    (the manifest storage is strict), so every page that renders names real files."""
    from django.contrib.staticfiles.storage import staticfiles_storage

    with pytest.raises(ValueError, match="Missing staticfiles manifest entry"):
        staticfiles_storage.url("js/no-such-file.js")
