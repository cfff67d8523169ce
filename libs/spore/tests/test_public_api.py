"""The public surface of `spore` is pinned: changing it is a deliberate act that edits this list."""

import spore

EXPECTED: list[str] = []


def test_public_api_is_exactly_the_pinned_list() -> None:
    assert sorted(spore.__all__) == sorted(EXPECTED)


def test_every_public_name_resolves() -> None:
    for name in spore.__all__:
        assert getattr(spore, name) is not None, name
