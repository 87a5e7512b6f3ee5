"""What may go into an email's headers: one plain address, a subject without line breaks
(raw or encoded), within a header line's length."""

from __future__ import annotations

import pytest

from shared.channels import MAX_HEADER, header_problem, one_address


@pytest.mark.parametrize("address", ["ada@example.test", "a.b+c@mail.example.co.uk"])
def test_one_plain_address(address: str) -> None:
    assert one_address(address)


@pytest.mark.parametrize(
    "address",
    [
        "a@example.test, b@example.test",
        "a@example.test;b@example.test",
        "Ada <ada@example.test>",
        "ada@example.test (work)",
        "ada@example.test\r\nBcc: evil@example.test",
        "ada@localhost",
        "",
        None,
        "x" * 250 + "@example.test",
    ],
)
def test_anything_else_is_not_an_address(address: object) -> None:
    assert not one_address(address)


def test_a_subject_with_a_line_break_raw_or_encoded_or_too_long_is_refused() -> None:
    assert header_problem("Welcome, Ada") is None
    assert header_problem("=?utf-8?q?Gr=C3=BC=C3=9Fe?=") is None
    assert header_problem("x\r\nBcc: evil@example.test") == "it contains a line break"
    encoded = "=?utf-8?q?x=0D=0ABcc:_evil@example.test?="
    assert header_problem(encoded) == "it contains an encoded line break"
    assert header_problem("=?utf-8?b?eA0KQmNjOiBldmls?=") == "it contains an encoded line break"
    assert header_problem("x" * (MAX_HEADER + 1)) is not None
