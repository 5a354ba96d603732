"""Endpoint parsing is libpq's; what we add (defaults, redaction, errors) must never leak a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.infra.errors import InputError

SPECIAL_PASSWORD = "p@ss:w/rd%#"
ENCODED_PASSWORD = "p%40ss%3Aw%2Frd%25%23"


def _no_secret(endpoint: Endpoint, secret: str) -> None:
    for text in (endpoint.redacted(), repr(endpoint), str(endpoint), f"{endpoint}", f"{endpoint!r}"):
        assert secret not in text, text


def test_url_with_special_characters_in_password() -> None:
    endpoint = Endpoint.parse(f"postgresql://app:{ENCODED_PASSWORD}@db.example.com:6543/sales", env={})
    assert endpoint.password == SPECIAL_PASSWORD
    assert (endpoint.user, endpoint.host, endpoint.port, endpoint.dbname) == ("app", "db.example.com", "6543", "sales")
    assert endpoint.redacted() == "postgresql://app:***@db.example.com:6543/sales"
    _no_secret(endpoint, SPECIAL_PASSWORD)
    _no_secret(endpoint, ENCODED_PASSWORD)


def test_postgres_scheme_ipv6_and_query_parameters() -> None:
    endpoint = Endpoint.parse(
        "postgres://u:pw@[2001:db8::1]:5433/my%20db?sslmode=verify-full&sslrootcert=/etc/ca.pem"
        "&options=-c%20statement_timeout%3D0",
        env={},
    )
    assert endpoint.host == "2001:db8::1"
    assert endpoint.dbname == "my db"
    assert endpoint.params["sslmode"] == "verify-full"
    assert endpoint.params["sslrootcert"] == "/etc/ca.pem"
    assert endpoint.params["options"] == "-c statement_timeout=0"
    assert endpoint.redacted().startswith("postgresql://u:***@[2001:db8::1]:5433/my%20db?")
    assert "sslmode=verify-full" in endpoint.redacted()
    _no_secret(endpoint, ":pw@")


def test_keyword_dsn_with_quoted_values() -> None:
    endpoint = Endpoint.parse(r"host=10.0.0.5 port=5432 dbname='my db' user=admin password='it\'s\\secret'", env={})
    assert endpoint.dbname == "my db"
    assert endpoint.password == "it's\\secret"
    _no_secret(endpoint, "secret")
    assert endpoint.redacted() == "postgresql://admin:***@10.0.0.5:5432/my%20db"


def test_environment_supplies_defaults_but_explicit_wins() -> None:
    env = {"PGHOST": "envhost", "PGPORT": "7777", "PGUSER": "envuser", "PGDATABASE": "envdb", "PGPASSWORD": "envpw"}
    endpoint = Endpoint.parse("", env=env)
    assert (endpoint.host, endpoint.port, endpoint.user, endpoint.dbname) == ("envhost", "7777", "envuser", "envdb")
    assert endpoint.params == {}  # libpq applies the environment itself when connecting
    _no_secret(endpoint, "envpw")
    explicit = Endpoint.parse("postgresql://me@here/db", env=env)
    assert (explicit.host, explicit.port, explicit.user, explicit.dbname) == ("here", "7777", "me", "db")


def test_service_file(tmp_path: Path) -> None:
    service_file = tmp_path / "pg_service.conf"
    service_file.write_text("# comment\n[billing]\nhost=billing.internal\nport=6000\ndbname=ledger\nuser=bill\npassword=svcpw\n")
    endpoint = Endpoint.parse("service=billing", env={"PGSERVICEFILE": str(service_file)})
    assert (endpoint.host, endpoint.port, endpoint.dbname, endpoint.user) == ("billing.internal", "6000", "ledger", "bill")
    assert endpoint.params == {"service": "billing"}
    assert "service=billing" in endpoint.redacted()
    _no_secret(endpoint, "svcpw")


def test_unknown_service_is_an_input_error(tmp_path: Path) -> None:
    service_file = tmp_path / "pg_service.conf"
    service_file.write_text("[other]\nhost=x\n")
    with pytest.raises(InputError) as info:
        Endpoint.parse("service=missing", env={"PGSERVICEFILE": str(service_file), "HOME": str(tmp_path)})
    assert "missing" in info.value.cause
    assert "pg_service.conf" in info.value.remedy


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("postgresql://u:sec%zzret@h/db", "sec"),  # libpq quotes the bad token, which is the password
        ("host=x password=abc def", "def"),  # and here the stray word after the password
        ("postgresql://u:topsecret@h/db?bogus=1", "topsecret"),
        ("postgresql://u:topsecret@[::1/db", "topsecret"),
    ],
)
def test_unparseable_strings_raise_without_the_secret(text: str, secret: str) -> None:
    with pytest.raises(InputError) as info:
        Endpoint.parse(text, env={})
    error = info.value
    assert secret not in str(error) and secret not in error.cause and secret not in repr(error)
    assert error.remedy and "postgresql://" in error.remedy
    assert error.__cause__ is None and error.__suppress_context__


def test_non_postgres_url_is_refused() -> None:
    with pytest.raises(InputError, match="not a PostgreSQL"):
        Endpoint.parse("mysql://root:pw@host/db", env={})


def test_with_dbname_and_connect_kwargs() -> None:
    endpoint = Endpoint.parse("postgresql://u:pw@h/one?connect_timeout=3", env={})
    other = endpoint.with_dbname("two")
    assert other.dbname == "two" and endpoint.dbname == "one"
    kwargs = other.connect_kwargs()
    assert kwargs["dbname"] == "two" and kwargs["password"] == "pw"
    assert kwargs["keepalives"] == "1" and kwargs["keepalives_idle"] == "30"
    assert kwargs["connect_timeout"] == "3"  # the user's setting beats our default
    assert "password" not in other.conninfo(include_password=False)
    assert "pw" not in other.without_password().conninfo()
    assert hash(other) == hash(endpoint.with_dbname("two")) and other == endpoint.with_dbname("two")


def test_redact_scrubs_server_messages() -> None:
    endpoint = Endpoint.parse(f"postgresql://u:{ENCODED_PASSWORD}@h/db", env={})
    assert endpoint.redact(f"error near {SPECIAL_PASSWORD} and {ENCODED_PASSWORD}") == "error near *** and ***"


def test_subscription_connection_string_can_leave_the_password_out() -> None:
    from pgtide.core.engine.migrate import subscription_conninfo
    from pgtide.core.model.plan import Options, Plan

    plan = Plan(Endpoint.parse(f"postgresql://app:{ENCODED_PASSWORD}@src:5432/x", env={}),
                Endpoint.parse("postgresql://app@dst/x", env={}))
    assert SPECIAL_PASSWORD in subscription_conninfo(plan, "shop").replace("\\", "")
    assert "dbname=shop" in subscription_conninfo(plan, "shop")
    without = Plan(plan.source, plan.target, options=Options(subscription_password=False))
    assert "password" not in subscription_conninfo(without, "shop")


def test_port_and_enumerated_values_are_checked_when_parsed() -> None:
    import pytest

    from pgtide.core.infra.errors import InputError

    for text, message in (("postgresql://u:pw@h:5x/db", "port must be a number"),
                          ("postgresql://u@h/db?sslmode=requir", "sslmode must be one of"),
                          ("host=h target_session_attrs=rw", "target_session_attrs must be one of")):
        with pytest.raises(InputError) as info:
            Endpoint.parse(text, env={})
        assert message in info.value.cause and "pw" not in info.value.cause
    with pytest.raises(InputError):
        Endpoint.parse("postgresql://u@h/db", env={"PGPORT": "five"})
    # Multi-host port lists (an empty entry means the default) are fine.
    assert Endpoint.parse("host=a,b,c port=5432,,5433", env={}).get("port") == "5432,,5433"
