"""The public surface of `meshnet` is pinned: changing it is a deliberate act that edits this list."""

import meshnet

EXPECTED: list[str] = []


def test_public_api_is_exactly_the_pinned_list() -> None:
    assert sorted(meshnet.__all__) == sorted(EXPECTED)


def test_every_public_name_resolves() -> None:
    for name in meshnet.__all__:
        assert getattr(meshnet, name) is not None, name
