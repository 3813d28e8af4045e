"""The ACL rules `rfarmctl redis-acl` writes, without a Redis: a prefix's glob characters are literal."""

from __future__ import annotations

from rfarmctl import acl


def test_glob_characters_in_the_prefix_are_literal() -> None:
    assert acl.glob_escape("a*b?[c]\\") == "a\\*b\\?\\[c\\]\\\\"
    assert acl.role_rules("shell", "x*")[0] == "%W~x\\*:req"
