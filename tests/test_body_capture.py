"""Body content capture (opt-in): ``http.request.body.content`` / ``http.response.body.content``.

A ``str`` for textual Content-Types, decoded with the declared charset and cut on a character
boundary; ``bytes`` otherwise; at most the cap; the user's ``body_filter`` last, and its failure
drops the content, never the request. What the caller reads is unchanged.

The first part tests the capture buffer and the options directly; the second, end to end
against real servers, every read path and request body kind.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from aiohttp_otel import AioHttpClientInstrumentor, create_trace_config
from aiohttp_otel._body_capture import (
    DEFAULT_BODY_CAP,
    REQUEST_BODY_CONTENT,
    RESPONSE_BODY_CONTENT,
    BodyCapture,
    BodyContent,
    as_content,
)
from aiohttp_otel._instrumentation import Instrumentation
from aiohttp_otel._options import (
    ENV_CAPTURE_REQUEST_BODY,
    ENV_CAPTURE_RESPONSE_BODY,
    parse_options,
)

from .conftest import Server, SessionFactory, Telemetry, attrs, requires, serve

#: A bytes attribute value reaches the exporter as bytes from opentelemetry-api 1.45 on; an
#: older API decodes it to str (or drops it), so the bytes cases need that API.
KEEPS_BYTES = requires("opentelemetry-api", "1.45.0")

TIMEOUT = aiohttp.ClientTimeout(total=10)


def our_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "aiohttp_otel" and r.levelno == logging.WARNING
    ]


def captured(content_type: str | None, *chunks: bytes, cap: int = DEFAULT_BODY_CAP) -> Any:
    body = BodyContent("response", cap, None)
    capture = body.capture()
    for chunk in chunks:
        capture.feed(chunk)
    headers = {} if content_type is None else {"Content-Type": content_type}
    return body.value(capture, headers)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (ENV_CAPTURE_REQUEST_BODY, ENV_CAPTURE_RESPONSE_BODY):
        monkeypatch.delenv(var, raising=False)


# -- str or bytes, by Content-Type -------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/html; charset=utf-8",
        "text/event-stream",
        "text/csv",
        "application/json",
        "APPLICATION/JSON; charset=UTF-8",
        "application/problem+json",
        "application/vnd.api+json",
        "application/xml",
        "image/svg+xml",
        "application/atom+xml",
        "application/x-www-form-urlencoded",
        "application/x-ndjson",
        "application/javascript",
        "application/yaml",
        "application/merge-patch+json ; charset=utf-8",
    ],
)
def test_a_textual_content_type_gives_a_str(content_type: str) -> None:
    assert captured(content_type, b'{"a": "b"}') == '{"a": "b"}'


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "application/octet-stream",
        "image/png",
        "application/pdf",
        "application/grpc",
        "application/x-protobuf",
        "multipart/form-data; boundary=xyz",  # may hold binary file parts
        "application/jsonish",
        "text",  # no subtype: not a media type we can trust
    ],
)
def test_any_other_content_type_gives_bytes(content_type: str | None) -> None:
    raw = b"\x89PNG\r\n\x1a\n\x00\xff"
    assert captured(content_type, raw) == raw


def test_json_is_text_and_the_same_bytes_as_binary_are_bytes() -> None:
    raw = json.dumps({"name": "café", "n": [1, 2]}, ensure_ascii=False).encode()
    assert captured("application/json", raw) == raw.decode()
    assert captured("application/octet-stream", raw) == raw


# -- the cap and the character boundary --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cap", "expected"),
    [
        ("aé", 1, "a"),
        ("aé", 2, "a"),  # 'é' is 2 bytes: half of it is left out
        ("aé", 3, "aé"),
        ("a€b", 2, "a"),  # '€' is 3 bytes
        ("a€b", 3, "a"),
        ("a€b", 4, "a€"),
        ("a😀", 4, "a"),  # 4-byte character, cut after 3 of its bytes
        ("a😀", 5, "a😀"),
        ("ééé", 5, "éé"),
    ],
)
def test_text_is_cut_on_a_character_boundary(text: str, cap: int, expected: str) -> None:
    assert captured("text/plain; charset=utf-8", text.encode(), cap=cap) == expected


def test_a_character_split_across_two_chunks_is_whole() -> None:
    euro = "€".encode()
    assert captured("text/plain", b"a" + euro[:1], euro[1:] + b"b") == "a€b"


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=60), cap=st.integers(min_value=1, max_value=80))
def test_captured_text_is_the_longest_whole_prefix_within_the_cap(text: str, cap: int) -> None:
    raw = text.encode()
    value = captured("application/json", raw[: cap // 2], raw[cap // 2 :], cap=cap)
    if not raw:
        assert value is None
        return
    assert isinstance(value, str)
    assert text.startswith(value)
    kept = len(value.encode())
    assert kept <= cap
    # Only a partial character may be left out, and a character is at most 4 bytes.
    assert min(cap, len(raw)) - kept < 4
    if len(raw) <= cap:
        assert value == text


def test_binary_is_cut_at_the_cap_exactly() -> None:
    raw = bytes(range(256)) * 2
    assert captured("application/octet-stream", raw[:100], raw[100:], cap=300) == raw[:300]


def test_the_buffer_keeps_no_more_than_the_cap() -> None:
    capture = BodyCapture(10)
    for _ in range(1000):
        capture.feed(b"0123456")
    assert capture.size == 10
    assert captured("text/plain", *([b"0123456"] * 1000), cap=10) == "0123456012"


def test_a_body_shorter_than_the_cap_is_whole() -> None:
    assert captured("text/plain", b"hello ", b"world", cap=4096) == "hello world"


def test_the_default_cap_is_4096_bytes() -> None:
    assert DEFAULT_BODY_CAP == 4096
    assert parse_options(capture_response_body=True, environ={}).capture_response_body == 4096


def test_bytes_like_chunks_are_copied_not_kept() -> None:
    chunk = bytearray(b"abc")
    body = BodyContent("request", 10, None)
    capture = body.capture()
    capture.feed(chunk)
    capture.feed(memoryview(b"def"))
    chunk[:] = b"XYZ"  # the caller reuses its buffer
    assert body.value(capture, {"Content-Type": "text/plain"}) == "abcdef"


def test_nothing_fed_is_no_attribute() -> None:
    assert captured("application/json") is None


# -- charsets ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "raw", "expected"),
    [
        ("text/plain; charset=iso-8859-1", "café".encode("latin-1"), "café"),
        ('text/plain; charset="ISO-8859-1"', "café".encode("latin-1"), "café"),
        ("text/plain;charset=windows-1252", "€5".encode("cp1252"), "€5"),
        ("application/json; charset=utf-16", '{"é": 1}'.encode("utf-16"), '{"é": 1}'),
        ("text/plain; format=flowed; charset=koi8-r", "привет".encode("koi8-r"), "привет"),
        # No charset: UTF-8, whatever the type.
        ("text/plain", "café".encode(), "café"),
        ("application/json", "café".encode(), "café"),
    ],
)
def test_the_declared_charset_decodes_the_text(
    content_type: str, raw: bytes, expected: str
) -> None:
    assert captured(content_type, raw) == expected


@pytest.mark.parametrize("charset", ["x-no-such-charset", "base64", "rot13", ""])
def test_an_unknown_or_non_text_charset_falls_back_to_utf8(charset: str) -> None:
    assert captured(f"text/plain; charset={charset}", "café".encode()) == "café"


def test_invalid_bytes_are_replaced_not_raised() -> None:
    assert captured("text/plain", b"a\xffb\xfe") == "a\ufffdb\ufffd"
    assert captured("text/plain", "café au lait".encode("latin-1")) == "caf\ufffd au lait"
    # A body ending in the first byte of a sequence reads as cut there: it is left out.
    assert captured("text/plain; charset=utf-8", "café".encode("latin-1")) == "caf"


def test_a_utf16_body_cut_mid_unit_is_whole_characters() -> None:
    raw = "abc".encode("utf-16-le")  # 6 bytes
    assert captured("text/plain; charset=utf-16-le", raw, cap=5) == "ab"


def test_the_content_type_is_found_in_any_header_spelling() -> None:
    body = BodyContent("response", 100, None)
    capture = body.capture()
    capture.feed(b"{}")
    assert body.value(capture, {"content-type": "application/json"}) == "{}"
    assert body.value(capture, CIMultiDict({"CONTENT-TYPE": "application/json"})) == "{}"
    assert body.value(capture, None) == b"{}"


def test_as_content_is_the_pure_conversion() -> None:
    assert as_content("né".encode()[:2], "text/plain") == "n"
    assert as_content(b"\x00\x01", "image/png") == b"\x00\x01"


# -- body_filter -------------------------------------------------------------------------------


def filtered(body_filter: Any, raw: bytes, content_type: str = "application/json") -> Any:
    body = BodyContent("response", 100, body_filter)
    capture = body.capture()
    capture.feed(raw)
    return body.value(capture, {"Content-Type": content_type})


def test_the_filter_sees_the_direction_the_content_and_the_headers() -> None:
    seen: list[tuple[Any, ...]] = []

    def keep(direction: str, content: Any, headers: Any) -> Any:
        seen.append((direction, content, dict(headers)))
        return content

    for direction in ("request", "response"):
        body = BodyContent(direction, 100, keep)  # type: ignore[arg-type]
        capture = body.capture()
        capture.feed(b"\x01\x02")
        assert body.value(capture, {"Content-Type": "image/png", "X-Id": "7"}) == b"\x01\x02"
    assert seen == [
        ("request", b"\x01\x02", {"Content-Type": "image/png", "X-Id": "7"}),
        ("response", b"\x01\x02", {"Content-Type": "image/png", "X-Id": "7"}),
    ]


def test_a_filter_can_redact() -> None:
    def redact(direction: str, content: Any, headers: Any) -> Any:
        data = json.loads(content)
        data["password"] = "REDACTED"
        return json.dumps(data)

    value = filtered(redact, b'{"user": "ann", "password": "hunter2"}')
    assert value == '{"user": "ann", "password": "REDACTED"}'


def test_a_filter_can_drop_the_content() -> None:
    assert filtered(lambda direction, content, headers: None, b'{"a": 1}') is None


def test_a_filter_can_replace_binary_with_text() -> None:
    value = filtered(
        lambda direction, content, headers: f"<{len(content)} bytes>", b"\x00" * 7, "image/png"
    )
    assert value == "<7 bytes>"


def test_a_filter_returning_a_bytearray_records_bytes() -> None:
    value = filtered(lambda d, c, h: bytearray(b"xy"), b"ab", "image/png")
    assert value == b"xy"
    assert type(value) is bytes


def test_a_raising_filter_drops_the_content_and_is_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aiohttp_otel")

    def broken(direction: str, content: Any, headers: Any) -> Any:
        raise ValueError("filter bug")

    assert filtered(broken, b'{"a": 1}') is None
    assert filtered(broken, b'{"b": 2}') is None
    warnings = our_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "body_filter" in warnings[0]
    assert "not recorded" in warnings[0]


def test_a_filter_returning_another_type_drops_the_content(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aiohttp_otel")
    assert filtered(lambda d, c, h: {"a": 1}, b'{"a": 1}') is None
    [warning] = our_warnings(caplog)
    assert "body_filter" in warning
    assert "str, bytes or None" in warning


def test_the_filter_is_not_called_without_a_body() -> None:
    calls: list[Any] = []
    body = BodyContent("request", 10, lambda *args: calls.append(args))
    assert body.value(body.capture(), {"Content-Type": "text/plain"}) is None
    assert calls == []


# -- options -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keyword", "env", "expected"),
    [
        (None, None, None),
        (False, None, None),
        (True, None, 4096),
        (0, None, None),
        (1, None, 1),
        (100_000, None, 100_000),
        (None, "true", 4096),
        (None, "TRUE", 4096),
        (None, "on", 4096),
        (None, "false", None),
        (None, "off", None),
        (None, "0", None),
        (None, "1", 1),  # digits are a cap, not a flag
        (None, " 512 ", 512),
        (None, "", None),
        (False, "true", None),  # the keyword wins
        (64, "true", 64),
        ("256", None, 256),
    ],
)
@pytest.mark.parametrize(
    ("option", "var", "field"),
    [
        ("capture_request_body", ENV_CAPTURE_REQUEST_BODY, "capture_request_body"),
        ("capture_response_body", ENV_CAPTURE_RESPONSE_BODY, "capture_response_body"),
    ],
)
def test_capture_options_from_keyword_or_environment(
    option: str, var: str, field: str, keyword: Any, env: str | None, expected: int | None
) -> None:
    environ = {} if env is None else {var: env}
    options = parse_options(**{option: keyword}, environ=environ)
    assert getattr(options, field) == expected
    other = "capture_response_body" if field == "capture_request_body" else "capture_request_body"
    assert getattr(options, other) is None


@pytest.mark.parametrize(
    ("keyword", "env"),
    [(-1, None), (1.5, None), ("lots", None), (None, "lots"), (None, "-5"), (None, "4k")],
)
def test_a_bad_capture_value_warns_and_leaves_capture_off(
    caplog: pytest.LogCaptureFixture, keyword: Any, env: str | None
) -> None:
    caplog.set_level(logging.WARNING, logger="aiohttp_otel")
    environ = {} if env is None else {ENV_CAPTURE_RESPONSE_BODY: env}
    assert (
        parse_options(capture_response_body=keyword, environ=environ).capture_response_body is None
    )
    [warning] = our_warnings(caplog)
    for needle in ("capture_response_body", ENV_CAPTURE_RESPONSE_BODY, "true", "false", "bytes"):
        assert needle in warning
    assert repr(keyword if env is None else env) in warning


def test_a_body_filter_that_is_not_callable_warns_and_is_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aiohttp_otel")
    assert parse_options(body_filter="redact", environ={}).body_filter is None
    [warning] = our_warnings(caplog)
    assert "body_filter" in warning
    assert "(direction, content, headers)" in warning


def test_the_instrumentation_has_a_body_content_per_direction_only_when_on() -> None:
    def keep(direction: str, content: Any, headers: Any) -> Any:
        return content

    off = Instrumentation(parse_options(environ={}))
    assert off.request_body is None
    assert off.response_body is None

    on = Instrumentation(
        parse_options(capture_request_body=10, capture_response_body=True, body_filter=keep)
    )
    assert on.request_body is not None
    assert on.response_body is not None
    assert (on.request_body.direction, on.request_body.cap) == ("request", 10)
    assert (on.response_body.direction, on.response_body.cap) == ("response", 4096)
    assert on.request_body.attribute == REQUEST_BODY_CONTENT == "http.request.body.content"
    assert on.response_body.attribute == RESPONSE_BODY_CONTENT == "http.response.body.content"
    assert on.request_body.body_filter is keep
    assert on.response_body.body_filter is keep


def test_create_trace_config_and_instrument_take_the_capture_keywords(
    telemetry: Telemetry,
) -> None:
    trace_config: Any = create_trace_config(
        capture_request_body=16, capture_response_body=False, body_filter=None
    )
    assert trace_config.instrumentation.request_body.cap == 16
    assert trace_config.instrumentation.response_body is None

    instrumentor = AioHttpClientInstrumentor()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider, capture_response_body=32)
    try:
        assert instrumentor._trace_config is not None
        inst = instrumentor._trace_config.instrumentation
        assert inst.response_body is not None
        assert inst.response_body.cap == 32
        assert inst.request_body is None
    finally:
        instrumentor.uninstrument()


# -- end to end: the servers -------------------------------------------------------------------

JSON_DOC = {"name": "café", "items": [1, 2, 3], "note": "ünïcödé"}
JSON_BYTES = json.dumps(JSON_DOC, ensure_ascii=False).encode()
BINARY = bytes(range(256))
#: 'a' then 2-byte characters: any even cap cuts one in half.
UTF8_TEXT = "a" + "é" * 3000
STREAM_PARTS = [f"part {i}: {'é' * 10}\n".encode() for i in range(5)]
PLAIN = b"abcdefghij" * 1000
GZIP_JSON = json.dumps([JSON_DOC] * 50, ensure_ascii=False).encode()
COMPRESSED = gzip.compress(GZIP_JSON)


async def _json(request: web.Request) -> web.Response:
    return web.Response(body=JSON_BYTES, content_type="application/json", charset="utf-8")


async def _binary(request: web.Request) -> web.Response:
    return web.Response(body=BINARY, content_type="image/png")


async def _utf8(request: web.Request) -> web.Response:
    return web.Response(text=UTF8_TEXT)


async def _latin1(request: web.Request) -> web.Response:
    return web.Response(
        body="café crème".encode("latin-1"), content_type="text/plain", charset="iso-8859-1"
    )


async def _gzip(request: web.Request) -> web.Response:
    return web.Response(
        body=COMPRESSED,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )


async def _stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    await response.prepare(request)
    for i, part in enumerate(STREAM_PARTS):
        if i:
            await asyncio.sleep(0.01)
        await response.write(part)
    await response.write_eof()
    return response


async def _big(request: web.Request) -> web.StreamResponse:
    """100 kB of text in 10 writes: far past any cap, with a pause so it cannot all arrive
    with the headers."""
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await response.prepare(request)
    for i in range(10):
        if i:
            await asyncio.sleep(0.005)
        await response.write(PLAIN)
    await response.write_eof()
    return response


async def _echo(request: web.Request) -> web.Response:
    return web.Response(text=str(len(await request.read())))


def make_capture_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/json", _json)
    app.router.add_get("/binary", _binary)
    app.router.add_get("/utf8", _utf8)
    app.router.add_get("/latin1", _latin1)
    app.router.add_get("/gzip", _gzip)
    app.router.add_get("/stream", _stream)
    app.router.add_get("/big", _big)
    app.router.add_route("*", "/echo", _echo)
    return app


@pytest.fixture(params=["http", "https"])
async def capture_server(request: pytest.FixtureRequest, tls: Any) -> AsyncIterator[Server]:
    async with serve(make_capture_app(), tls.server if request.param == "https" else None) as s:
        yield s


@pytest.fixture
async def plain_capture_server() -> AsyncIterator[Server]:
    async with serve(make_capture_app()) as s:
        yield s


def session_with(make_session: SessionFactory, **options: Any) -> aiohttp.ClientSession:
    return make_session(session_kwargs={"timeout": TIMEOUT}, **options)


Read = Callable[[aiohttp.ClientResponse], Awaitable[bytes]]


async def _read(response: aiohttp.ClientResponse) -> bytes:
    return await response.read()


async def _iter_chunked(response: aiohttp.ClientResponse) -> bytes:
    return b"".join([chunk async for chunk in response.content.iter_chunked(7)])


async def _read_n(response: aiohttp.ClientResponse) -> bytes:
    chunks = []
    while chunk := await response.content.read(5):
        chunks.append(chunk)
    return b"".join(chunks)


READS: dict[str, Read] = {"read": _read, "iter_chunked": _iter_chunked, "read_n": _read_n}


# -- end to end: responses ---------------------------------------------------------------------


async def test_capture_is_off_by_default(
    make_session: SessionFactory, plain_capture_server: Server, telemetry: Telemetry
) -> None:
    session = session_with(make_session)
    async with session.post(plain_capture_server.url("/echo"), data=b"secret") as response:
        await response.read()
    async with session.get(plain_capture_server.url("/json")) as response:
        await response.read()
    for span in telemetry.client_spans():
        assert REQUEST_BODY_CONTENT not in attrs(span)
        assert RESPONSE_BODY_CONTENT not in attrs(span)


@pytest.mark.parametrize("read", list(READS))
async def test_a_json_response_is_text_on_every_read_path(
    make_session: SessionFactory, capture_server: Server, telemetry: Telemetry, read: str
) -> None:
    session = session_with(make_session, capture_response_body=True)
    async with session.get(capture_server.url("/json")) as response:
        assert await READS[read](response) == JSON_BYTES
    assert attrs(telemetry.only_span())[RESPONSE_BODY_CONTENT] == JSON_BYTES.decode()


@pytest.mark.parametrize("read", list(READS))
async def test_a_streamed_response_is_captured_as_it_arrives(
    make_session: SessionFactory, plain_capture_server: Server, telemetry: Telemetry, read: str
) -> None:
    session = session_with(make_session, capture_response_body=True)
    async with session.get(plain_capture_server.url("/stream")) as response:
        assert await READS[read](response) == b"".join(STREAM_PARTS)
    assert attrs(telemetry.only_span())[RESPONSE_BODY_CONTENT] == b"".join(STREAM_PARTS).decode()


async def test_a_released_unread_body_records_what_had_arrived(
    make_session: SessionFactory, plain_capture_server: Server, telemetry: Telemetry
) -> None:
    session = session_with(make_session, capture_response_body=True)
    async with session.get(plain_capture_server.url("/json")) as response:
        assert response.status == 200
        await asyncio.sleep(0.05)  # the small body arrives; nobody reads it
    value = attrs(telemetry.only_span())[RESPONSE_BODY_CONTENT]
    assert value == JSON_BYTES.decode()


async def test_a_body_released_part_way_records_the_part_received(
    make_session: SessionFactory, plain_capture_server: Server, telemetry: Telemetry
) -> None:
    session = session_with(make_session, capture_response_body=100_000_000)
    async with session.get(plain_capture_server.url("/big")) as response:
        first = await response.content.readexactly(len(PLAIN))
    assert first == PLAIN
    value = attrs(telemetry.only_span())[RESPONSE_BODY_CONTENT]
    assert isinstance(value, str)
    # At least what the caller read, at most the whole body, and always a prefix of it.
    assert len(PLAIN) <= len(value) <= 10 * len(PLAIN)
    assert (PLAIN * 10).decode().startswith(value)


async def test_the_response_cap_holds_and_cuts_on_a_character(
    make_session: SessionFactory, plain_capture_server: Server, telemetry: Telemetry
) -> None:
    session = session_with(make_session, capture_response_body=10)
    async with session.get(plain_capture_server.url("/utf8")) as response:
        assert await response.text() == UTF8_TEXT
    # 'a' + 4 'é' is 9 bytes; the 10th byte is half an 'é' and is left out.
    assert attrs(telemetry.only_span())[RESPONSE_BODY_CONTENT] == "aéééé"


async def test_a_long_streamed_body_keeps_only_the_cap(
    make_session: SessionFactory, plain_capture_server: Server, telemetry: Telemetry
) -> None:
    session = session_with(make_session, capture_response_body=True)
    async with session.get(plain_capture_server.url("/big")) as response:
        assert len(await response.read()) == 10 * len(PLAIN)
    span = telemetry.only_span()
    assert attrs(span)[RESPONSE_BODY_CONTENT] == PLAIN.decode()[:4096]
    assert attrs(span)["http.response.body.size"] == 10 * len(PLAIN)


@KEEPS_BYTES
async def test_a_binary_response_is_bytes(
    make_session: SessionFactory, plain_capture_server: Server, telemetry: Telemetry
) -> None:
    session = session_with(make_session, capture_response_body=True)
    async with session.get(plain_capture_server.url("/binary")) as response:
        assert await response.read() == BINARY
    assert attrs(telemetry.only_span())[RESPONSE_BODY_CONTENT] == BINARY


async def test_the_declared_charset_is_honoured(
    make_session: SessionFactory, plain_capture_server: Server, telemetry: Telemetry
) -> None:
    session = session_with(make_session, capture_response_body=True)
    async with session.get(plain_capture_server.url("/latin1")) as response:
        assert await response.text() == "café crème"
    assert attrs(telemetry.only_span())[RESPONSE_BODY_CONTENT] == "café crème"


async def test_a_gzip_response_is_recorded_decoded(
    make_session: SessionFactory, plain_capture_server: Server, telemetry: Telemetry
) -> None:
    session = session_with(make_session, capture_response_body=100_000)
    async with session.get(plain_capture_server.url("/gzip")) as response:
        assert await response.read() == GZIP_JSON
    span = telemetry.only_span()
    assert attrs(span)[RESPONSE_BODY_CONTENT] == GZIP_JSON.decode()
    assert len(COMPRESSED) < len(GZIP_JSON)  # it did come compressed


async def test_a_gzip_response_is_cut_on_a_character_of_the_decoded_text(
    make_session: SessionFactory, plain_capture_server: Server, telemetry: Telemetry
) -> None:
    session = session_with(make_session, capture_response_body=True)
    async with session.get(plain_capture_server.url("/gzip")) as response:
        await response.read()
    # errors="ignore" drops only the cut character here: the rest is valid UTF-8.
    expected = GZIP_JSON[:4096].decode("utf-8", errors="ignore")
    assert attrs(telemetry.only_span())[RESPONSE_BODY_CONTENT] == expected


@pytest.mark.parametrize(("path", "expected"), [("/json", JSON_DOC), ("/gzip", [JSON_DOC] * 50)])
async def test_capture_does_not_change_what_json_returns(
    make_session: SessionFactory,
    bare_session: aiohttp.ClientSession,
    capture_server: Server,
    telemetry: Telemetry,
    path: str,
    expected: Any,
) -> None:
    """The acceptance check of the issue: the user's ``await resp.json()`` is unchanged."""
    session = session_with(make_session, capture_response_body=True)
    async with bare_session.get(capture_server.url(path)) as response:
        assert await response.json() == expected
    async with session.get(capture_server.url(path)) as response:
        assert await response.json() == expected
    # And again with a cap that cuts the JSON in the middle of a document.
    small = session_with(make_session, capture_response_body=5)
    async with small.get(capture_server.url(path)) as response:
        assert await response.json() == expected


# -- end to end: requests ----------------------------------------------------------------------


async def _agen(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(0)
        yield part


#: Each request body kind, made fresh per test (a generator can be sent only once).
REQUEST_BODIES: dict[str, tuple[Callable[[], dict[str, Any]], Any]] = {
    "bytes": (lambda: {"data": b"\x00\x01binary"}, b"\x00\x01binary"),
    "str": (lambda: {"data": "héllo wörld"}, "héllo wörld"),
    "json": (lambda: {"json": {"q": "café"}}, '{"q": "caf\\u00e9"}'),
    "form": (
        lambda: {"data": aiohttp.FormData({"user": "ann", "city": "Zürich"})},
        "user=ann&city=Z%C3%BCrich",
    ),
    "async-generator": (
        lambda: {
            "data": _agen([b"first,", b"second,", b"third"]),
            "headers": {"Content-Type": "text/csv"},
        },
        "first,second,third",
    ),
    "async-generator-binary": (lambda: {"data": _agen([b"\xff\x00", b"\x01"])}, b"\xff\x00\x01"),
}


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param(kind, marks=KEEPS_BYTES) if isinstance(expected, bytes) else kind
        for kind, (_, expected) in REQUEST_BODIES.items()
    ],
)
async def test_each_kind_of_request_body_is_captured_as_sent(
    make_session: SessionFactory, plain_capture_server: Server, telemetry: Telemetry, kind: str
) -> None:
    make_kwargs, expected = REQUEST_BODIES[kind]
    session = session_with(make_session, capture_request_body=True)
    async with session.post(plain_capture_server.url("/echo"), **make_kwargs()) as response:
        received = int(await response.text())
    value = attrs(telemetry.only_span())[REQUEST_BODY_CONTENT]
    assert value == expected
    assert received == len(value if isinstance(value, bytes) else value.encode())


async def test_the_request_cap_holds_and_cuts_on_a_character(
    make_session: SessionFactory, plain_capture_server: Server, telemetry: Telemetry
) -> None:
    session = session_with(make_session, capture_request_body=4)
    async with session.post(plain_capture_server.url("/echo"), data="aééé") as response:
        assert await response.text() == "7"
    assert attrs(telemetry.only_span())[REQUEST_BODY_CONTENT] == "aé"


@KEEPS_BYTES
async def test_only_what_was_sent_is_recorded_when_the_body_fails(
    make_session: SessionFactory, plain_capture_server: Server, telemetry: Telemetry
) -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield b"sent part "
        await asyncio.sleep(0.01)
        raise RuntimeError("the producer broke")

    session = session_with(make_session, capture_request_body=True)
    with pytest.raises(aiohttp.ClientConnectionError):
        async with session.post(plain_capture_server.url("/echo"), data=failing()) as response:
            await response.read()
    [span] = telemetry.client_spans()
    assert attrs(span)[REQUEST_BODY_CONTENT] == b"sent part "


async def test_without_request_capture_no_request_content_with_response_capture(
    make_session: SessionFactory, plain_capture_server: Server, telemetry: Telemetry
) -> None:
    session = session_with(make_session, capture_response_body=True)
    async with session.post(plain_capture_server.url("/echo"), data=b"secret") as response:
        await response.read()
    assert REQUEST_BODY_CONTENT not in attrs(telemetry.only_span())


# -- end to end: the filter --------------------------------------------------------------------


async def test_the_filter_redacts_both_directions(
    make_session: SessionFactory, plain_capture_server: Server, telemetry: Telemetry
) -> None:
    seen: list[tuple[str, str | None]] = []

    def redact(direction: str, content: Any, headers: Any) -> Any:
        seen.append((direction, headers.get("Content-Type")))
        return "[hidden]" if direction == "request" else content

    session = session_with(
        make_session, capture_request_body=True, capture_response_body=True, body_filter=redact
    )
    async with session.post(plain_capture_server.url("/echo"), json={"pw": "x"}) as response:
        assert await response.text() == "11"
    span_attrs = attrs(telemetry.only_span())
    assert span_attrs[REQUEST_BODY_CONTENT] == "[hidden]"
    assert span_attrs[RESPONSE_BODY_CONTENT] == "11"
    assert sorted(seen) == [
        ("request", "application/json"),
        ("response", "text/plain; charset=utf-8"),
    ]


async def test_a_raising_filter_drops_the_content_never_the_request(
    make_session: SessionFactory,
    plain_capture_server: Server,
    telemetry: Telemetry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aiohttp_otel")

    def broken(direction: str, content: Any, headers: Any) -> Any:
        raise KeyError("oops")

    session = session_with(
        make_session, capture_request_body=True, capture_response_body=True, body_filter=broken
    )
    for _ in range(3):
        async with session.post(plain_capture_server.url("/echo"), data=b"abc") as response:
            assert await response.text() == "3"
    spans = telemetry.client_spans()
    assert len(spans) == 3
    for span in spans:
        assert REQUEST_BODY_CONTENT not in attrs(span)
        assert RESPONSE_BODY_CONTENT not in attrs(span)
        assert attrs(span)["http.response.status_code"] == 200
    warnings = our_warnings(caplog)
    assert len([w for w in warnings if "body_filter" in w]) == 1, warnings


async def test_a_filter_returning_none_records_no_content(
    make_session: SessionFactory, plain_capture_server: Server, telemetry: Telemetry
) -> None:
    session = session_with(
        make_session,
        capture_response_body=True,
        body_filter=lambda direction, content, headers: (
            None if isinstance(content, bytes) else content
        ),
    )
    async with session.get(plain_capture_server.url("/binary")) as response:
        await response.read()
    async with session.get(plain_capture_server.url("/json")) as response:
        await response.read()
    binary_span, json_span = telemetry.client_spans()
    assert RESPONSE_BODY_CONTENT not in attrs(binary_span)
    assert attrs(json_span)[RESPONSE_BODY_CONTENT] == JSON_BYTES.decode()
