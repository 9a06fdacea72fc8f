"""``url.full`` redaction: credentials and signed-URL query values, every other byte kept."""

from __future__ import annotations

import socket
import string
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import aiohttp.abc
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from aiohttp_otel import DEFAULT_SENSITIVE_QUERY_PARAMS
from aiohttp_otel._redaction import UrlRedactor

from .conftest import Server, SessionFactory, Telemetry, attrs, fetch, serve

DEFAULT_KEYS = (
    "AWSAccessKeyId",
    "Signature",
    "sig",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
    "X-Amz-Signature",
    "X-Goog-Signature",
)

redact = UrlRedactor(DEFAULT_SENSITIVE_QUERY_PARAMS)

#: A password with a raw "@", as text that never went through yarl's encoding carries it: a
#: captured Location or Referer, a url_filter's output, an exception's message.
RAW_AT = "http://u:p@ss@host/"


def test_the_default_key_list_is_the_documented_one() -> None:
    assert tuple(DEFAULT_SENSITIVE_QUERY_PARAMS) == DEFAULT_KEYS


# -- unit: the pure function -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param(
            "http://user:pass@host/p", "http://REDACTED:REDACTED@host/p", id="user-and-password"
        ),
        pytest.param("http://user@host/p", "http://REDACTED:REDACTED@host/p", id="user-only"),
        pytest.param(
            "http://:pass@host/p", "http://REDACTED:REDACTED@host/p", id="empty-user-with-password"
        ),
        pytest.param(
            "https://user:pass@host:8443/p?q=1#f",
            "https://REDACTED:REDACTED@host:8443/p?q=1#f",
            id="port-query-fragment-kept",
        ),
        pytest.param(
            "http://us%40er:p%3Ass@host/", "http://REDACTED:REDACTED@host/", id="encoded-userinfo"
        ),
        pytest.param("http://user:pass@host", "http://REDACTED:REDACTED@host", id="no-path"),
        pytest.param(
            "http://u:p@[::1]:8080/x", "http://REDACTED:REDACTED@[::1]:8080/x", id="ipv6-host"
        ),
        pytest.param(
            "http://u:p@host/a@b?c=d@e",
            "http://REDACTED:REDACTED@host/a@b?c=d@e",
            id="userinfo-and-at-in-path-and-query",
        ),
        pytest.param(RAW_AT, "http://REDACTED:REDACTED@host/", id="raw-at-in-the-password"),
    ],
)
def test_credentials_become_redacted_redacted(url: str, expected: str) -> None:
    assert redact(url) == expected


@pytest.mark.parametrize("key", DEFAULT_KEYS)
def test_each_default_key_has_its_value_redacted_and_keeps_its_key(key: str) -> None:
    url = f"https://bucket.example/o?a=1&{key}=s3cr%2Bt/v&b=2"
    assert redact(url) == f"https://bucket.example/o?a=1&{key}=REDACTED&b=2"


@pytest.mark.parametrize("key", DEFAULT_KEYS)
def test_each_default_key_is_redacted_first_and_last(key: str) -> None:
    assert redact(f"http://h/?{key}=x") == f"http://h/?{key}=REDACTED"
    assert redact(f"http://h/?z=1&{key}=x") == f"http://h/?z=1&{key}=REDACTED"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param(
            "http://h/p?SIG=1&x-amz-signature=2&signature=3&AWSACCESSKEYID=4&sig=5",
            "http://h/p?SIG=1&x-amz-signature=2&signature=3&AWSACCESSKEYID=4&sig=REDACTED",
            id="case-sensitive",
        ),
        pytest.param(
            "http://h/p?q=a%20b+c&sig=x%2By&r=%E2%82%AC",
            "http://h/p?q=a%20b+c&sig=REDACTED&r=%E2%82%AC",
            id="percent-encodings-and-plus",
        ),
        pytest.param(
            "http://h/p?a=&sig=1&b=", "http://h/p?a=&sig=REDACTED&b=", id="empty-values-kept"
        ),
        pytest.param(
            "http://h/p?sig&flag&sig=1",
            "http://h/p?sig&flag&sig=REDACTED",
            id="keys-without-equals",
        ),
        pytest.param(
            "http://h/p?sig=1&a=1&sig=2&a=1",
            "http://h/p?sig=REDACTED&a=1&sig=REDACTED&a=1",
            id="repeated-keys",
        ),
        pytest.param(
            "http://h/p?a=1;sig=2&b=3", "http://h/p?a=1;sig=2&b=3", id="semicolon-not-a-separator"
        ),
        pytest.param(
            "http://h/p?sig=1;a=2&b=3",
            "http://h/p?sig=REDACTED&b=3",
            id="semicolon-is-part-of-the-value",
        ),
        pytest.param(
            "http://h/p?sig=1#frag", "http://h/p?sig=REDACTED#frag", id="fragment-after-query"
        ),
        pytest.param(
            "http://h/p?sig=1#sig=2&x", "http://h/p?sig=REDACTED#sig=2&x", id="fragment-untouched"
        ),
        pytest.param(
            "http://h/p?xsig=1&sig2=1&mysig=1&X-Amz-Signature2=1&Signatures=1",
            "http://h/p?xsig=1&sig2=1&mysig=1&X-Amz-Signature2=1&Signatures=1",
            id="substring-keys-kept",
        ),
        pytest.param("http://h/p?a=sig=1", "http://h/p?a=sig=1", id="key-inside-a-value"),
        pytest.param(
            "http://h/p?sig=a=b&c=d", "http://h/p?sig=REDACTED&c=d", id="equals-in-sensitive-value"
        ),
        pytest.param(
            "http://h/p?&sig=1&&b=2", "http://h/p?&sig=REDACTED&&b=2", id="empty-pairs-kept"
        ),
        pytest.param("http://h/p/sig=1", "http://h/p/sig=1", id="path-is-not-a-query"),
        pytest.param("http://h/p@q", "http://h/p@q", id="at-in-path-is-not-userinfo"),
        pytest.param(
            "http://h/p?email=a@b.c&next=x", "http://h/p?email=a@b.c&next=x", id="at-in-query"
        ),
        pytest.param("http://h?email=a@b.c", "http://h?email=a@b.c", id="at-in-query-no-path"),
        pytest.param("http://h#a@b", "http://h#a@b", id="at-in-fragment-no-path"),
    ],
)
def test_query_redaction_changes_only_sensitive_values(url: str, expected: str) -> None:
    assert redact(url) == expected


@pytest.mark.parametrize(
    "url",
    ["http://localhost:8080/a/b", "https://h/p?color=blue&size=2#x", "http://h/p@q#r"],
)
def test_a_url_with_nothing_to_redact_is_returned_as_is(url: str) -> None:
    assert redact(url) is url


def test_a_custom_key_list_replaces_the_defaults() -> None:
    custom = UrlRedactor(["token", "color"])
    assert (
        custom("http://h/p?token=t1&sig=s1&color=blue&X-Amz-Signature=a")
        == "http://h/p?token=REDACTED&sig=s1&color=REDACTED&X-Amz-Signature=a"
    )


def test_an_empty_key_list_redacts_only_credentials() -> None:
    nothing = UrlRedactor([])
    assert (
        nothing("http://u:p@h/p?sig=1&X-Amz-Signature=2")
        == "http://REDACTED:REDACTED@h/p?sig=1&X-Amz-Signature=2"
    )
    url = "http://h/p?sig=1"
    assert nothing(url) is url


# -- property --------------------------------------------------------------------------------

# Secrets are drawn from characters that appear nowhere else in the URL (no digits, "%", "~",
# "!", "*", "'", "(" or ")" in the fixed parts or in the plain pairs), so "not in the output"
# cannot pass or fail by coincidence.
_percent = st.builds(lambda b: f"%{b:02X}", st.integers(0, 255))
_secret_char = st.one_of(st.sampled_from(string.digits + "~!*'()"), _percent)
secrets = st.lists(_secret_char, min_size=1, max_size=12).map("".join)
_plain_text = st.text(alphabet=string.ascii_lowercase + "-._+", max_size=6)
plain_pairs = st.one_of(
    st.tuples(_plain_text, _plain_text).map(lambda kv: f"{kv[0]}={kv[1]}"),
    _plain_text,  # a key without "=" (or an empty pair)
).filter(lambda pair: pair.partition("=")[0] not in DEFAULT_KEYS)


@given(
    password=secrets,
    user=st.text(alphabet=string.ascii_lowercase, max_size=5),
    key=st.sampled_from(DEFAULT_KEYS),
    secret=secrets,
    before=st.lists(plain_pairs, max_size=4),
    after=st.lists(plain_pairs, max_size=4),
    fragment=st.one_of(st.none(), _plain_text),
)
def test_property_secrets_never_leave_and_plain_pairs_are_byte_identical(
    password: str,
    user: str,
    key: str,
    secret: str,
    before: list[str],
    after: list[str],
    fragment: str | None,
) -> None:
    tail = "" if fragment is None else f"#{fragment}"
    query = "&".join([*before, f"{key}={secret}", *after])
    url = f"https://{user}:{password}@storage.example/b/o?{query}{tail}"

    out = redact(url)

    assert password not in out
    assert secret not in out
    expected_query = "&".join([*before, f"{key}=REDACTED", *after])
    assert out == f"https://REDACTED:REDACTED@storage.example/b/o?{expected_query}{tail}"


# -- end to end ------------------------------------------------------------------------------


async def _echo(request: web.Request) -> web.Response:
    """What the server really received: the query string and the credentials header."""
    return web.json_response(
        {
            "query": request.query_string,
            "authorization": request.headers.get("Authorization"),
        }
    )


@pytest.fixture
async def echo_server() -> AsyncIterator[Server]:
    app = web.Application()
    app.router.add_get("/echo", _echo)
    async with serve(app) as server:
        yield server


def _with_userinfo(server: Server, path_and_query: str) -> str:
    return f"{server.scheme}://user:pass@{server.host}:{server.port}{path_and_query}"


def _redacted(server: Server, path_and_query: str) -> str:
    return f"{server.scheme}://REDACTED:REDACTED@{server.host}:{server.port}{path_and_query}"


async def test_url_full_of_a_real_request_is_redacted(
    make_session: SessionFactory, server: Server, telemetry: Telemetry
) -> None:
    session = make_session()
    url = _with_userinfo(server, "/ok?X-Amz-Signature=abc&color=blue&sig=xyz")
    assert await fetch(session, url) == (200, "ok")

    span = telemetry.only_span()
    assert attrs(span)["url.full"] == _redacted(
        server, "/ok?X-Amz-Signature=REDACTED&color=blue&sig=REDACTED"
    )
    assert "pass" not in str(attrs(span))
    assert "xyz" not in str(attrs(span))


async def test_the_server_still_receives_the_real_query_and_credentials(
    make_session: SessionFactory, echo_server: Server, telemetry: Telemetry
) -> None:
    session = make_session()
    url = _with_userinfo(echo_server, "/echo?X-Amz-Signature=abc&color=blue&sig=xyz")
    async with session.get(url) as response:
        received = await response.json()

    assert received == {
        "query": "X-Amz-Signature=abc&color=blue&sig=xyz",
        "authorization": "Basic dXNlcjpwYXNz",  # base64("user:pass")
    }
    assert attrs(telemetry.only_span())["url.full"] == _redacted(
        echo_server, "/echo?X-Amz-Signature=REDACTED&color=blue&sig=REDACTED"
    )


async def test_url_filter_runs_first_and_its_result_is_redacted(
    make_session: SessionFactory, echo_server: Server, telemetry: Telemetry
) -> None:
    seen: list[URL] = []

    def url_filter(url: URL) -> str:
        seen.append(url)
        # Drops "color" and adds a signature: what the filter adds is redacted too.
        # yarl 1.7's API (the floor): no without_query_params (1.10) nor extend_query (1.9).
        query = [(k, v) for k, v in url.query.items() if k != "color"]
        return str(url.with_query([*query, ("Signature", "from-filter")]))

    session = make_session(url_filter=url_filter)
    url = _with_userinfo(echo_server, "/echo?color=blue&sig=xyz&size=2")
    async with session.get(url) as response:
        received = await response.json()

    # The filter sees the URL the user passed, credentials included; the wire is untouched.
    assert [str(u) for u in seen] == [url]
    assert received["query"] == "color=blue&sig=xyz&size=2"
    assert attrs(telemetry.only_span())["url.full"] == _redacted(
        echo_server, "/echo?sig=REDACTED&size=2&Signature=REDACTED"
    )


async def test_url_filter_returning_a_url_object_is_redacted(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    # with_path(keep_query=True) would need yarl 1.18; the floor is 1.7.
    session = make_session(url_filter=lambda url: url.with_path("/filtered").with_query(url.query))
    await fetch(session, _with_userinfo(http_server, "/ok?sig=xyz"))

    assert attrs(telemetry.only_span())["url.full"] == _redacted(
        http_server, "/filtered?sig=REDACTED"
    )


async def test_sensitive_query_params_keyword_replaces_the_list(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    session = make_session(sensitive_query_params=["color"])
    await fetch(session, _with_userinfo(http_server, "/ok?X-Amz-Signature=abc&color=blue&sig=xyz"))

    assert attrs(telemetry.only_span())["url.full"] == _redacted(
        http_server, "/ok?X-Amz-Signature=abc&color=REDACTED&sig=xyz"
    )


async def test_sensitive_query_params_env_var_replaces_the_list(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_AIOHTTP_CLIENT_SENSITIVE_QUERY_PARAMS", "color,token")
    session = make_session()
    await fetch(session, _with_userinfo(http_server, "/ok?token=t&color=blue&sig=xyz&size=2"))

    assert attrs(telemetry.only_span())["url.full"] == _redacted(
        http_server, "/ok?token=REDACTED&color=REDACTED&sig=xyz&size=2"
    )


async def test_sensitive_query_params_keyword_wins_over_the_env_var(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_AIOHTTP_CLIENT_SENSITIVE_QUERY_PARAMS", "color")
    session = make_session(sensitive_query_params="size")
    await fetch(session, f"{http_server.url('/ok')}?color=blue&size=2&sig=x")

    assert attrs(telemetry.only_span())["url.full"] == http_server.url(
        "/ok?color=blue&size=REDACTED&sig=x"
    )


async def test_empty_sensitive_query_params_keyword_keeps_only_credential_redaction(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    session = make_session(sensitive_query_params=[])
    await fetch(session, _with_userinfo(http_server, "/ok?sig=xyz"))

    assert attrs(telemetry.only_span())["url.full"] == _redacted(http_server, "/ok?sig=xyz")


# -- secrets quoted in exception text -------------------------------------------------------


async def test_an_exception_quoting_the_url_leaks_no_secret(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    """aiohttp's TooManyRedirects message quotes the request URL, query and all: the exception
    event's message and stacktrace, and the status description, get it redacted."""
    url = http_server.url("/loop?sig=s3cr3t&X-Amz-Signature=t0ps3cr3t&color=blue")
    session = make_session()
    with pytest.raises(aiohttp.TooManyRedirects) as raised:
        await fetch(session, url, max_redirects=2)
    assert "s3cr3t" in str(raised.value)  # what the caller sees is untouched

    last = telemetry.client_spans()[-1]
    [event] = [e for e in last.events if e.name == "exception"]
    assert event.attributes is not None
    texts = [
        str(event.attributes["exception.message"]),
        str(event.attributes["exception.stacktrace"]),
        last.status.description or "",
    ]
    for text in texts:
        assert "s3cr3t" not in text
        assert "t0ps3cr3t" not in text
    assert "sig=REDACTED" in texts[0]
    assert "X-Amz-Signature=REDACTED" in texts[1]
    assert event.attributes["exception.type"] == "aiohttp.client_exceptions.TooManyRedirects"


# -- a raw "@" in a password, in text that reaches redaction unencoded ------------------------


def assert_no_password(text: str) -> None:
    assert "p@ss" not in text
    assert "ss@" not in text
    assert "REDACTED:REDACTED@" in text


async def test_a_captured_location_keeps_no_password_with_a_raw_at(
    make_session: SessionFactory, telemetry: Telemetry
) -> None:
    async def moved(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": RAW_AT})

    app = web.Application()
    app.router.add_get("/moved", moved)
    async with serve(app) as server:
        session = make_session(captured_response_headers=["location"])
        async with session.get(server.url("/moved"), allow_redirects=False) as response:
            assert response.headers["Location"] == RAW_AT  # the caller sees it untouched
    [location] = attrs(telemetry.only_span())["http.response.header.location"]
    assert location == "http://REDACTED:REDACTED@host/"


async def test_a_captured_referer_keeps_no_password_with_a_raw_at(
    make_session: SessionFactory, echo_server: Server, telemetry: Telemetry
) -> None:
    session = make_session(captured_request_headers=["referer"])
    await fetch(session, echo_server.url("/echo"), headers={"Referer": RAW_AT})
    [referer] = attrs(telemetry.only_span())["http.request.header.referer"]
    assert referer == "http://REDACTED:REDACTED@host/"


async def test_url_filter_output_keeps_no_password_with_a_raw_at(
    make_session: SessionFactory, echo_server: Server, telemetry: Telemetry
) -> None:
    session = make_session(url_filter=lambda url: RAW_AT)
    await fetch(session, echo_server.url("/echo"))
    assert attrs(telemetry.only_span())["url.full"] == "http://REDACTED:REDACTED@host/"


class QuotingResolver(aiohttp.abc.AbstractResolver):
    """Fails every lookup with a message that quotes a URL as text, raw "@" and all."""

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[Any]:
        raise OSError(socket.EAI_FAIL, f"no route to {RAW_AT} today")

    async def close(self) -> None:
        return None


async def test_exception_text_keeps_no_password_with_a_raw_at(
    make_session: SessionFactory, telemetry: Telemetry
) -> None:
    session = make_session(connector_kwargs={"resolver": QuotingResolver()})
    with pytest.raises(aiohttp.ClientConnectorError) as raised:
        await fetch(session, "http://quoting.test:1/")
    assert RAW_AT in str(raised.value)  # the caller's exception is untouched

    span = telemetry.only_span()
    [event] = [e for e in span.events if e.name == "exception"]
    assert event.attributes is not None
    for text in (
        str(event.attributes["exception.message"]),
        str(event.attributes["exception.stacktrace"]),
        span.status.description or "",
    ):
        assert_no_password(text)
