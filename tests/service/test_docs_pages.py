"""/docs, /redoc and the favicon come from this server alone, so they work on a closed network."""
import io
import re

import pytest
from PIL import Image

URL = re.compile(r"""(?:https?:)?//[^\s"'<>)]+""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_name_no_other_host_and_their_files_are_served(client, page):
    answer = client.get(page)
    assert answer.status_code == 200
    assert URL.findall(answer.text) == []
    assets = re.findall(r"""(?:src|href)=["'](/[^"']+)["']""", answer.text)
    assert {"/favicon.ico"} < set(assets)
    for asset in assets:
        assert client.get(asset).status_code == 200, asset


def test_the_redoc_script_asks_no_other_host_for_its_logo(client):
    script = client.get("/static/docs/redoc.offline.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "cdn.redoc.ly" not in script.text and 'alt:"redocly logo"' in script.text


def test_the_favicon_is_an_icon(client):
    answer = client.get("/favicon.ico")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/vnd.microsoft.icon"
    assert Image.open(io.BytesIO(answer.content)).format == "ICO"
