"""The forms of RFARM_REDIS_URL: plain, and Sentinel (broker_contracts.redis_url, broker_client)."""

from __future__ import annotations

import pytest
import redis
from redis.sentinel import SentinelConnectionPool

import broker_client
from broker_contracts.config import redact_url
from broker_contracts.redis_url import RedisUrlError, parse_sentinel
from gateway.service import main as gateway_main
from rfarmctl.acl import AclUser, url_for
from shell.toolbar import farm_name


def test_a_sentinel_url_names_its_sentinels_service_database_and_users() -> None:
    target = parse_sentinel(
        "redis+sentinel://rf-node:p%40ss@10.0.0.1:26380,sen2,[fd00::3]:26381/studio/3"
        "?sentinel_username=watch&sentinel_password=w"
    )
    assert target.sentinels == (("10.0.0.1", 26380), ("sen2", 26379), ("fd00::3", 26381))
    assert (target.service, target.db) == ("studio", 3)
    assert (target.username, target.password) == ("rf-node", "p@ss")
    assert (target.sentinel_username, target.sentinel_password) == ("watch", "w")
    assert parse_sentinel("redis+sentinel://h/mymaster").db == 0


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("redis+sentinel://h:26379", "names its service"),
        ("redis+sentinel://h:26379/m/x", "not a number"),
        ("redis+sentinel://h:26379/m/0/extra", "/service or /service/db"),
        ("redis+sentinel://h:port/m", "bad port"),
        ("redis+sentinel://h1,,h2/m", "empty"),
        ("redis+sentinel://h/m?password=x", "unknown option"),
    ],
)
def test_a_bad_sentinel_url_is_refused_in_one_line(url: str, said: str) -> None:
    with pytest.raises(RedisUrlError, match=said) as caught:
        broker_client.connect(url)
    assert "\n" not in str(caught.value)


def test_passwords_never_printed() -> None:
    shown = redact_url("redis+sentinel://gw:secret@h1,h2:1/m/0?sentinel_password=other")
    assert shown == "redis+sentinel://gw:***@h1:26379,h2:1/m/0?sentinel_password=***"
    assert redact_url("redis://u:secret@h:1/0") == "redis://u:***@h:1/0"
    unusable = redact_url("redis+sentinel://gw:secret@h1/?sentinel_password=other")  # no service
    assert "secret" not in unusable and "other" not in unusable and "gw:***@h1" in unusable


def test_a_gateway_given_an_unusable_url_says_so_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RFARM_REDIS_URL", "redis+sentinel://gw:secret@h1:26379")
    assert gateway_main([]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "names its service" in err and "secret" not in err, err


def test_one_factory_makes_plain_and_sentinel_clients() -> None:
    plain = broker_client.connect("redis://127.0.0.1:1/2", socket_timeout=3)
    assert plain.connection_pool.connection_kwargs["db"] == 2
    followed = broker_client.connect("redis+sentinel://u:pw@127.0.0.1:1/svc/4", socket_timeout=3)
    pool = followed.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "svc"
    assert {k: pool.connection_kwargs[k] for k in ("db", "username", "password", "socket_timeout")} == {
        "db": 4, "username": "u", "password": "pw", "socket_timeout": 3,
    }
    with pytest.raises(redis.ConnectionError) as caught:  # no sentinel answers: the callers' usual retry path
        followed.ping()
    assert str(caught.value) == "no sentinel at 127.0.0.1:1 answered with a primary for 'svc'"


def test_the_shell_and_the_acl_tool_read_a_sentinel_url() -> None:
    url = "redis+sentinel://admin:x@s1:26379,s2:26379/studio/0"
    assert farm_name(url, "rf") == "studio" and farm_name(url, "p") == "studio/p"
    user = AclUser("node", "rf-node", "pw", [])
    assert url_for(url, user) == "redis+sentinel://rf-node:pw@s1:26379,s2:26379/studio/0"
    assert url_for("redis://admin:x@[::1]:7/0", user) == "redis://rf-node:pw@[::1]:7/0"
