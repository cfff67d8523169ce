"""The public surface of `bftconsensus` is pinned: changing it is a deliberate act that edits this list."""

import bftconsensus

EXPECTED: list[str] = []


def test_public_api_is_exactly_the_pinned_list() -> None:
    assert sorted(bftconsensus.__all__) == sorted(EXPECTED)


def test_every_public_name_resolves() -> None:
    for name in bftconsensus.__all__:
        assert getattr(bftconsensus, name) is not None, name
