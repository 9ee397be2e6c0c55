import pytest
from hypothesis import given
from hypothesis import strategies as st

from appgw_sse.core.duration import derived_request_timeout, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1),
        ("45s", 45),
        ("2m", 120),
        ("1h30m", 5400),
        ("1h", 3600),
        ("1h0m5s", 3605),
        ("90s", 90),
        ("23h59m59s", 86399),
    ],
)
def test_parse(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "45", "1.5s", "500ms", "-1s", "1d", "s", "1m1h", " 1s"])
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("idle", "timeout"),
    # The contract's own examples, then the 1.5x regime, then the 24 h cap.
    [(45, 68), (10, 15), (1, 6), (2, 7), (11, 17), (100, 150), (86399, 86400), (60000, 86400)],
)
def test_derived_request_timeout(idle: int, timeout: int) -> None:
    assert derived_request_timeout(idle) == timeout


@given(st.integers(min_value=1, max_value=86399))
def test_derived_timeout_always_exceeds_idle_within_cap(idle: int) -> None:
    timeout = derived_request_timeout(idle)
    assert timeout <= 86400
    assert timeout > idle or timeout == 86400


@given(st.integers(min_value=0, max_value=10**6))
def test_format_round_trips(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds
