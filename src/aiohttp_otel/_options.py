"""Every option, from its keyword or its environment variable, parsed and validated once.

A keyword wins over its environment variable. A bad value never raises: it is reported once,
naming the option and what it accepts, and the default is used instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._body_capture import DEFAULT_BODY_CAP
from ._diagnostics import warn_once
from ._exception_logs import (
    ENV_EXCEPTION_SIGNAL,
    EXCEPTION_SIGNAL_CHOICES,
    LOGS,
    LOGS_DUP,
    SPAN_EVENTS,
)
from ._hooks import Hook
from ._redaction import DEFAULT_SENSITIVE_HEADERS, DEFAULT_SENSITIVE_QUERY_PARAMS
from ._semconv import DEFAULT_KNOWN_METHODS, SemconvMode

ENV_EXCLUDED_URLS = "OTEL_PYTHON_AIOHTTP_CLIENT_EXCLUDED_URLS"
ENV_EXCLUDED_URLS_GENERIC = "OTEL_PYTHON_EXCLUDED_URLS"
ENV_CAPTURE_REQUEST = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST"
ENV_CAPTURE_RESPONSE = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE"
ENV_SANITIZE = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS"
ENV_KNOWN_METHODS = "OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS"
ENV_SEMCONV = "OTEL_SEMCONV_STABILITY_OPT_IN"
ENV_SENSITIVE_QUERY = "OTEL_PYTHON_AIOHTTP_CLIENT_SENSITIVE_QUERY_PARAMS"
ENV_PHASES = "OTEL_PYTHON_AIOHTTP_CLIENT_PHASES"
ENV_CHUNK_EVENTS = "OTEL_PYTHON_AIOHTTP_CLIENT_CHUNK_EVENTS"
ENV_MAX_CHUNK_EVENTS = "OTEL_PYTHON_AIOHTTP_CLIENT_MAX_CHUNK_EVENTS"
ENV_SPAN_END = "OTEL_PYTHON_AIOHTTP_CLIENT_SPAN_END"
ENV_CAPTURE_REQUEST_BODY = "OTEL_PYTHON_AIOHTTP_CLIENT_CAPTURE_REQUEST_BODY"
ENV_CAPTURE_RESPONSE_BODY = "OTEL_PYTHON_AIOHTTP_CLIENT_CAPTURE_RESPONSE_BODY"
ENV_BODY_SIZE_METRICS = "OTEL_PYTHON_AIOHTTP_CLIENT_BODY_SIZE_METRICS"

PHASES_CHOICES = ("spans", "events", "off")
SPAN_END_CHOICES = ("body", "headers")
DEFAULT_MAX_CHUNK_EVENTS = 64


@dataclass(frozen=True)
class Options:
    """The parsed configuration of one trace config (or of one ``instrument()`` call)."""

    tracer_provider: Any
    meter_provider: Any
    url_filter: Callable[[Any], str] | None
    request_hook: Hook | None
    response_hook: Hook | None
    captured_request_headers: tuple[str, ...]
    captured_response_headers: tuple[str, ...]
    sensitive_headers: tuple[str, ...]
    sensitive_query_params: tuple[str, ...]
    excluded_urls: re.Pattern[str] | None
    known_methods: frozenset[str]
    semconv: SemconvMode
    phases: str
    chunk_events: bool
    max_chunk_events: int
    span_end: str
    #: Record http.client.request/response.body.size: opt-in, a histogram costs per request.
    body_size_metrics: bool
    #: The body capture caps in bytes; ``None`` when capture is off (``False`` or ``0``).
    capture_request_body: int | None
    capture_response_body: int | None
    body_filter: Callable[..., Any] | None
    logger_provider: Any
    #: One of ``EXCEPTION_SIGNAL_CHOICES``: ``span_events``, ``logs`` or ``logs/dup``.
    exception_signal: str


def parse_options(
    *,
    url_filter: Any = None,
    request_hook: Any = None,
    response_hook: Any = None,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    captured_request_headers: Any = None,
    captured_response_headers: Any = None,
    sensitive_headers: Any = None,
    sensitive_query_params: Any = None,
    excluded_urls: Any = None,
    known_methods: Any = None,
    sem_conv_opt_in_mode: Any = None,
    phases: Any = None,
    chunk_events: Any = None,
    max_chunk_events: Any = None,
    span_end: Any = None,
    body_size_metrics: Any = None,
    capture_request_body: Any = None,
    capture_response_body: Any = None,
    body_filter: Any = None,
    logger_provider: Any = None,
    exception_signal: Any = None,
    environ: Mapping[str, str] | None = None,
) -> Options:
    """Build :class:`Options` from keywords, falling back to the environment."""
    env = os.environ if environ is None else environ
    return Options(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        url_filter=_callable_or_none("url_filter", url_filter, "a callable taking a yarl.URL"),
        request_hook=_hook("request_hook", request_hook),
        response_hook=_hook("response_hook", response_hook),
        captured_request_headers=_patterns(
            "captured_request_headers", captured_request_headers, env, ENV_CAPTURE_REQUEST, ()
        ),
        captured_response_headers=_patterns(
            "captured_response_headers", captured_response_headers, env, ENV_CAPTURE_RESPONSE, ()
        ),
        sensitive_headers=_patterns(
            "sensitive_headers", sensitive_headers, env, ENV_SANITIZE, DEFAULT_SENSITIVE_HEADERS
        ),
        sensitive_query_params=_names(
            "sensitive_query_params",
            sensitive_query_params,
            env,
            ENV_SENSITIVE_QUERY,
            DEFAULT_SENSITIVE_QUERY_PARAMS,
        ),
        excluded_urls=_excluded_urls(excluded_urls, env),
        known_methods=frozenset(
            _names("known_methods", known_methods, env, ENV_KNOWN_METHODS, DEFAULT_KNOWN_METHODS)
        ),
        semconv=_semconv(sem_conv_opt_in_mode, env),
        phases=_choice("phases", phases, env, ENV_PHASES, PHASES_CHOICES),
        chunk_events=_flag("chunk_events", chunk_events, env, ENV_CHUNK_EVENTS, default=True),
        max_chunk_events=_count(
            "max_chunk_events",
            max_chunk_events,
            env,
            ENV_MAX_CHUNK_EVENTS,
            DEFAULT_MAX_CHUNK_EVENTS,
        ),
        span_end=_choice("span_end", span_end, env, ENV_SPAN_END, SPAN_END_CHOICES),
        body_size_metrics=_flag(
            "body_size_metrics", body_size_metrics, env, ENV_BODY_SIZE_METRICS, default=False
        ),
        capture_request_body=_body_cap(
            "capture_request_body", capture_request_body, env, ENV_CAPTURE_REQUEST_BODY
        ),
        capture_response_body=_body_cap(
            "capture_response_body", capture_response_body, env, ENV_CAPTURE_RESPONSE_BODY
        ),
        body_filter=_callable_or_none(
            "body_filter", body_filter, "a callable taking (direction, content, headers)"
        ),
        logger_provider=logger_provider,
        exception_signal=_exception_signal(exception_signal, env),
    )


def _raw(value: Any, env: Mapping[str, str], var: str) -> Any:
    """The keyword, else the environment variable (an empty one counts as unset), else None."""
    if value is not None:
        return value
    return env.get(var, "").strip() or None


def _bad_value(option: str, var: str, value: Any, accepted: str, default: Any) -> None:
    warn_once(
        f"option:{option}:{value!r}",
        "aiohttp-otel: %s (or %s) = %r is not valid; accepted: %s. Using the default, %r.",
        option,
        var,
        value,
        accepted,
        default,
    )


def _choice(
    option: str, value: Any, env: Mapping[str, str], var: str, choices: tuple[str, ...]
) -> str:
    raw = _raw(value, env, var)
    if raw is None:
        return choices[0]
    text = str(raw).strip().lower()
    if text in choices:
        return text
    _bad_value(option, var, raw, ", ".join(choices), choices[0])
    return choices[0]


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_TRUE_WORDS = ("true", "yes", "on")
_FALSE_WORDS = ("false", "no", "off")


def _flag(option: str, value: Any, env: Mapping[str, str], var: str, *, default: bool) -> bool:
    raw = _raw(value, env, var)
    if raw is None:
        return default
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    _bad_value(option, var, raw, "true or false (also 1/0, yes/no, on/off)", default)
    return default


def _count(option: str, value: Any, env: Mapping[str, str], var: str, default: int) -> int:
    raw = _raw(value, env, var)
    if raw is None:
        return default
    try:
        number = int(raw) if not isinstance(raw, bool) else -1
    except (TypeError, ValueError):
        number = -1
    if number >= 0:
        return number
    _bad_value(option, var, raw, "a whole number, 0 or more", default)
    return default


def _body_cap(option: str, value: Any, env: Mapping[str, str], var: str) -> int | None:
    """``True`` is the default cap, a whole number is a cap in bytes; off (``False``, ``0``)
    is ``None``, so that an attempt can tell "capture" from "not" with one check."""
    raw = _raw(value, env, var)
    if raw is None or raw is False:
        return None
    if raw is True:
        return DEFAULT_BODY_CAP
    cap: int | None = None
    if isinstance(raw, int):
        cap = raw
    elif isinstance(raw, str):
        # Digits are a cap ("1" is one byte, "0" is off); only words are flags here.
        text = raw.strip().lower()
        if text in _TRUE_WORDS:
            cap = DEFAULT_BODY_CAP
        elif text in _FALSE_WORDS:
            cap = 0
        elif text.isascii() and text.isdigit():
            cap = int(text)
    if cap is not None and cap >= 0:
        return cap or None
    _bad_value(
        option,
        var,
        raw,
        f"true ({DEFAULT_BODY_CAP} bytes), false, or a cap in bytes (a whole number, 0 or more)",
        False,
    )
    return None


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _list_value(option: str, value: Any, env: Mapping[str, str], var: str | None) -> Any:
    """The keyword if given, else the environment variable's comma list, else ``None``."""
    if value is not None:
        if isinstance(value, str):
            return _split(value)
        if isinstance(value, (list, tuple, set, frozenset)) and all(
            isinstance(item, str) for item in value
        ):
            return tuple(value)
        warn_once(
            f"option:{option}",
            "aiohttp-otel: %s must be a list of strings or a comma-separated string, got %r; "
            "using the default.",
            option,
            value,
        )
        return None
    # An empty variable counts as unset, as everywhere in OpenTelemetry configuration.
    if var is not None and env.get(var, "").strip():
        return _split(env[var])
    return None


def _names(
    option: str, value: Any, env: Mapping[str, str], var: str, default: Collection[str]
) -> tuple[str, ...]:
    parsed = _list_value(option, value, env, var)
    return tuple(default) if parsed is None else tuple(parsed)


def _patterns(
    option: str, value: Any, env: Mapping[str, str], var: str, default: Sequence[str]
) -> tuple[str, ...]:
    parsed = _list_value(option, value, env, var)
    if parsed is None:
        return tuple(default)
    return _valid_regexes(
        parsed,
        option,
        f"{option} (or {var})",
        "Entries are header names or case-insensitive patterns, for example 'content-type' or "
        "'x-.*'.",
    )


def _excluded_urls(value: Any, env: Mapping[str, str]) -> re.Pattern[str] | None:
    parsed = _list_value("excluded_urls", value, env, ENV_EXCLUDED_URLS)
    if parsed is None:
        parsed = _list_value("excluded_urls", None, env, ENV_EXCLUDED_URLS_GENERIC)
    if not parsed:
        return None
    valid = _valid_regexes(
        parsed,
        "excluded_urls",
        f"excluded_urls (or {ENV_EXCLUDED_URLS} / {ENV_EXCLUDED_URLS_GENERIC})",
        "Entries are patterns searched in the URL, for example 'healthz' or "
        "'^https://internal\\.'.",
    )
    return re.compile("|".join(f"(?:{p})" for p in valid)) if valid else None


def _valid_regexes(patterns: Sequence[str], option: str, named: str, hint: str) -> tuple[str, ...]:
    """The entries that compile; each one that does not is reported once and dropped."""
    valid = []
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            warn_once(
                f"option:{option}:{pattern}",
                "aiohttp-otel: %s entry %r is not a valid regular expression (%s); it is "
                "ignored. %s",
                named,
                pattern,
                exc,
                hint,
            )
            continue
        valid.append(pattern)
    return tuple(valid)


def _semconv(keyword: Any, env: Mapping[str, str]) -> SemconvMode:
    # Accept the official package's private ``_StabilityMode`` member as well as our strings.
    if keyword is not None:
        text = str(getattr(keyword, "value", keyword)).lower()
        if text == "http/dup":
            return SemconvMode.DUP
        if text in ("http", "default"):
            return SemconvMode.STABLE
        warn_once(
            "option:sem_conv_opt_in_mode",
            "aiohttp-otel: sem_conv_opt_in_mode=%r is not one of 'http', 'http/dup'; "
            "using 'http' (stable conventions).",
            keyword,
        )
        return SemconvMode.STABLE
    # The variable is shared by every instrumentation (e.g. "database,http/dup"): only the
    # HTTP categories concern us, and "http/dup" wins over "http".
    categories = _split(env.get(ENV_SEMCONV, ""))
    return SemconvMode.DUP if "http/dup" in categories else SemconvMode.STABLE


def _exception_signal(keyword: Any, env: Mapping[str, str]) -> str:
    if keyword is not None:
        text = str(keyword).strip().lower()
        if text in EXCEPTION_SIGNAL_CHOICES:
            return text
        _bad_value(
            "exception_signal",
            ENV_EXCEPTION_SIGNAL,
            keyword,
            ", ".join(EXCEPTION_SIGNAL_CHOICES),
            SPAN_EVENTS,
        )
        return SPAN_EVENTS
    # Shared by every instrumentation, like OTEL_SEMCONV_STABILITY_OPT_IN: a comma list in
    # which "logs/dup" wins over "logs".
    raw = env.get(ENV_EXCEPTION_SIGNAL, "")
    values = {part.lower() for part in _split(raw)}
    unknown = values - {LOGS, LOGS_DUP}
    if unknown:
        warn_once(
            f"option:exception_signal:{raw!r}",
            "aiohttp-otel: %s = %r holds %s, not valid; accepted: %s, %s, or unset (span "
            "events only). Ignoring it.",
            ENV_EXCEPTION_SIGNAL,
            raw,
            ", ".join(sorted(unknown)),
            LOGS,
            LOGS_DUP,
        )
    if LOGS_DUP in values:
        return LOGS_DUP
    return LOGS if LOGS in values else SPAN_EVENTS


def _callable_or_none(option: str, value: Any, expected: str) -> Any:
    if value is None or callable(value):
        return value
    warn_once(
        f"option:{option}",
        "aiohttp-otel: %s must be %s or None, got %r; it is ignored.",
        option,
        expected,
        value,
    )
    return None


def _hook(option: str, value: Any) -> Hook | None:
    fn = _callable_or_none(option, value, "a callable taking (span, params)")
    return None if fn is None else Hook(option, fn)
