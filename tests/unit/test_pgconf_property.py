"""Property tests for postgresql.conf value and key rendering (voodu_postgres.render.pgconf).

The reference lexer below models how postgres reads a quoted string in postgresql.conf: the token
must match the conf lexer's string pattern (no raw newline, no lone quote, backslash escapes one
character), then the body is unescaped the way the server's GUC string scanner does (``''`` -> ``'``,
``\\b \\f \\n \\r \\t``, up to three octal digits, any other escaped character stands for itself).
"""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st

from voodu_postgres.domain.spec import PG_CONFIG_KEY_RE, is_valid_pg_config_key
from voodu_postgres.render.pgconf import format_pg_value, quote_pg_string, render_overrides_conf

# The conf lexer's quoted-string token: quote, then plain characters, backslash pairs or doubled
# quotes, then quote.
_CONF_STRING_TOKEN = re.compile(r"'([^'\\\n]|\\.|'')*'", re.DOTALL)

_SIMPLE_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def unquote_conf_string(token: str) -> str:
    """Reference decoder for a postgresql.conf single-quoted string token."""
    assert _CONF_STRING_TOKEN.fullmatch(token), f"not a conf string token: {token!r}"
    body = token[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1]
            if nxt in _SIMPLE_ESCAPES:
                out.append(_SIMPLE_ESCAPES[nxt])
                i += 2
            elif nxt in "01234567":
                j = i + 1
                while j < len(body) and j < i + 4 and body[j] in "01234567":
                    j += 1
                out.append(chr(int(body[i + 1 : j], 8)))
                i = j
            else:
                out.append(nxt)
                i += 2
        elif ch == "'":
            assert body[i + 1] == "'"
            out.append("'")
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def test_reference_lexer_sanity() -> None:
    assert unquote_conf_string(r"'a''b\\c\n\101\q'") == "a'b\\c\nAq"


# Text without control characters (category Cc), with quotes and backslashes made likely.
safe_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(["'", "\\", '"', "n", "0", "1", " ", "$", "é", "✓"]),
        st.characters(blacklist_categories=("Cc", "Cs")),
    )
)


@given(safe_text)
@example("")
@example("'")
@example("\\")
@example("\\n")
@example("\\101")
@example("''\\\\'")
def test_quote_pg_string_round_trips(value: str) -> None:
    quoted = quote_pg_string(value)
    assert "\n" not in quoted and "\r" not in quoted
    assert unquote_conf_string(quoted) == value


@given(st.text())
def test_control_characters_are_rejected(value: str) -> None:
    has_control = any(0 <= ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value)
    try:
        quote_pg_string(value)
    except ValueError:
        assert has_control
    else:
        assert not has_control


key_text = st.one_of(
    st.text(),
    st.from_regex(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?", fullmatch=True),
    st.from_regex(r"[a-zA-Z0-9_.\n -]{0,12}", fullmatch=True),
)


@given(
    key_text,
    st.one_of(st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), safe_text),
)
def test_keys_accepted_iff_regex_matches_and_line_is_single(key: str, value: bool | float | str) -> None:
    expected_valid = PG_CONFIG_KEY_RE.fullmatch(key) is not None
    assert is_valid_pg_config_key(key) == expected_valid
    try:
        text = render_overrides_conf({key: value}).text
    except ValueError:
        assert not expected_valid
        return
    assert expected_valid
    body = text.splitlines()[3:]
    assert len(body) == 1
    assert body[0] == f"{key} = {format_pg_value(value)}"
    assert text.endswith("\n") and text.count("\n") == 4


# The conf lexer's unquoted number tokens: integers (optionally with a unit suffix) and reals,
# which need a decimal point before any exponent.
_CONF_NUMBER = re.compile(r"[-+]?(\d+|\d*\.\d*([Ee][-+]?\d+)?)")


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_render_as_conf_numbers_that_round_trip(value: float) -> None:
    text = format_pg_value(value)
    assert _CONF_NUMBER.fullmatch(text), text
    assert "e" not in text.lower()
    assert float(text) == value or (value == 0 and float(text) == 0)
    # Integral values stay integers (integer GUCs reject "200.0"); others always keep their point.
    assert ("." in text) == (not value.is_integer())


@given(st.integers())
def test_integers_render_as_decimal(value: int) -> None:
    assert format_pg_value(value) == str(value)
