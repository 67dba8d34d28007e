"""The one redaction rule for URLs, DSNs and messages (parkpulse.redact), and the places of the kernel
that print a URL: MQTT targets, database DSNs, field errors and the settings errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parkpulse.db import redact as redact_dsn
from parkpulse.errors import ConfigError, FieldError, StoreError
from parkpulse.redact import is_secret_name, redact_text, redact_url, redact_value
from parkpulse.settings import get_settings, parse_mqtt_url

PW = "S3cret-pw-71a"
TOKEN = "tok-9c2e55d0"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # userinfo: the account stays, the password goes; a lone user-info is taken for a token
        ("mqtt://ingest:S3cret-pw-71a@broker:1883", "mqtt://ingest:***@broker:1883"),
        ("mqttx://ingest:S3cret-pw-71a@host", "mqttx://ingest:***@host"),
        ("https://tok-9c2e55d0@hooks.example/x", "https://***@hooks.example/x"),
        ("https://:S3cret-pw-71a@hooks.example/x", "https://:***@hooks.example/x"),
        # an unencoded / # or @ in the password does not let its tail through
        ("mqtt://gw:S3c/ret-pw-71a@host:1883", "mqtt://gw:***@host:1883"),
        ("mqtt://gw:S3c#ret-pw-71a@host", "mqtt://gw:***@host"),
        ("mqtt://gw:S3c@ret-pw-71a@host", "mqtt://gw:***@host"),
        # query and fragment parameters named like a secret, case-insensitive, any separator
        (
            "https://oapi.dingtalk.com/robot/send?access_token=tok-9c2e55d0&timestamp=1700000000&sign=abc%3D",
            "https://oapi.dingtalk.com/robot/send?access_token=***&timestamp=1700000000&sign=***",
        ),
        (
            "https://h/x?a=1&API_KEY=k1;Signature=s1&sig=s2&pwd=p&passwd=p&Password=p",
            "https://h/x?a=1&API_KEY=***;Signature=***&sig=***&pwd=***&passwd=***&Password=***",
        ),
        (
            "https://h/x?auth=a&client_secret=c&X-Amz-Credential=c&name=n",
            "https://h/x?auth=***&client_secret=***&X-Amz-Credential=***&name=n",
        ),
        ("https://h/cb#access_token=tok-9c2e55d0&state=s", "https://h/cb#access_token=***&state=s"),
        ("https://h/x?%61ccess_token=tok-9c2e55d0", "https://h/x?%61ccess_token=***"),
        # libpq: URL and key=value forms, quoted values, several hosts
        (
            "postgresql://pp:S3cret-pw-71a@db1:5432,db2:5432/pp?sslmode=require",
            "postgresql://pp:***@db1:5432,db2:5432/pp?sslmode=require",
        ),
        ("postgresql://db/pp?user=pp&password=S3cret-pw-71a", "postgresql://db/pp?user=pp&password=***"),
        ("host=db user=pp password=S3cret-pw-71a dbname=pp", "host=db user=pp password=*** dbname=pp"),
        ("host=db password = 'S3cret pw\\' 71a' dbname=pp", "host=db password = *** dbname=pp"),
        # nothing secret: unchanged
        ("mqtt://127.0.0.1:1883", "mqtt://127.0.0.1:1883"),
        ("https://host/users/@me?page=2", "https://host/users/@me?page=2"),
        ("http://broker", "http://broker"),
        ("", ""),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_url(shown) == shown  # redacting twice changes nothing


def test_secret_names() -> None:
    for name in (
        "token",
        "access_token",
        "apiKey",
        "x-api-key",
        "secret",
        "sign",
        "signature",
        "sig",
        "password",
        "PASSWD",
        "pwd",
        "auth",
        "Authorization",
        "credential",
        "pass",
    ):
        assert is_secret_name(name), name
    for name in ("url", "host", "user", "park", "min_passing_workshops", "passed", "value", "name"):
        assert not is_secret_name(name), name


def test_redact_text_finds_urls_and_secret_pairs_in_a_message() -> None:
    msg = (
        f"Client error '500' for url 'https://hub:{PW}@h/x?access_token={TOKEN}'\n"
        f"retrying mqtt://gw:{PW}@broker:1883 with password={PW} and api_key={TOKEN}, park=p1"
    )
    out = redact_text(msg)
    assert PW not in out and TOKEN not in out
    assert "'https://hub:***@h/x?access_token=***'" in out
    assert (
        "mqtt://gw:***@broker:1883" in out
        and "password=***" in out
        and "api_key=***" in out
        and "park=p1" in out
    )


def test_redact_value_masks_secret_fields_and_urls() -> None:
    assert redact_value("uplink.password", PW) == "'***'"
    assert redact_value("mqtt[0].access_token", TOKEN) == "'***'"
    assert redact_value("uplink.password", None) == "None"
    assert redact_value("uplink.url", f"mqtt://gw:{PW}@h") == "'mqtt://gw:***@h'"
    assert redact_value("settings", {"mqtt_url": f"mqtt://gw:{PW}@h"}) == "{'mqtt_url': 'mqtt://gw:***@h'}"
    assert redact_value("readings[0].value", 5.0) == "5.0"

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    assert redact_value("x", Broken()) == "<Broken>"


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(),
        st.binary().map(lambda b: b.decode("latin-1")),
        st.text(alphabet=":/@?#&;=%[]'\" \\abc").map(lambda s: "mqtt://" + s),
    )
)
def test_redaction_never_raises(text: str) -> None:
    for f in (redact_url, redact_text):
        assert isinstance(f(text), str)
    assert isinstance(redact_value("x.password", text), str)


_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.~", min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    scheme=st.sampled_from(["mqtt", "mqtts", "http", "https", "postgresql", "mqttx"]),
    user=_WORD,
    host=st.sampled_from(["h", "127.0.0.1", "broker.example:8883", "[::1]:1883"]),
    path=_WORD,
    param=st.sampled_from(
        ["token", "access_token", "key", "appkey", "sign", "Signature", "password", "pwd", "auth"]
    ),
    other=_WORD,
)
def test_no_secret_survives(scheme: str, user: str, host: str, path: str, param: str, other: str) -> None:
    url = f"{scheme}://{user}:Zq{PW}@{host}/{path}?x={other}&{param}=Zq{TOKEN}#{param}=Zq{TOKEN}"
    for out in (redact_url(url), redact_text(f"failed: {url} (retrying)")):
        assert f"Zq{PW}" not in out and f"Zq{TOKEN}" not in out, out
        assert f"{user}:***@{host}" in out


def test_mqtt_target_and_dsn_use_the_same_rule() -> None:
    t = parse_mqtt_url(f"mqtts://ingest:{PW}@broker:8883")
    assert t.password == PW and t.redacted() == "mqtts://ingest:***@broker:8883"
    assert parse_mqtt_url(f"mqtt://ing%40est:{PW}@h").redacted() == "mqtt://ing%40est:***@h:1883"
    assert parse_mqtt_url("mqtt://h").redacted() == "mqtt://h:1883"
    assert redact_dsn(f"postgresql://pp:{PW}@db/pp") == "postgresql://pp:***@db/pp"
    assert redact_dsn(f"host=db password={PW}") == "host=db password=***"


@pytest.mark.parametrize(
    "url",
    [
        f"mqttx://ingest:{PW}@host",
        f"mqtt://ingest:{PW}@host:99999",
        f"mqtt://ingest:{PW}@host:port",
        f"mqtt://ingest:{PW}@[::1",
    ],
)
def test_bad_mqtt_url_is_refused_with_the_url_redacted(url: str) -> None:
    with pytest.raises(ValueError, match=r"^mqtt url: ") as exc:
        parse_mqtt_url(url)
    assert PW not in str(exc.value)
    assert "ingest:***@" in str(exc.value)


def test_field_error_shows_the_value_redacted() -> None:
    e = FieldError("uplink.url", f"mqttx://gw:{PW}@h", "must start with mqtt://")
    assert str(e) == "uplink.url: must start with mqtt:// (got 'mqttx://gw:***@h')"
    assert e.value == f"mqttx://gw:{PW}@h"  # the value itself is kept for the code that handles it
    assert PW not in str(FieldError("uplink.password", PW, "too short"))
    assert (
        str(FieldError("readings[0].value", "x", "must be a number"))
        == "readings[0].value: must be a number (got 'x')"
    )


def test_bad_settings_name_the_variable_without_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARKPULSE_MQTT_URL", f"mqttx://ingest:{PW}@host")
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigError) as exc:
            get_settings()
    finally:
        get_settings.cache_clear()
    msg = str(exc.value)
    assert msg.startswith("PARKPULSE_MQTT_URL: ") and "scheme must be mqtt:// or mqtts://" in msg
    assert "'mqttx://ingest:***@host'" in msg and PW not in msg


def test_unreachable_or_malformed_database_is_a_store_error_without_the_password() -> None:
    from parkpulse.db import connect

    for dsn in (
        f"postgresql://pp:{PW}@127.0.0.1:1/pp",
        f"postgresql://pp:{PW}@127.0.0.1/pp?nonsense=1",
        f"host=127.0.0.1 port=1 password={PW} dbname=pp",
    ):
        with pytest.raises(StoreError) as exc:
            connect(dsn, timeout=2).close()
        assert PW not in str(exc.value) and "***" in str(exc.value), str(exc.value)


@pytest.mark.parametrize(
    "text", ["a" * 200_000, "ab" * 100_000, "a.b-c_" * 40_000, "a=b " * 50_000, "x://" * 50_000]
)
def test_redaction_takes_linear_time(text: str) -> None:
    """A long value in a refused message (a reading's value, a payload) must not stall the caller."""
    import time

    t0 = time.perf_counter()
    redact_text(text)
    redact_value("readings[0].value", text)
    assert time.perf_counter() - t0 < 1.0


def test_secrets_in_a_quoted_section_are_masked() -> None:
    """An error about a missing field quotes its whole section: `uplink: {username, password}`."""
    shown = redact_value("uplink.url", {"username": "gw1", "password": PW, "extra": [{"token": TOKEN}]})
    assert PW not in shown and TOKEN not in shown and "'gw1'" in shown
    e = FieldError("uplink.url", {"username": "gw1", "password": PW}, "Field required")
    assert str(e) == "uplink.url: Field required (got {'username': 'gw1', 'password': '***'})"
