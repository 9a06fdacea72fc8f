"""Properties that must hold for any input (DESIGN §4, §5): redaction never lets a secret out,
and the instrumentation never changes what a request does nor emits an invalid attribute.

The pure properties feed random URLs through ``yarl.URL`` into the redactor. The end-to-end
property sends random requests to a loopback echo server twice, traced and untraced, and
compares what the caller got. Every secret (a password or a sensitive query value) contains
``~``, a character no other generated part uses, so "the secret is not in the output" can
neither pass nor fail by coincidence.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import hashlib
import ipaddress
import json
import logging
import random
import string
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import aiohttp
from aiohttp import web
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import SpanKind
from yarl import URL

from aiohttp_otel import create_trace_config
from aiohttp_otel._probes import body as _body
from aiohttp_otel._redaction import DEFAULT_SENSITIVE_QUERY_PARAMS, UrlRedactor

from .conftest import (
    Server,
    SessionFactory,
    SpanLedger,
    Telemetry,
    attrs,
    parse_traceparent,
    serve,
    span_ids,
)

#: Only secrets contain it; yarl keeps it as it is (unreserved) and decodes ``%7E`` to it.
SENTINEL = "~"
SENSITIVE_KEYS = tuple(DEFAULT_SENSITIVE_QUERY_PARAMS)
SENSITIVE_KEYS_SET = frozenset(SENSITIVE_KEYS)
#: Keys that look sensitive and are not (the match is exact and case-sensitive).
NEAR_MISS_KEYS = ("SIG", "sig2", "xsig", "signature", "X-Amz-Signature2", "AWSAccessKeyID", "s")

redact = UrlRedactor(DEFAULT_SENSITIVE_QUERY_PARAMS)

# -- strategies: URL parts -------------------------------------------------------------------

_UNICODE = "äöüßéñçøåÿ€中文пр"
_SUB_DELIMS = "!$&'()*+,;="


def _percent_encoded(alphabet: str) -> st.SearchStrategy[str]:
    """One character written as its UTF-8 percent-encoding, e.g. ``%C3%A4``."""
    return st.sampled_from(alphabet).map(lambda c: quote(c, safe=""))


def _text(alphabet: str, *, min_size: int = 0, max_size: int = 8) -> st.SearchStrategy[str]:
    """Characters of ``alphabet`` mixed with percent-encoded characters (never ``~``)."""
    token = st.one_of(
        st.sampled_from(alphabet), _percent_encoded(string.ascii_letters + " @:/?#&=" + _UNICODE)
    )
    return st.lists(token, min_size=min_size, max_size=max_size).map("".join)


def _secret(alphabet: str) -> st.SearchStrategy[str]:
    """A secret: random text around the sentinel, so it is never a substring of the rest."""
    return st.tuples(_text(alphabet, max_size=6), _text(alphabet, max_size=6)).map(
        lambda parts: f"{parts[0]}{SENTINEL}{parts[1]}"
    )


# Userinfo: unreserved, sub-delims (":" only in the password) and percent-encodings.
_USER_CHARS = string.ascii_letters + string.digits + "-._" + _SUB_DELIMS.replace("&", "")
_users = st.one_of(st.none(), _text(_USER_CHARS))
_passwords = st.one_of(st.none(), st.just(""), _secret(_USER_CHARS + ":"))

_LABEL_CHARS = string.ascii_lowercase + string.digits
_IDNA_CHARS = "abcdefghijklmnopqrstuvwxyzäöüéñçøå"
_ascii_hosts = st.lists(st.text(_LABEL_CHARS, min_size=1, max_size=10), min_size=1, max_size=3).map(
    lambda labels: ".".join([*labels, "example"])
)
_idna_hosts = st.one_of(
    st.just("bücher.example"),
    st.text(_IDNA_CHARS, min_size=1, max_size=10).map(lambda label: f"{label}.example"),
    st.just("пример.испытание"),
    st.just("中文.example"),
)
_ipv4_hosts = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
_ipv6_hosts = st.one_of(
    st.just("[::1]"),
    st.integers(0, 2**128 - 1).map(lambda n: f"[{ipaddress.IPv6Address(n)}]"),
)
hosts = st.one_of(_ascii_hosts, _idna_hosts, _ipv4_hosts, _ipv6_hosts)
ports = st.one_of(st.none(), st.integers(1, 65535))

_PATH_CHARS = string.ascii_letters + string.digits + "-._" + _SUB_DELIMS + ":@ " + _UNICODE
paths = st.lists(_text(_PATH_CHARS), max_size=4).map(lambda segments: "/" + "/".join(segments))

# Query pieces, joined by "&": plain pairs (repeated keys, empty values, "=" in values), bare
# keys, empty pieces ("&&"), near-miss keys, and sensitive keys with secret or empty values.
_QUERY_CHARS = string.ascii_letters + string.digits + "-._+" + "!$'()*,;:@/? =" + _UNICODE
_plain_keys = st.one_of(st.sampled_from(("a", "b", "q", "", *NEAR_MISS_KEYS)), _text(_QUERY_CHARS))
_plain_pieces = st.one_of(
    st.tuples(_plain_keys, _text(_QUERY_CHARS + "="))
    # yarl decodes %73 to "s": a generated "%73ig" is "sig", and sensitive.
    .filter(lambda kv: unquote(kv[0]) not in SENSITIVE_KEYS_SET)
    .map(lambda kv: f"{kv[0]}={kv[1]}"),
    _plain_keys,  # a bare key, even "sig": no "=", no value, nothing to redact
    st.sampled_from(SENSITIVE_KEYS),
    st.just(""),
)


@dataclass(frozen=True)
class Piece:
    """One ``&``-separated piece of a query; ``key`` is set when its value must be redacted."""

    text: str
    key: str | None = None
    value: str = ""

    @property
    def redacted(self) -> str:
        return self.text if self.key is None else f"{self.key}=REDACTED"


_secret_pieces = st.tuples(
    st.sampled_from(SENSITIVE_KEYS), st.one_of(st.just(""), _secret(_QUERY_CHARS + "="))
).map(lambda kv: Piece(f"{kv[0]}={kv[1]}", kv[0], kv[1]))
queries = st.one_of(
    st.none(),
    st.lists(st.one_of(_plain_pieces.map(Piece), _secret_pieces), min_size=1, max_size=8),
)
fragments = st.one_of(st.none(), _text(_QUERY_CHARS + "&=#", max_size=10))


def _assemble(
    scheme: str,
    userinfo: str | None,
    host: str,
    port: int | None,
    path: str,
    query: str | None,
    fragment: str | None,
) -> str:
    authority = ("" if userinfo is None else f"{userinfo}@") + host
    if port is not None:
        authority += f":{port}"
    text = f"{scheme}://{authority}{path}"
    if query is not None:
        text += f"?{query}"
    if fragment is not None:
        text += f"#{fragment}"
    return text


def _userinfo(user: str | None, password: str | None) -> str | None:
    if password is not None:
        return f"{user or ''}:{password}"
    return user


# -- pure properties -------------------------------------------------------------------------


@settings(max_examples=600, deadline=None)
@given(
    scheme=st.sampled_from(("http", "https")),
    user=_users,
    password=_passwords,
    host=hosts,
    port=ports,
    path=paths,
    pieces=queries,
    fragment=fragments,
)
def test_property_yarl_urls_lose_their_secrets_and_keep_every_other_byte(
    scheme: str,
    user: str | None,
    password: str | None,
    host: str,
    port: int | None,
    path: str,
    pieces: list[Piece] | None,
    fragment: str | None,
) -> None:
    query = None if pieces is None else "&".join(p.text for p in pieces)
    try:
        url = URL(_assemble(scheme, _userinfo(user, password), host, port, path, query, fragment))
        text = str(url)
    except (ValueError, UnicodeError):
        assume(False)  # not a URL yarl accepts (some IDNA labels): nothing to redact
    # The oracle: the same URL written with the secrets already replaced, through yarl too.
    # Redacting after yarl's encoding must give what encoding the redacted URL gives.
    has_userinfo = url.raw_user is not None or url.raw_password is not None
    redacted_query = None if pieces is None else "&".join(p.redacted for p in pieces)
    expected = str(
        URL(
            _assemble(
                scheme,
                "REDACTED:REDACTED" if has_userinfo else None,
                host,
                port,
                path,
                redacted_query,
                fragment,
            )
        )
    )
    assert SENTINEL not in expected  # the construction keeps the secret checks meaningful

    out = redact(text)

    assert out == expected
    if url.raw_password:
        assert SENTINEL in url.raw_password
        assert url.raw_password not in out
        assert url.password is not None
        assert url.password not in out
    if pieces is not None:
        # yarl keeps the "&" structure: its pieces line up with the generated ones.
        encoded = url.raw_query_string.split("&")
        assert len(encoded) == len(pieces)
        for piece, written in zip(pieces, encoded, strict=True):
            if piece.key is not None and piece.value:
                value = written.partition("=")[2]
                assert SENTINEL in value
                assert value not in out
    assert SENTINEL not in out
    assert "%7E" not in out.upper()


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=200))
def test_property_any_text_is_redacted_without_raising_and_redaction_is_idempotent(
    text: str,
) -> None:
    out = redact(text)
    assert isinstance(out, str)
    assert redact(out) == out


def _spell(key: str, encode: list[bool], upper_hex: bool) -> str:
    """``key`` with the characters picked by ``encode`` percent-encoded, e.g. ``%73ig``."""
    out = []
    for char, flag in zip(key, encode, strict=False):
        code = f"%{ord(char):02X}" if upper_hex else f"%{ord(char):02x}"
        out.append(code if flag else char)
    out.append(key[len(encode) :])
    return "".join(out)


@settings(max_examples=300, deadline=None)
@given(
    key=st.sampled_from(SENSITIVE_KEYS),
    encode=st.lists(st.booleans(), min_size=1, max_size=24).filter(any),
    upper_hex=st.booleans(),
    secret=st.text(string.ascii_letters + string.digits, max_size=8).map(lambda t: t + SENTINEL),
    before=st.lists(_plain_pieces, max_size=3),
)
def test_property_a_percent_encoded_sensitive_key_is_still_redacted(
    key: str, encode: list[bool], upper_hex: bool, secret: str, before: list[str]
) -> None:
    """RFC 3986 §6.2.2.2: a percent-encoded unreserved character is that character, so
    ``%73ig`` is ``sig`` to every server. yarl normalises it, except for a URL the caller
    marks as already encoded (``URL(..., encoded=True)``, what aiohttp's docs advise for
    pre-signed URLs), which reaches ``url.full`` as written."""
    spelled = _spell(key, encode, upper_hex)
    assume(spelled != key)
    url = URL(
        f"https://bucket.example/o?{'&'.join([*before, f'{spelled}={secret}'])}", encoded=True
    )
    assert URL(str(url)).query.getall(key)[-1] == secret  # what the server reads

    out = redact(str(url))

    assert secret not in out
    assert SENTINEL not in out


async def test_a_percent_encoded_sensitive_key_of_a_real_request_is_redacted(
    make_session: SessionFactory, telemetry: Telemetry
) -> None:
    """The server reads ``%73ig`` as ``sig``: the value it carries is the signature."""

    async def query(request: web.Request) -> web.Response:
        return web.json_response(dict(request.query))

    app = web.Application()
    app.router.add_get("/o", query)
    async with serve(app) as server:
        url = URL(f"{server.url('/o')}?a=1&%73ig=s3cr3t{SENTINEL}", encoded=True)
        async with make_session().get(url) as response:
            seen = await response.json()
    assert seen == {"a": "1", "sig": f"s3cr3t{SENTINEL}"}
    full = attrs(telemetry.only_span())["url.full"]
    assert isinstance(full, str)
    assert SENTINEL not in full, full


# -- end to end: random requests through a traced and an untraced session ---------------------

PROPAGATION_HEADERS = frozenset({"traceparent", "tracestate", "baggage"})


async def _echo(request: web.Request) -> web.Response:
    """What arrived, as a digest in a header, then the request body echoed back; or, when
    asked, a redirect that carries the request's own secrets (see ``_redirect``)."""
    body = await request.read()
    headers = {"X-Traceparent": request.headers.get("traceparent", "")}
    mode = request.headers.get("X-Redirect")
    if mode is not None and not request.path.startswith(FINAL):
        return web.Response(status=302, headers={**headers, "Location": _redirect(request, mode)})
    seen = {
        "method": request.method,
        "path": request.raw_path,
        "headers": [
            [k, v] for k, v in request.headers.items() if k.lower() not in PROPAGATION_HEADERS
        ],
        "body": hashlib.sha256(body).hexdigest(),
    }
    headers["X-Echo"] = hashlib.sha256(json.dumps(seen).encode()).hexdigest()
    status = int(request.headers.get("X-Want-Status", "200"))
    if status in (204, 304):
        return web.Response(status=status, headers=headers)
    return web.Response(
        status=status, body=json.dumps(seen).encode() + b"\n" + body, headers=headers
    )


#: The path a "same" redirect goes to, where the echo answers instead of redirecting again.
FINAL = "/__final"


def _redirect(request: web.Request, mode: str) -> str:
    """A ``Location`` with the credentials and query the request came with: to itself
    (``loop``, until aiohttp gives up), to an ``ftp://`` URL (which aiohttp refuses) or to
    ``FINAL`` on this server (``same``)."""
    userinfo = ""
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Basic "):
        with contextlib.suppress(ValueError):
            user, _, password = base64.b64decode(auth[6:]).decode("latin-1").partition(":")
            userinfo = f"{quote(user, safe='')}:{quote(password, safe='')}@"
    raw_query = request.rel_url.raw_query_string
    query = f"?{raw_query}" if raw_query else ""
    if mode == "loop":  # absolute: a path starting "//" would name another host
        return f"http://{request.host}{request.raw_path}"
    if mode == "ftp":
        return f"ftp://{userinfo}files.example/x{query}"
    return f"http://{userinfo}{request.host}{FINAL}{query}"


METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PURGE", "FOO", "M-SEARCH")
_TCHAR = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|"  # RFC 9110 tchar, minus "~"
_header_names = st.one_of(
    st.sampled_from(("Accept", "Authorization", "Cookie", "X-Api-Key", "Cache-Control")),
    st.text(_TCHAR, min_size=1, max_size=12).map(lambda name: f"X-{name}"),
)
_VISIBLE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != SENTINEL)
_header_values = st.text(_VISIBLE + " \t", max_size=40).map(str.strip)
_bodies = st.one_of(
    st.none(),
    st.binary(max_size=4096),
    st.text(max_size=300),
    st.integers(1, 300_000).map(lambda n: b"\x00" * n),  # several chunks each way
)
_SEGMENT_CHARS = string.ascii_letters + string.digits + "-._!$&'()*+,;=:@ " + _UNICODE
_query_values = st.text(string.ascii_letters + string.digits + " +&=/?%é€'\"", max_size=10)
_request_queries = st.dictionaries(
    st.one_of(
        st.sampled_from(("a", "b", *NEAR_MISS_KEYS)),
        st.text(string.ascii_letters, min_size=1, max_size=6),
    ),
    _query_values,
    max_size=4,
).filter(lambda q: not SENSITIVE_KEYS_SET & q.keys())
_request_secrets = st.dictionaries(
    st.sampled_from(SENSITIVE_KEYS),
    st.tuples(_query_values, _query_values).map(lambda p: f"{p[0]}{SENTINEL}{p[1]}"),
    max_size=2,
)
_credentials = st.one_of(
    st.none(),
    st.tuples(
        st.text(string.ascii_letters + string.digits + "-._", max_size=6),
        st.tuples(
            st.text(string.ascii_letters + string.digits + ":@/?#%é", max_size=6),
            st.text(string.ascii_letters + "!$", max_size=6),
        ).map(lambda p: f"{p[0]}{SENTINEL}{p[1]}"),
    ),
)


@dataclass(frozen=True)
class RequestCase:
    config: int
    method: str
    host: str
    segments: list[str]
    query: dict[str, str]
    secrets: dict[str, str]
    credentials: tuple[str, str] | None
    headers: list[tuple[str, str]]
    body: bytes | str | None
    status: int
    raise_for_status: bool
    redirect: str | None


request_cases = st.builds(
    RequestCase,
    config=st.integers(0, 2),
    method=st.sampled_from(METHODS),
    host=st.sampled_from(("localhost", "127.0.0.1")),
    segments=st.lists(st.text(_SEGMENT_CHARS, max_size=8), max_size=3),
    query=_request_queries,
    secrets=_request_secrets,
    credentials=_credentials,
    headers=st.lists(st.tuples(_header_names, _header_values), max_size=6),
    body=_bodies,
    status=st.sampled_from((200, 200, 201, 204, 404, 500)),
    raise_for_status=st.booleans(),
    redirect=st.sampled_from((None, None, None, "loop", "ftp", "same")),
)
#: aiohttp's TooManyRedirects comes after this many hops (plus the first).
MAX_REDIRECTS = 2

#: The traced sessions an example picks from: defaults; every header captured with phase
#: events and the old attribute names too; spans that end at the headers, without phases.
CONFIGS: tuple[dict[str, Any], ...] = (
    {},
    {
        "captured_request_headers": [".*"],
        # Every response header but Location, which the redirects fill with the secrets.
        "captured_response_headers": ["(?!location$).*"],
        "phases": "events",
        "sem_conv_opt_in_mode": "http/dup",
    },
    {"span_end": "headers", "phases": "off", "max_chunk_events": 2},
)
#: Examples of the end-to-end property (two loopback requests each).
REQUEST_EXAMPLES = 150
#: One example may not take longer than this (it normally takes a few milliseconds).
EXAMPLE_TIMEOUT_S = 10.0

_SCALARS = (str, bool, int, float)


def _valid_attribute_value(value: object) -> bool:
    """An OTel attribute value: a primitive, or a homogeneous sequence of one primitive type."""
    if type(value) in _SCALARS:
        return True
    if isinstance(value, (list, tuple)):
        kinds = {type(v) for v in value}
        return len(kinds) <= 1 and kinds <= set(_SCALARS)
    return False


def _exported_values(span: ReadableSpan) -> Iterator[tuple[str, object]]:
    """Every attribute of a span, its events and its links, as (where, value)."""
    for key, value in (span.attributes or {}).items():
        yield f"{span.name}:{key}", value
    for event in span.events:
        for key, value in (event.attributes or {}).items():
            yield f"{span.name}:{event.name}:{key}", value
    for link in span.links:
        for key, value in (link.attributes or {}).items():
            yield f"{span.name}:link:{key}", value


class _Records(logging.Handler):
    """Collects warnings: the SDK's about attribute values it had to drop or convert, and
    our own fault reports."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def _outcome(
    session: aiohttp.ClientSession, url: URL, case: RequestCase
) -> tuple[tuple[Any, ...], str | None]:
    """What the caller sees (status, what the server saw, the body; or the exception), and
    the traceparent the server received."""
    query = {**case.query, **case.secrets}
    headers = [*case.headers, ("X-Want-Status", str(case.status))]
    if case.redirect is not None:
        headers.append(("X-Redirect", case.redirect))
    try:
        async with session.request(
            case.method,
            url,
            params=query or None,
            headers=CIMultiDict(headers),
            data=case.body,
            max_redirects=MAX_REDIRECTS,
            raise_for_status=case.raise_for_status,
            timeout=aiohttp.ClientTimeout(total=EXAMPLE_TIMEOUT_S / 2),
        ) as response:
            body = await response.read()
            seen = (response.status, response.headers.get("X-Echo"), body)
            return seen, response.headers.get("X-Traceparent") or None
    except aiohttp.ClientResponseError as exc:  # raise_for_status, TooManyRedirects
        traceparent = None if exc.headers is None else exc.headers.get("X-Traceparent")
        return (type(exc).__name__, str(exc)), traceparent
    except (aiohttp.ClientError, ValueError) as exc:
        return (type(exc).__name__, str(exc)), None


class _OwnRandomIds(RandomIdGenerator):
    """Span and trace ids from a generator of our own: hypothesis seeds the global ``random``
    for each example, so the SDK's default ids would repeat from one example to the next."""

    def __init__(self) -> None:
        self._random = random.Random()

    def generate_span_id(self) -> int:
        return self._random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._random.getrandbits(128) or 1


def test_property_random_requests_behave_as_untraced_and_leak_no_secret() -> None:
    """Any method, path, query, headers, body, credentials and redirect: the caller gets what
    an untraced session gets; every span ends once; no secret reaches any exported value;
    every attribute is a valid OTel value. One event loop, server and set of sessions serve
    every example (a sync test: hypothesis drives the examples, the loop runs each one)."""
    ledger = SpanLedger()
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(id_generator=_OwnRandomIds())
    tracer_provider.add_span_processor(ledger)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    # The SDK's complaints about attribute values (it converts or drops invalid ones, so the
    # exported span alone cannot show them), and our own fault reports.
    records = _Records()
    watched = [logging.getLogger("opentelemetry"), logging.getLogger("aiohttp_otel")]
    for logger in watched:
        logger.addHandler(records)
    loop = asyncio.new_event_loop()
    examples = 0
    outcomes: collections.Counter[str] = collections.Counter()

    async def setup() -> tuple[Any, Server, list[aiohttp.ClientSession], aiohttp.ClientSession]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", _echo)
        server_cm = serve(app)
        server = await server_cm.__aenter__()
        traced = [
            aiohttp.ClientSession(
                trace_configs=[
                    create_trace_config(
                        tracer_provider=tracer_provider, meter_provider=meter_provider, **options
                    )
                ]
            )
            for options in CONFIGS
        ]
        return server_cm, server, traced, aiohttp.ClientSession()

    try:
        server_cm, server, traced, bare = loop.run_until_complete(setup())
    except BaseException:
        loop.close()
        raise

    async def one_example(case: RequestCase) -> None:
        url = URL.build(
            scheme="http",
            user=None if case.credentials is None else case.credentials[0],
            password=None if case.credentials is None else case.credentials[1],
            host=case.host,
            port=server.port,
            path="/" + "/".join(case.segments),
        )
        exporter.clear()
        records.messages.clear()
        ledger.started.clear()
        ledger.ended.clear()
        expected, _ = await _outcome(bare, url, case)
        got, traceparent = await _outcome(traced[case.config], url, case)

        assert got == expected
        outcomes[str(got[0])] += 1
        assert ledger.open_spans() == []
        assert ledger.ended_twice() == []
        assert not _body._receiving
        assert records.messages == []
        spans = exporter.get_finished_spans()
        # One CLIENT span per hop, in the order they went out.
        clients = sorted(
            (s for s in spans if s.kind is SpanKind.CLIENT), key=lambda s: s.start_time or 0
        )
        assert 1 <= len(clients) <= MAX_REDIRECTS + 1, [s.name for s in spans]
        full = (clients[0].attributes or {})["url.full"]
        assert isinstance(full, str)
        if case.credentials is not None:
            assert case.credentials[1] not in full
            assert url.raw_password is not None
            assert url.raw_password not in full
            assert "REDACTED:REDACTED@" in full
        for key in case.secrets:
            assert f"{key}=REDACTED" in full
        for span in spans:
            assert span.end_time is not None
            if span.status.description is not None:
                assert SENTINEL not in span.status.description, (span.name, "status")
            for where, value in _exported_values(span):
                assert _valid_attribute_value(value), (where, value)
                for text in value if isinstance(value, tuple) else (value,):
                    if isinstance(text, str):
                        # No secret anywhere: url.full, http.url, messages, captured headers.
                        assert SENTINEL not in text, (where, text)
                        assert "%7E" not in text.upper(), (where, text)
        if traceparent is not None:
            # The last hop's own context went out, whatever headers the caller set.
            assert parse_traceparent(traceparent) == span_ids(clients[-1])

    @settings(
        max_examples=REQUEST_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=request_cases)
    @example(
        # A quote in the URL: aiohttp's messages then quote it with '"' (found by this test).
        case=RequestCase(
            config=0,
            method="GET",
            host="localhost",
            segments=["'"],
            query={},
            secrets={"AWSAccessKeyId": SENTINEL},
            credentials=None,
            headers=[],
            body=None,
            status=200,
            raise_for_status=False,
            redirect="loop",
        )
    )
    @example(
        # A quote in a redirect target that is not the request's URL (found by this test).
        case=RequestCase(
            config=0,
            method="GET",
            host="localhost",
            segments=[],
            query={},
            secrets={"AWSAccessKeyId": f"{SENTINEL}'", "Signature": SENTINEL},
            credentials=None,
            headers=[],
            body=None,
            status=200,
            raise_for_status=False,
            redirect="ftp",
        )
    )
    def run(case: RequestCase) -> None:
        nonlocal examples
        examples += 1
        loop.run_until_complete(asyncio.wait_for(one_example(case), EXAMPLE_TIMEOUT_S))

    async def teardown() -> None:
        for session in (*traced, bare):
            await session.close()
        await server_cm.__aexit__(None, None, None)

    try:
        run()
    finally:
        for logger in watched:
            logger.removeHandler(records)
        loop.run_until_complete(teardown())
        loop.close()
    print(f"\nreal-request property: {examples} examples run; outcomes {dict(outcomes)}")
    data = reader.get_metrics_data()
    assert data is not None
    active = [
        point
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == "http.client.active_requests"
        for point in metric.data.data_points
    ]
    assert active
    assert all(point.value == 0 for point in active), active
    for point in active:
        for key, value in point.attributes.items():
            assert _valid_attribute_value(value), (key, value)
