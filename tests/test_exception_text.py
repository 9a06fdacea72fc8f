"""The exception event's text: cached by where the failure happened, never by what it said."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable

import pytest

from aiohttp_otel import create_trace_config
from aiohttp_otel._exception_text import DEFAULT_CACHE_SIZE, ExceptionText
from aiohttp_otel._instrumentation import Instrumentation
from aiohttp_otel._trace_config import OtelTraceConfig


def _same(text: str) -> str:
    return text


class CountingScrub:
    """An identity scrub that remembers every text it was given."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, text: str) -> str:
        self.seen.append(text)
        return text


def _fail(message: str) -> None:
    raise ValueError(message)


def _failure(message: str) -> BaseException:
    """An exception raised from the same code location whatever its message."""
    try:
        _fail(message)
    except ValueError as exc:
        return exc
    raise AssertionError("unreachable")


def _wrapped(message: str, cause_message: str) -> BaseException:
    try:
        try:
            _fail(cause_message)
        except ValueError as cause:
            raise RuntimeError(message) from cause
    except RuntimeError as exc:
        return exc
    raise AssertionError("unreachable")


def _instrumentation() -> Instrumentation:
    config = create_trace_config()
    assert isinstance(config, OtelTraceConfig)
    return config.instrumentation


def _formatted(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


# -- the same text as the traceback module ---------------------------------------------------


def _unraised_with_a_cause() -> BaseException:
    exc = RuntimeError("never raised")
    exc.__cause__ = _failure("the cause")
    return exc


def _context() -> BaseException:
    try:
        try:
            _fail("first")
        except ValueError:
            {}["missing"]
    except KeyError as exc:
        return exc
    raise AssertionError("unreachable")


def _suppressed() -> BaseException:
    try:
        try:
            _fail("first")
        except ValueError:
            raise OSError("second") from None
    except OSError as exc:
        return exc
    raise AssertionError("unreachable")


def _suggested() -> BaseException:
    try:
        object().no_such_attribute  # noqa: B018 - the AttributeError is the point
    except AttributeError as exc:
        return exc
    raise AssertionError("unreachable")


def _noted() -> BaseException:
    exc = _failure("with a note")
    if hasattr(exc, "add_note"):
        exc.add_note("a note https://example.test/?sig=s3cr3t")
    return exc


def _empty() -> BaseException:
    try:
        raise ConnectionRefusedError()
    except ConnectionRefusedError as exc:
        return exc
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    "make",
    [
        lambda: _failure("plain"),
        lambda: _wrapped("outer", "inner"),
        _context,
        _unraised_with_a_cause,
        _suppressed,
        _suggested,
        _noted,
        _empty,
        lambda: ValueError("never raised"),
    ],
)
def test_the_stack_is_what_the_traceback_module_prints(make: Callable[[], BaseException]) -> None:
    texts = ExceptionText()
    exc = make()
    first = texts.describe(exc, _same)
    second = texts.describe(exc, _same)  # from the cache

    assert first[2] == _formatted(exc)
    assert second == first
    assert first[1] == str(exc)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception groups are Python 3.11+")
def test_an_exception_group_is_formatted_whole() -> None:
    group = BaseExceptionGroup("several", [ValueError("a"), KeyError("b")])  # noqa: F821
    texts = ExceptionText()

    assert texts.describe(group, _same)[2] == _formatted(group)
    assert len(texts) == 0


def test_the_type_is_the_error_type() -> None:
    exc_type, _, _ = ExceptionText().describe(_wrapped("outer", "inner"), _same)
    assert exc_type == "RuntimeError"

    class Local(Exception):
        pass

    assert ExceptionText().describe(Local("x"), _same)[0] == f"{__name__}.{Local.__qualname__}"


# -- the cache --------------------------------------------------------------------------------


def test_an_identical_failure_is_formatted_once() -> None:
    texts = ExceptionText()
    scrub = CountingScrub()
    for i in range(5):
        texts.describe(_failure(f"attempt {i}"), scrub)

    frame_texts = [t for t in scrub.seen if "Traceback (most recent call last)" in t]
    assert len(frame_texts) == 1
    assert len(texts) == 1


def test_a_different_site_is_a_different_entry() -> None:
    texts = ExceptionText()
    texts.describe(_failure("a"), _same)
    texts.describe(_wrapped("b", "c"), _same)
    texts.describe(_context(), _same)

    assert len(texts) == 3


def test_a_cache_hit_never_returns_another_failures_message() -> None:
    texts = ExceptionText()
    texts.describe(_wrapped("outer-ONE", "inner-ONE"), _same)
    _, message, stack = texts.describe(_wrapped("outer-TWO", "inner-TWO"), _same)

    assert len(texts) == 1  # it was a hit
    assert message == "outer-TWO"
    assert "ONE" not in stack
    assert stack.endswith("RuntimeError: outer-TWO\n")
    assert "ValueError: inner-TWO\n" in stack
    assert stack == _formatted(_wrapped("outer-TWO", "inner-TWO"))


def test_the_cached_text_holds_no_message() -> None:
    texts = ExceptionText()
    texts.describe(_wrapped("outer-SECRET", "inner-SECRET"), _same)

    cached = "".join("".join(frames) for frames in texts._cache.values())
    assert "Traceback (most recent call last)" in cached
    assert "SECRET" not in cached


def test_ten_thousand_distinct_failures_keep_the_cache_bounded() -> None:
    texts = ExceptionText()
    for i in range(10_000):
        # A distinct file name is a distinct code location.
        code = compile("def fail():\n    raise ValueError('x')\n", f"<generated-{i}>", "exec")
        namespace: dict[str, Callable[[], None]] = {}
        exec(code, namespace)
        try:
            namespace["fail"]()
        except ValueError as exc:
            texts.describe(exc, _same)
        assert len(texts) <= DEFAULT_CACHE_SIZE

    assert len(texts) == DEFAULT_CACHE_SIZE


def test_ten_thousand_distinct_types_keep_the_cache_bounded() -> None:
    texts = ExceptionText(size=16)
    for i in range(10_000):
        try:
            raise type(f"Error{i}", (Exception,), {})("x")
        except Exception as exc:
            texts.describe(exc, _same)

    assert len(texts) == 16


def test_the_least_recently_used_site_is_evicted_first() -> None:
    texts = ExceptionText(size=2)
    scrub = CountingScrub()
    texts.describe(_failure("a"), scrub)  # site A
    texts.describe(_context(), scrub)  # site B
    texts.describe(_failure("a again"), scrub)  # A is used again: B is now the oldest
    texts.describe(_suppressed(), scrub)  # site C evicts B
    scrub.seen.clear()
    texts.describe(_failure("a, still cached"), scrub)

    assert not [t for t in scrub.seen if "Traceback" in t]
    assert len(texts) == 2


def test_a_zero_size_cache_caches_nothing() -> None:
    texts = ExceptionText(size=0)
    exc = _failure("x")

    assert texts.describe(exc, _same)[2] == _formatted(exc)
    assert len(texts) == 0


# -- redaction --------------------------------------------------------------------------------


SECRET_URL = "https://user:pa55@api.example.test/v1?sig=s3cr3t&X-Amz-Signature=t0ps3cr3t"


def test_a_secret_url_in_the_message_is_scrubbed_on_every_failure() -> None:
    inst = _instrumentation()
    for _ in range(3):  # a miss, then hits
        exc_type, message, stack = inst.describe_exception(
            _failure(f"cannot reach {SECRET_URL}"), [SECRET_URL]
        )
        for text in (message, stack):
            assert "s3cr3t" not in text
            assert "t0ps3cr3t" not in text
            assert "pa55" not in text
        assert "sig=REDACTED" in message
        assert stack.endswith(f"ValueError: {message}\n")
        assert exc_type == "ValueError"


def test_a_secret_in_a_chained_cause_is_scrubbed_on_a_hit() -> None:
    inst = _instrumentation()
    inst.describe_exception(_wrapped("outer", "plain"), [])
    _, message, stack = inst.describe_exception(_wrapped("outer", f"inner {SECRET_URL}"), [])

    assert message == "outer"
    assert "s3cr3t" not in stack
    assert "X-Amz-Signature=REDACTED" in stack


def test_a_secret_in_a_note_is_scrubbed() -> None:
    inst = _instrumentation()
    _, _, stack = inst.describe_exception(_noted(), [])

    assert "s3cr3t" not in stack


def test_a_url_the_pattern_cannot_end_is_replaced_verbatim() -> None:
    """A known request URL holding a quote: the pattern alone would stop at the quote."""
    inst = _instrumentation()
    url = "http://host.test/a'b?sig=s3cr3t"
    _, message, stack = inst.describe_exception(_failure(f"failed: {url}"), [url])

    assert "s3cr3t" not in message
    assert "s3cr3t" not in stack
