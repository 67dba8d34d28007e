"""The HA kit fails loudly, naming the Debian package, when a binary is missing (the HA tests
must not turn into skips on a machine where ./run setup did not install them)."""

from __future__ import annotations

import pytest

from parkpulse.patroni_local import HaKitUnavailable, PatroniCluster, find_binaries


def test_missing_binaries_are_named_with_their_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(HaKitUnavailable) as err:
        find_binaries()
    msg = str(err.value)
    for part in ("etcd (Debian package etcd-server)", "patroni (Debian package patroni)", "./run setup"):
        assert part in msg
    cluster = PatroniCluster()
    with pytest.raises(HaKitUnavailable):
        cluster.start()
    assert not cluster.root.exists(), "a failed start leaves no folder behind"


def test_binaries_are_installed_here() -> None:
    bins = find_binaries()
    assert set(bins) == {"etcd", "patroni", "patronictl"}
