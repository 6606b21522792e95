"""Who may read the web UI: a token that cannot guard it is refused at start-up, a valid token
is never answered with 401, a request naming another site's Host is refused (DNS rebinding),
and an address that cannot be listened on names the option to change."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.cli_run import in_home, mfstore
from tests.ui_run import answer, get, ui_server

pytestmark = pytest.mark.slow

TOKEN = "s3cret-Token_1.~+/=="
REFUSED_CHARACTERS = ("error: the bearer token may hold only ASCII letters, digits and -._~+/ "
                      "(then =), which HTTP headers and cookies carry unchanged (RFC 6750); "
                      "e.g. 32 random hex digits")
EMPTY = ("error: the bearer token is empty, which would let anyone in; give a token, or none to "
         "serve without authentication")


@pytest.mark.parametrize("args, env, message", [
    (["--token", ""], {}, EMPTY),
    (["--token", "   "], {}, EMPTY),
    ([], {"MFSTORE_UI_TOKEN": ""}, EMPTY),
    (["--token", "pässwort"], {}, REFUSED_CHARACTERS),  # latin-1 in a header, UTF-8 in a URL
    (["--token", "a;b"], {}, REFUSED_CHARACTERS),  # a cookie would split it
])
def test_a_token_that_cannot_guard_the_ui_is_refused_at_start(home, args, env, message):
    """As a process: before the fix an empty token started an open server (and never ended)."""
    out = mfstore("--home", str(home), "ui", "--port", "0", *args, env=env, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip() == message
    assert "mfstore UI on" not in out.stderr


def test_a_valid_token_on_an_unknown_page_is_a_404(home):
    with ui_server(home, "--token", TOKEN) as url:
        found = answer(f"{url}/nowhere?token={quote(TOKEN, safe='')}")
        assert found.status == 404 and "no page at /nowhere" in found.body
        assert get(url + "/nowhere", {"Authorization": f"Bearer {TOKEN}"})[0] == 404
        assert get(url + "/nowhere")[0] == 401
        assert get(url + "/nowhere?token=wrong")[0] == 401


def test_the_token_works_as_header_query_and_cookie(home):
    with ui_server(home, "--token", TOKEN) as url:
        assert get(url + "/layers", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        redirect = answer(f"{url}/layers?q=net&token={quote(TOKEN, safe='')}", follow=False)
        assert redirect.status == 303 and redirect.headers["location"] == "/layers?q=net"
        cookie = redirect.headers["set-cookie"].split(";")[0]
        assert get(url + "/layers?q=net", {"Cookie": cookie})[0] == 200
        assert get(url + "/layers", {"Authorization": "Bearer " + TOKEN[:-1]})[0] == 401


def test_a_foreign_host_header_is_refused(home):
    """A page of evil.example whose name was rebound to 127.0.0.1 sends `Host: evil.example`."""
    with ui_server(home) as url:
        port = url.rsplit(":", 1)[1]
        assert get(url + "/layers", {"Host": "evil.example"}) == (400, "Invalid host header")
        assert get(url + "/health", {"Host": f"evil.example:{port}"})[0] == 400
        for name in ("127.0.0.1", "localhost", "LOCALHOST"):
            assert get(url + "/layers", {"Host": f"{name}:{port}"})[0] == 200, name
    with ui_server(home, "--allow-host", "mf.internal") as url:
        assert get(url + "/layers", {"Host": "mf.internal"})[0] == 200
        assert get(url + "/layers", {"Host": "evil.example"})[0] == 400


@pytest.mark.parametrize("host, message", [
    ("nosuchhost.invalid", "error: cannot listen on nosuchhost.invalid: "),
    ("192.0.2.1", "error: cannot listen on 192.0.2.1:8080: Cannot assign requested address"),
])
def test_an_address_that_cannot_be_listened_on_names_host(home, host, message):
    out = in_home(home, "ui", "--host", host, "--port", "8080")
    assert out.returncode == 2
    line = out.stderr.strip()
    assert line.startswith(message) and line.endswith("; pass --host")
    assert len(out.stderr.strip().splitlines()) == 1
