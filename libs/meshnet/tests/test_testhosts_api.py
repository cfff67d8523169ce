"""The public surface of `meshnet.testhosts` is pinned: chaos tests in other libraries use it."""

import meshnet.testhosts

EXPECTED = [
    "HostNetwork",
    "Host",
    "HostProcess",
    "DelayRelay",
    "netns_unavailable_reason",
    "cleanup_leftovers",
    "socket_in_netns",
    "DEFAULT_PREFIX",
    "HostNetworkError",
]


def test_testhosts_public_api_is_exactly_the_pinned_list() -> None:
    assert sorted(meshnet.testhosts.__all__) == sorted(EXPECTED)


def test_every_testhosts_public_name_resolves() -> None:
    for name in meshnet.testhosts.__all__:
        assert getattr(meshnet.testhosts, name) is not None, name


def test_host_network_errors_are_meshnet_errors() -> None:
    import meshnet

    assert issubclass(meshnet.testhosts.HostNetworkError, meshnet.MeshnetError)
