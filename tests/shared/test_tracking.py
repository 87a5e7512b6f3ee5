"""Tracking tokens, the HTML rewrite and the machine guess, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared import tracking

SECRET = "s3cret"
MESSAGE = tracking.message_id(SECRET, "enrollment/ws/jrn/ada:3:email")


def test_a_token_reads_back_only_with_its_secret_kind_and_every_character() -> None:
    token = tracking.token(SECRET, MESSAGE, tracking.CLICK, 4)
    assert tracking.read(SECRET, token, tracking.CLICK) == (MESSAGE, 4)
    assert tracking.read("another", token, tracking.CLICK) is None
    assert tracking.read(SECRET, token, tracking.OPEN) is None  # a click token is no open
    for i in range(len(token)):
        flipped = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
        assert tracking.read(SECRET, flipped, tracking.CLICK) is None
    # the last character carries unused bits: another character there is refused too
    for last in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_":
        if last != token[-1]:
            assert tracking.read(SECRET, token[:-1] + last, tracking.CLICK) is None
    for junk in ("", "x" * 42, "!" * 42, token + "A", "é" * 42):
        assert tracking.read(SECRET, junk, tracking.CLICK) is None
    # the same idempotency key gives the same message id: a retried send tracks alike
    assert tracking.message_id(SECRET, "enrollment/ws/jrn/ada:3:email") == MESSAGE
    assert b"ada" not in MESSAGE and "ada" not in token


def test_links_are_rewritten_the_pixel_added_and_the_unsubscribe_link_left() -> None:
    source = (
        '<html><body><a href="https://x.test/a?b=1&amp;c=2">A</a>'
        "<a href='mailto:hi@x.test'>mail</a><a href=\"#top\">top</a>"
        '<A HREF="http://y.test/">Y</A><a href="https://u.test/stop">stop</a></body></html>'
    )
    done = tracking.track_html(
        SECRET, "https://t.test/", MESSAGE, source, skip="https://u.test/stop"
    )
    assert done.links == ["https://x.test/a?b=1&c=2", "http://y.test/"]
    assert "https://x.test" not in done.html and "y.test" not in done.html
    assert "mailto:hi@x.test" in done.html and 'href="#top"' in done.html
    assert "https://u.test/stop" in done.html
    assert done.html.index("/t/o/") < done.html.index("</body>")
    clicks = [part.split('"')[0] for part in done.html.split("https://t.test/t/c/")[1:]]
    assert [tracking.read(SECRET, c, tracking.CLICK) for c in clicks] == [
        (MESSAGE, 0),
        (MESSAGE, 1),
    ]
    assert "/t/o/" in tracking.track_html(SECRET, "https://t.test", MESSAGE, "<p>no body</p>").html


def test_a_machine_opens_at_once_or_says_so_and_a_scanner_clicks_every_link() -> None:
    sent = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    within = timedelta(seconds=5)
    person = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)"
    assert tracking.machine_open(sent, sent + timedelta(seconds=1), person, within)
    assert not tracking.machine_open(sent, sent + timedelta(minutes=3), person, within)
    proxy = (
        "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
    )
    assert tracking.machine_open(sent, sent + timedelta(hours=2), proxy, within)
    later = sent + timedelta(minutes=10)
    assert tracking.machine_click(
        sent, later, person, within, (later - timedelta(seconds=0.3), 0), 1
    )
    assert not tracking.machine_click(
        sent, later, person, within, (later - timedelta(seconds=30), 0), 1
    )
    assert not tracking.machine_click(
        sent, later, person, within, (later - timedelta(seconds=0.3), 1), 1
    )


def test_plain_text_urls_are_tracked_sharing_the_html_links_numbers() -> None:
    links = ["https://x.test/a"]
    text = "See https://x.test/a, and https://y.test/b. Stop: https://u.test/stop"
    done = tracking.track_text(
        SECRET, "https://t.test", MESSAGE, text, links, "https://u.test/stop"
    )
    assert links == ["https://x.test/a", "https://y.test/b"]
    assert "x.test" not in done and "y.test" not in done and "https://u.test/stop" in done
    tokens = [part.split(",")[0].split(".")[0] for part in done.split("https://t.test/t/c/")[1:]]
    assert [tracking.read(SECRET, t, tracking.CLICK) for t in tokens] == [
        (MESSAGE, 0),
        (MESSAGE, 1),
    ]
