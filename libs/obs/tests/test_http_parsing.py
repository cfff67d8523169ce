"""The two parsers of network input in obs: the metrics server's request head and the webhook
reply's status line. Both are pure, bounded, and never raise on arbitrary bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from obs._exposition import MAX_REQUEST_HEAD, route_request
from obs._notifiers import parse_status_line

heads = st.one_of(
    st.binary(max_size=400),
    st.builds(
        lambda m, p, v, h: f"{m} {p} {v}\r\n{h}".encode("latin-1", "replace"),
        st.sampled_from(["GET", "HEAD", "POST", "get", ""]),
        st.sampled_from(["/metrics", "/metrics?x", "/", "metrics", "/metrics/../x"]),
        st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", ""]),
        st.text(max_size=100),
    ),
)


@settings(deadline=None)  # shared machine: load, not bugs, would trip a deadline
@given(heads)
def test_route_request_never_raises_and_answers_a_known_status(head: bytes) -> None:
    decision = route_request(head, "/metrics")
    assert decision.status in {200, 400, 404, 405, 431}
    if decision.status == 200:
        assert decision.method in {"GET", "HEAD"}


def test_route_request_examples() -> None:
    ok = route_request(b"GET /metrics HTTP/1.1\r\nAccept-Encoding: gzip, deflate", "/metrics")
    assert (ok.status, ok.method, ok.gzip) == (200, "GET", True)
    assert route_request(b"GET /metrics?a=b HTTP/1.0", "/metrics").gzip is False
    assert route_request(b"GET /other HTTP/1.1", "/metrics").status == 404
    assert route_request(b"DELETE /metrics HTTP/1.1", "/metrics").status == 405
    assert route_request(b"GET metrics HTTP/1.1", "/metrics").status == 400
    assert route_request(b"GET /metrics HTTP/2", "/metrics").status == 400
    assert route_request(b"GET /metrics HTTP/1.1\r\n" + b"x" * MAX_REQUEST_HEAD, "/metrics").status == 431


@settings(deadline=None)  # shared machine: load, not bugs, would trip a deadline
@given(st.binary(max_size=200))
def test_parse_status_line_never_raises(reply: bytes) -> None:
    status = parse_status_line(reply)
    assert status is None or 0 <= status <= 999


def test_parse_status_line_examples() -> None:
    assert parse_status_line(b"HTTP/1.1 204 No Content\r\n") == 204
    assert parse_status_line(b"HTTP/1.0 500\r\n") == 500
    assert parse_status_line(b"HTTP/1.1 \xb2\xb2\xb2 odd\r\n") is None  # latin-1 superscript digits
    assert parse_status_line(b"SSH-2.0-OpenSSH\r\n") is None
    assert parse_status_line(b"HTTP/1.1 20 short\r\n") is None
