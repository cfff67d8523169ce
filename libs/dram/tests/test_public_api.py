"""The public surface of `dram` is pinned: changing it is a deliberate act that edits this list."""

import dram

EXPECTED: list[str] = []


def test_public_api_is_exactly_the_pinned_list() -> None:
    assert sorted(dram.__all__) == sorted(EXPECTED)


def test_every_public_name_resolves() -> None:
    for name in dram.__all__:
        assert getattr(dram, name) is not None, name
