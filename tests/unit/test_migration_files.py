"""The migration files as shipped: numbered in order from 1."""

from __future__ import annotations

from store.migrate import available


def test_numbered_files_in_order() -> None:
    versions = [m.version for m in available()]
    assert versions == sorted(versions) and versions[0] == 1
