"""Catalog invariants: ownership, grants, row-level security flags, view security."""

from __future__ import annotations

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from tgfleet.db.models import TENANT_COLUMNS
from tgfleet.platform.settings import Settings


def _rows(engine: Engine, sql: str, **params: object) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def test_no_partition_has_direct_grants(owner_engine: Engine) -> None:
    # Given the migrated schema; Then every partition's ACL is the owner's default
    granted = _rows(
        owner_engine,
        "SELECT relname, relacl::text FROM pg_class WHERE relispartition AND relacl IS NOT NULL",
    )
    assert granted == []
    partitions = _rows(owner_engine, "SELECT count(*) FROM pg_class WHERE relispartition")
    assert partitions[0][0] > 0


def test_no_view_runs_with_superuser_rights(owner_engine: Engine) -> None:
    # Then every view either is security_invoker or is not owned by a superuser
    unsafe = _rows(
        owner_engine,
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_roles r ON r.oid = c.relowner WHERE c.relkind IN ('v', 'm') "
        "AND n.nspname = 'public' AND r.rolsuper "
        "AND NOT coalesce('security_invoker=true' = ANY(c.reloptions), false)",
    )
    assert unsafe == []
    views = _rows(
        owner_engine,
        "SELECT relname, reloptions FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE relkind = 'v' AND nspname = 'public' ORDER BY 1",
    )
    assert [v[0] for v in views] == ["bot_activity_summary", "daily_metrics_summary"]
    assert all(v[1] == ["security_invoker=true"] for v in views)


def test_app_roles_own_nothing_and_cannot_bypass_rls(
    owner_engine: Engine, db_settings: Settings
) -> None:
    app_roles = [db_settings.role(n) for n in ("admin", "bot", "app_base")]
    login = make_url(db_settings.database_url).username
    owned = _rows(
        owner_engine,
        "SELECT r.rolname, count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
        "WHERE r.rolname = ANY(:roles) GROUP BY 1",
        roles=[*app_roles, login],
    )
    assert owned == []
    attrs = _rows(
        owner_engine,
        "SELECT rolname, rolsuper, rolbypassrls, rolcanlogin FROM pg_roles "
        "WHERE rolname = ANY(:roles) OR rolname = :owner ORDER BY 1",
        roles=[*app_roles, login],
        owner=db_settings.role("super_admin"),
    )
    assert len(attrs) == 5
    assert all(not sup and not bypass for _, sup, bypass, _ in attrs)
    assert [name for name, *_rest, can_login in attrs if can_login] == [login]


def test_everything_is_owned_by_super_admin(owner_engine: Engine, db_settings: Settings) -> None:
    owners = _rows(
        owner_engine,
        "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relname NOT LIKE 'alembic_version%'",
    )
    assert owners == [(db_settings.role("super_admin"),)]


def test_every_tenant_table_forces_rls_with_policies(owner_engine: Engine) -> None:
    flags = dict(
        (name, (rls, force, policies))
        for name, rls, force, policies in _rows(
            owner_engine,
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, "
            "(SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) "
            "FROM pg_class c WHERE c.relname = ANY(:t)",
            t=list(TENANT_COLUMNS),
        )
    )
    assert set(flags) == set(TENANT_COLUMNS)
    assert all(v == (True, True, 2) for v in flags.values()), flags


def test_app_login_is_noinherit_member_of_admin_and_bot(
    owner_engine: Engine, db_settings: Settings
) -> None:
    login = make_url(db_settings.database_url).username
    rows = _rows(
        owner_engine,
        "SELECT r.rolinherit, array_agg(g.rolname ORDER BY g.rolname) FROM pg_roles r "
        "JOIN pg_auth_members m ON m.member = r.oid JOIN pg_roles g ON g.oid = m.roleid "
        "WHERE r.rolname = :login AND g.rolname LIKE :prefix GROUP BY 1",
        login=login,
        prefix=f"{db_settings.db_role_prefix}\\_%",
    )
    assert rows == [(False, [db_settings.role("admin"), db_settings.role("bot")])]
