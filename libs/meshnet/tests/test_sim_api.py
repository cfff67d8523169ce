"""The public surface of `meshnet.sim` is pinned: other libraries code against it."""

import meshnet.sim

EXPECTED = [
    "Simulation",
    "LinkProfile",
    "DelayDistribution",
    "SimStats",
    "SimNode",
    "NodeContext",
    "run_seeds",
    "seed_count",
    "derive_rng",
    "SEEDS_ENV",
    "SEED_ENV",
    "SimulationError",
    "InvariantError",
    "SimulationTimeoutError",
    "SimulationFailure",
]


def test_sim_public_api_is_exactly_the_pinned_list() -> None:
    assert sorted(meshnet.sim.__all__) == sorted(EXPECTED)


def test_every_sim_public_name_resolves() -> None:
    for name in meshnet.sim.__all__:
        assert getattr(meshnet.sim, name) is not None, name


def test_sim_errors_share_one_root() -> None:
    for name in ("InvariantError", "SimulationTimeoutError", "SimulationFailure"):
        assert issubclass(getattr(meshnet.sim, name), meshnet.sim.SimulationError)
        assert issubclass(getattr(meshnet.sim, name), AssertionError)


def test_sim_errors_are_meshnet_errors() -> None:
    import meshnet

    assert issubclass(meshnet.sim.SimulationError, meshnet.MeshnetError)
