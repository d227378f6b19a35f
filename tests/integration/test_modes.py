"""Degradation modes against real PostgreSQL and Redis: the API, audit, Redis copy and mode.changed events."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import sqlalchemy as sa

from dashboard.db import create_db_engine, migrate, mode_audit, mode_states
from dashboard.ingest import Ingestor
from dashboard.modes import CATALOGUE, ModeChange, in_force
from dashboard.runtime import Runtime, connect_redis
from dashboard.settings import Settings
from dashboard.stream import Keys
from datasources.modes import _COPY_IF_NEWER, LOADED_FIELD, audit, current_modes, list_modes, modes_key, set_mode
from tests.helpers import make_event
from tests.integration.test_api_events import drain, post

READERS = ("viewer", "site_lead", "operator", "admin")
CHANGERS = ("operator", "admin")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def put(client, token: str, mode: str, body):  # type: ignore[no-untyped-def]
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.put(f"/api/v1/modes/{mode}", data=data, headers={**auth(token), "Content-Type": "application/json"})


def change(site_id: str = "SEA1", enabled: bool = True, reason: str = "WMS slow", **extra):  # type: ignore[no-untyped-def]
    return {"site_id": site_id, "enabled": enabled, "reason": reason, **extra}


def stream_events(runtime: Runtime) -> list[dict]:
    return [orjson.loads(fields[b"e"]) for _, fields in runtime.redis.xrange(runtime.keys.stream)]


def audit_rows(runtime: Runtime) -> list[dict]:
    with runtime.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(sa.select(mode_audit).order_by(mode_audit.c.id))]


def listing(client, token: str) -> dict[tuple[str, str], dict]:  # type: ignore[no-untyped-def]
    response = client.get("/api/v1/modes", headers=auth(token))
    assert response.status_code == 200
    return {(entry["mode"], entry["site_id"]): entry for entry in response.get_json()}


# -- roles ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["viewer", "site_lead", "ingest"])
def test_roles_that_may_not_change_modes_get_403_and_change_nothing(client, token, runtime, role):
    response = put(client, token(role), "priority_only", change())
    assert response.status_code == 403
    assert f"role '{role}' may not call PUT /api/v1/modes/priority_only" in response.get_json()["error"]
    assert audit_rows(runtime) == []
    assert runtime.redis.xlen(runtime.keys.stream) == 0


@pytest.mark.parametrize("role", CHANGERS)
def test_operator_and_admin_may_change_modes(client, token, runtime, role):
    response = put(client, token(role, f"{role}-on-call"), "priority_only", change())
    assert response.status_code == 200
    assert response.get_json()["changed_by"] == f"{role}-on-call"


@pytest.mark.parametrize("role", READERS)
def test_every_reading_role_may_read_modes_and_the_audit(client, token, role):
    reader = token(role)
    assert client.get("/api/v1/modes", headers=auth(reader)).status_code == 200
    assert client.get("/api/v1/modes/audit", headers=auth(reader)).status_code == 200


def test_ingest_may_not_read_modes(client, token):
    ingest = token("ingest")
    for path in ("/api/v1/modes", "/api/v1/modes/audit"):
        response = client.get(path, headers=auth(ingest))
        assert response.status_code == 403
        assert "role 'ingest' may not call GET" in response.get_json()["error"]


def test_no_token_is_401(client):
    assert client.get("/api/v1/modes").status_code == 401
    assert client.get("/api/v1/modes/audit").status_code == 401
    assert client.put("/api/v1/modes/priority_only", json=change()).status_code == 401


# -- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "body", "message"),
    [
        ("slow_down", change(), "mode: unknown mode 'slow_down'"),
        ("audit", change(), "mode: unknown mode 'audit'"),
        ("priority_only", change(site_id="SEA 1"), "site_id: must be '*' (the whole network) or match"),
        ("priority_only", change(site_id=""), "site_id: must be '*'"),
        ("priority_only", {"enabled": True, "reason": "x"}, "site_id: is required"),
        ("priority_only", change(enabled="yes"), "enabled: must be true or false, got 'yes'"),
        ("priority_only", {"site_id": "SEA1", "reason": "x"}, "enabled: is required"),
        ("priority_only", change(reason=""), "reason: must not be empty"),
        ("priority_only", change(reason="   "), "reason: must not be empty"),
        ("priority_only", change(reason=42), "reason: must be a string, got 42"),
        ("priority_only", {"site_id": "SEA1", "enabled": True}, "reason: is required"),
        ("priority_only", change(reason="nul\u0000here"), "reason: must not contain the NUL character"),
        ("priority_only", change(params={"extra_minutes": 5}), "params.extra_minutes: unknown parameter"),
        ("priority_only", change(params="fast"), "params: must be a JSON object, got 'fast'"),
        ("priority_only", change(note="typo"), "note: unknown field"),
        (
            "conservative_promises",
            change(params={"extra_minutes": 300}),
            "params.extra_minutes: must be an integer from 0 to 240, got 300",
        ),
        ("conservative_promises", change(params={"extra_minutes": "45"}), "params.extra_minutes: must be an integer"),
        ("conservative_promises", change(params={"extra_minutes": 4.5}), "params.extra_minutes: must be an integer"),
        (
            "admission_control",
            change(params={"max_orders_per_hour": 0}),
            "params.max_orders_per_hour: must be an integer from 1 to 100000, got 0",
        ),
        ("admission_control", change(params={"orders": 10}), "params.orders: unknown parameter of admission_control"),
        ("priority_only", [change()], "body: must be a JSON object, got list"),
        ("priority_only", b"null", "body: must be a JSON object, got NoneType"),
        ("priority_only", b"{not json", "body: is not valid JSON"),
        ("priority_only", b"", "body: is not valid JSON"),
    ],
)
def test_invalid_changes_are_400_naming_the_field_and_change_nothing(client, token, runtime, mode, body, message):
    response = put(client, token("operator"), mode, body)
    assert response.status_code == 400
    assert message in response.get_json()["error"]
    assert audit_rows(runtime) == []
    assert runtime.redis.exists(modes_key(runtime.keys)) == 0
    assert runtime.redis.xlen(runtime.keys.stream) == 0


def test_oversized_body_is_413(client, token, runtime):
    response = put(client, token("operator"), "priority_only", change(reason="x" * 70_000))
    assert response.status_code == 413
    assert audit_rows(runtime) == []


def test_bad_audit_query_is_400(client, token):
    viewer = token("viewer")
    for query, message in (
        ("limit=0", "limit:"),
        ("mode=nope", "mode: unknown mode 'nope'"),
        ("site_id=a%20b", "site_id:"),
    ):
        response = client.get(f"/api/v1/modes/audit?{query}", headers=auth(viewer))
        assert response.status_code == 400
        assert message in response.get_json()["error"]


# -- state, params and audit ------------------------------------------------------------


def test_put_answers_the_new_state_and_params_merge(client, token, runtime):
    operator = token("operator", "alice")
    first = put(client, operator, "conservative_promises", change(reason="  storm coming  "))
    assert first.status_code == 200
    state = first.get_json()
    assert {k: state[k] for k in ("mode", "site_id", "enabled", "params", "changed_by", "reason")} == {
        "mode": "conservative_promises",
        "site_id": "SEA1",
        "enabled": True,
        "params": {"extra_minutes": 30},  # first set, params omitted: the defaults
        "changed_by": "alice",
        "reason": "storm coming",
    }
    changed_at = datetime.fromisoformat(state["changed_at"])
    assert abs(datetime.now(UTC) - changed_at) < timedelta(seconds=30)

    second = put(client, operator, "conservative_promises", change(reason="worse", params={"extra_minutes": 90}))
    assert second.get_json()["params"] == {"extra_minutes": 90}
    # Disabled without params: the previous params are kept.
    off = put(client, operator, "conservative_promises", change(enabled=False, reason="storm over"))
    assert (off.get_json()["enabled"], off.get_json()["params"]) == (False, {"extra_minutes": 90})
    on_again = put(client, operator, "conservative_promises", change(reason="again"))
    assert on_again.get_json()["params"] == {"extra_minutes": 90}

    with runtime.engine.connect() as connection:
        rows = connection.execute(sa.select(mode_states)).all()
    assert [(r.mode, r.site_id, r.enabled, r.params, r.changed_by, r.reason) for r in rows] == [
        ("conservative_promises", "SEA1", True, {"extra_minutes": 90}, "alice", "again")
    ]


def test_audit_records_every_change_newest_first(client, token, runtime):
    alice, bob = token("operator", "alice"), token("admin", "bob")
    put(client, alice, "admission_control", change(reason="peak", params={"max_orders_per_hour": 150}))
    put(client, bob, "admission_control", change(enabled=False, reason="peak over"))
    put(client, bob, "priority_only", change(site_id="*", reason="network incident"))

    response = client.get("/api/v1/modes/audit", headers=auth(token("viewer")))
    assert response.status_code == 200
    trail = response.get_json()
    assert [
        (e["mode"], e["site_id"], e["old_enabled"], e["new_enabled"], e["old_params"], e["new_params"]) for e in trail
    ] == [
        ("priority_only", "*", None, True, None, {}),
        ("admission_control", "SEA1", True, False, {"max_orders_per_hour": 150}, {"max_orders_per_hour": 150}),
        ("admission_control", "SEA1", None, True, None, {"max_orders_per_hour": 150}),
    ]
    assert [(e["changed_by"], e["reason"]) for e in trail] == [
        ("bob", "network incident"),
        ("bob", "peak over"),
        ("alice", "peak"),
    ]
    assert trail[0]["id"] > trail[1]["id"] > trail[2]["id"]
    times = [datetime.fromisoformat(e["changed_at"]) for e in trail]
    assert times == sorted(times, reverse=True)

    # The first change of a scope stores SQL NULL, not a JSON null, for the old values.
    with runtime.engine.connect() as connection:
        firsts = connection.execute(
            sa.select(sa.func.count()).select_from(mode_audit).where(mode_audit.c.old_params.is_(None))
        ).scalar_one()
    assert firsts == 2

    filtered = client.get(
        "/api/v1/modes/audit?mode=admission_control&site_id=SEA1&limit=1", headers=auth(token("viewer"))
    ).get_json()
    assert [(e["mode"], e["reason"]) for e in filtered] == [("admission_control", "peak over")]
    assert client.get("/api/v1/modes/audit?site_id=*", headers=auth(token("viewer"))).get_json()[0]["mode"] == (
        "priority_only"
    )


def test_listing_holds_catalogue_defaults_and_every_set_scope(client, token):
    operator = token("operator", "ops")
    put(client, operator, "admission_control", change(site_id="PDX2", reason="r1", params={"max_orders_per_hour": 9}))
    put(client, operator, "admission_control", change(site_id="SEA1", enabled=False, reason="r2"))
    put(client, operator, "priority_only", change(site_id="*", reason="r3"))

    response = client.get("/api/v1/modes", headers=auth(token("viewer")))
    entries = response.get_json()
    assert [(e["mode"], e["site_id"]) for e in entries] == [
        ("pause_reslotting", "*"),
        ("pause_bulk_adjustments", "*"),
        ("conservative_promises", "*"),
        ("eta_cache_fallback", "*"),
        ("admission_control", "*"),
        ("admission_control", "PDX2"),
        ("admission_control", "SEA1"),
        ("priority_only", "*"),
    ]
    by_scope = {(e["mode"], e["site_id"]): e for e in entries}
    for name, mode in CATALOGUE.items():
        if name != "priority_only":
            assert by_scope[(name, "*")] == {
                "mode": name,
                "site_id": "*",
                "enabled": False,
                "params": mode.defaults(),
                "changed_at": None,
                "changed_by": None,
                "reason": None,
            }
    assert by_scope[("admission_control", "PDX2")]["params"] == {"max_orders_per_hour": 9}
    assert by_scope[("admission_control", "SEA1")]["enabled"] is False
    assert by_scope[("admission_control", "SEA1")]["params"] == {"max_orders_per_hour": 200}
    network = by_scope[("priority_only", "*")]
    assert (network["enabled"], network["changed_by"], network["reason"]) == (True, "ops", "r3")
    assert network["changed_at"] is not None


def test_a_fresh_system_lists_the_catalogue_at_defaults(client, token):
    entries = listing(client, token("viewer"))
    assert list(entries) == [(name, "*") for name in CATALOGUE]
    assert all(e["enabled"] is False and e["changed_at"] is None for e in entries.values())


# -- the Redis copy ---------------------------------------------------------------------


def test_redis_copy_holds_the_state(client, token, runtime):
    state = put(
        client, token("operator"), "conservative_promises", change(reason="ice", params={"extra_minutes": 20})
    ).get_json()
    copy = orjson.loads(runtime.redis.hget(f"{runtime.keys.prefix}:modes", "conservative_promises|SEA1"))
    assert copy == {**state, "version": audit_rows(runtime)[-1]["id"]}
    modes = current_modes(runtime.redis, runtime.keys, runtime.engine)
    assert list(modes) == [("conservative_promises", "SEA1")]
    assert modes[("conservative_promises", "SEA1")].as_dict() == state
    assert in_force(modes, "conservative_promises", "SEA1").params == {"extra_minutes": 20}
    assert in_force(modes, "conservative_promises", "PDX2") is None


def test_current_modes_survives_a_redis_flush(client, token, runtime):
    operator = token("operator")
    put(client, operator, "priority_only", change(site_id="*", reason="incident"))
    put(client, operator, "admission_control", change(reason="peak", params={"max_orders_per_hour": 75}))
    before = current_modes(runtime.redis, runtime.keys, runtime.engine)
    assert set(before) == {("priority_only", "*"), ("admission_control", "SEA1")}

    for key in runtime.redis.scan_iter(match=f"{runtime.keys.prefix}:*"):
        runtime.redis.delete(key)
    assert runtime.redis.exists(modes_key(runtime.keys)) == 0

    after = current_modes(runtime.redis, runtime.keys, runtime.engine)
    assert after == before
    assert runtime.redis.hexists(modes_key(runtime.keys), LOADED_FIELD)
    assert orjson.loads(runtime.redis.hget(modes_key(runtime.keys), "admission_control|SEA1"))["params"] == {
        "max_orders_per_hour": 75
    }
    # A change made before any read after a flush must not hide the other modes.
    runtime.redis.delete(modes_key(runtime.keys))
    put(client, operator, "eta_cache_fallback", change(reason="ETA service down"))
    assert set(current_modes(runtime.redis, runtime.keys, runtime.engine)) == {
        ("priority_only", "*"),
        ("admission_control", "SEA1"),
        ("eta_cache_fallback", "SEA1"),
    }


def test_reload_never_overwrites_a_newer_copy(runtime):
    """A reload that read the database before a change must not put the old state back."""
    ingestor = runtime.ingestor()
    now = datetime.now(UTC)
    set_mode(
        runtime.engine, runtime.redis, runtime.keys, ingestor, ModeChange("priority_only", "*", True, "a"), "x", now
    )
    runtime.redis.delete(modes_key(runtime.keys))
    stale = list_modes(runtime.engine)  # what a slow reload would have read
    newer = set_mode(
        runtime.engine, runtime.redis, runtime.keys, ingestor, ModeChange("priority_only", "*", False, "b"), "x", now
    )
    key = modes_key(runtime.keys)
    for state in stale:
        if state.changed_at is not None:
            runtime.redis.hsetnx(key, f"{state.mode}|{state.site_id}", orjson.dumps(state.as_dict()))
    assert current_modes(runtime.redis, runtime.keys, runtime.engine)[("priority_only", "*")] == newer


def test_an_older_change_reaching_redis_late_does_not_win(runtime):
    ingestor = runtime.ingestor()
    now = datetime.now(UTC)
    older = set_mode(
        runtime.engine, runtime.redis, runtime.keys, ingestor, ModeChange("priority_only", "*", True, "a"), "x", now
    )
    newer = set_mode(
        runtime.engine, runtime.redis, runtime.keys, ingestor, ModeChange("priority_only", "*", False, "b"), "x", now
    )
    older_id, newer_id = (row["id"] for row in audit_rows(runtime))
    copy_if_newer = runtime.redis.register_script(_COPY_IF_NEWER)
    field = "priority_only|*"
    key = modes_key(runtime.keys)
    assert (
        copy_if_newer(keys=[key], args=[field, orjson.dumps({**older.as_dict(), "version": older_id}), older_id]) == 0
    )
    assert current_modes(runtime.redis, runtime.keys, runtime.engine)[("priority_only", "*")] == newer
    assert orjson.loads(runtime.redis.hget(key, field))["version"] == newer_id


# -- the mode.changed event -------------------------------------------------------------


def test_each_change_is_a_mode_changed_event_on_the_stream_and_in_history(client, token, runtime):
    operator = token("operator", "carol")
    put(client, operator, "admission_control", change(site_id="*", reason="peak", params={"max_orders_per_hour": 99}))
    put(client, operator, "admission_control", change(site_id="*", enabled=False, reason="calm"))

    events = stream_events(runtime)
    assert len(events) == 2
    audit_ids = [row["id"] for row in audit_rows(runtime)]
    first, second = events
    assert first["specversion"] == "1.0"
    assert (first["source"], first["type"]) == ("/tower/modes", "mode.changed")
    assert first["id"].startswith(f"mode-audit-{audit_ids[0]}-")
    assert second["id"].startswith(f"mode-audit-{audit_ids[1]}-")
    assert first["data"] == {
        "site_id": "*",
        "mode": "admission_control",
        "enabled": True,
        "actor": "carol",
        "reason": "peak",
        "params": {"max_orders_per_hour": 99},
    }
    assert (second["data"]["enabled"], second["data"]["reason"], second["data"]["params"]) == (
        False,
        "calm",
        {"max_orders_per_hour": 99},
    )
    assert abs(datetime.now(UTC) - datetime.fromisoformat(first["time"])) < timedelta(seconds=30)
    assert runtime.redis.hget(runtime.keys.stats, "accepted") == b"2"

    drain(runtime)
    with runtime.engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT source, id, type, site_id, payload FROM events ORDER BY id")).all()
    assert [(r.source, r.id, r.type, r.site_id) for r in rows] == [
        ("/tower/modes", first["id"], "mode.changed", "*"),
        ("/tower/modes", second["id"], "mode.changed", "*"),
    ]
    assert rows[0].payload == first


def test_a_change_is_published_even_when_the_backlog_is_at_its_bound(database_url, redis_url, token, runtime):
    from dashboard.webapp import create_app

    bounded = Runtime(
        Settings(redis_url=redis_url, database_url=database_url, key_prefix=runtime.keys.prefix, max_backlog=2),
        runtime.redis,
        runtime.engine,
        runtime.keys,
    )
    client = create_app(runtime=bounded).server.test_client()
    assert post(client, token("ingest"), [make_event(), make_event()]).status_code == 202
    assert post(client, token("ingest"), [make_event()]).status_code == 429
    response = put(client, token("operator"), "admission_control", change(reason="overload"))
    assert response.status_code == 200
    assert [e["type"] for e in stream_events(runtime)][-1] == "mode.changed"


def test_redis_down_keeps_the_committed_change_and_says_so(database_url, token, runtime):
    from dashboard.webapp import create_app

    settings = Settings(redis_url="redis://127.0.0.1:1/0", database_url=database_url, key_prefix="down")
    client = create_app(settings).server.test_client()
    response = put(client, token("operator"), "priority_only", change(reason="Redis test"))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "the change is recorded (audit" in response.get_json()["error"]
    assert [(r["mode"], r["new_enabled"]) for r in audit_rows(runtime)] == [("priority_only", True)]


# -- concurrency ------------------------------------------------------------------------


def test_concurrent_changes_audit_the_true_old_values(runtime):
    """Changes of one mode and scope queue on the row lock: each audit row's old values are the previous new ones."""
    ingestor = runtime.ingestor()
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def flip(n: int) -> None:
        try:
            barrier.wait()
            for step in range(3):
                minutes = n * 10 + step
                set_mode(
                    runtime.engine,
                    runtime.redis,
                    runtime.keys,
                    ingestor,
                    ModeChange("conservative_promises", "SEA1", step % 2 == 0, f"t{n}", {"extra_minutes": minutes}),
                    f"worker-{n}",
                    datetime.now(UTC),
                )
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=flip, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    rows = audit_rows(runtime)
    assert len(rows) == 24
    assert (rows[0]["old_enabled"], rows[0]["old_params"]) == (None, None)
    for before, after in zip(rows, rows[1:], strict=False):
        assert (after["old_enabled"], after["old_params"]) == (before["new_enabled"], before["new_params"])
    with runtime.engine.connect() as connection:
        final = connection.execute(sa.select(mode_states)).one()
    assert (final.enabled, final.params) == (rows[-1]["new_enabled"], rows[-1]["new_params"])
    # However the Redis updates interleaved, the copy ends at the last committed state.
    copy = runtime.redis.hget(modes_key(runtime.keys), "conservative_promises|SEA1")
    assert orjson.loads(copy)["version"] == rows[-1]["id"]
    state = current_modes(runtime.redis, runtime.keys, runtime.engine)[("conservative_promises", "SEA1")]
    assert (state.enabled, state.params, state.reason) == (final.enabled, final.params, final.reason)


# -- the embedded store -----------------------------------------------------------------


def test_the_store_works_on_sqlite_and_the_in_process_redis(tmp_path):
    settings = Settings(redis_url=None, database_url=None, var_dir=tmp_path, key_prefix="embedded")
    engine = create_db_engine(settings)
    migrate(engine)
    client = connect_redis(settings)
    keys = Keys("embedded")
    ingestor = Ingestor(client, keys, max_backlog=100, dedup_ttl_s=3600)
    try:
        now = datetime.now(UTC)
        first = set_mode(
            engine, client, keys, ingestor, ModeChange("admission_control", "*", True, "peak", {}), "ops", now
        )
        second = set_mode(
            engine,
            client,
            keys,
            ingestor,
            ModeChange("admission_control", "*", False, "calm", {"max_orders_per_hour": 5}),
            "ops",
            now + timedelta(seconds=1),
        )
        assert first.params == {"max_orders_per_hour": 200}
        assert second.params == {"max_orders_per_hour": 5}
        listed = {(s.mode, s.site_id): s for s in list_modes(engine)}
        assert listed[("admission_control", "*")] == second
        assert listed[("admission_control", "*")].changed_at == now + timedelta(seconds=1)
        trail = audit(engine)
        assert [(e.old_enabled, e.new_enabled, e.old_params, e.reason) for e in trail] == [
            (True, False, {"max_orders_per_hour": 200}, "calm"),
            (None, True, None, "peak"),
        ]
        assert trail[0].changed_at.tzinfo is not None
        client.delete(modes_key(keys))
        assert current_modes(client, keys, engine) == {("admission_control", "*"): second}
        assert [orjson.loads(f[b"e"])["type"] for _, f in client.xrange(keys.stream)] == ["mode.changed"] * 2
    finally:
        client.close()
        engine.dispose()
