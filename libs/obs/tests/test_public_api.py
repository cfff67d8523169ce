"""The public surface of `obs` is pinned: changing it is a deliberate act that edits this list."""

import obs

EXPECTED: list[str] = []


def test_public_api_is_exactly_the_pinned_list() -> None:
    assert sorted(obs.__all__) == sorted(EXPECTED)


def test_every_public_name_resolves() -> None:
    for name in obs.__all__:
        assert getattr(obs, name) is not None, name
