"""Raw SQL for roles, grants and row-level security, used by the migrations.

Why raw SQL: SQLAlchemy and Alembic have no constructs for roles, role membership,
``GRANT``, ``ALTER TABLE ... FORCE ROW LEVEL SECURITY`` or ``CREATE POLICY``, and
autogenerate cannot see them. Keeping the statements here (not scattered through
migrations) lets the tests and docs refer to one definition.

Migrations call these builders with table lists frozen in the migration itself. Treat
the builders as append-only: if a statement must change, add a new builder and a new
revision, so that replaying old revisions still produces the same database.

Role model (``<p>`` is ``Settings.db_role_prefix``):

* ``<p>_super_admin``: NOLOGIN, owns every object; migrations ``SET ROLE`` to it.
* ``<p>_app_base``: NOLOGIN, common grants (schema usage, DML on tenant tables).
* ``<p>_admin``: member of app_base; policies let it see and write every bot.
* ``<p>_bot``: member of app_base; policies restrict it to ``app.bot_id``.
* The app's login role (from ``DATABASE_URL``) is made a member of admin and bot and set
  NOINHERIT, so it has no rights at all until ``session_scope`` sets a role.

None of them has BYPASSRLS or SUPERUSER; only super_admin owns anything.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.engine import make_url

#: Roles in creation order (app_base first: admin and bot are its members).
ROLE_NAMES = ("super_admin", "app_base", "admin", "bot")

#: The tenant expression, wrapped in a scalar subquery so it is evaluated once per query
#: (an InitPlan) instead of once per row; NULL (no tenant) matches no row.
TENANT_EXPR = "(SELECT NULLIF(current_setting('app.bot_id', true), '')::bigint)"


def quote_ident(name: str) -> str:
    """A double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def role(prefix: str, name: str) -> str:
    return f"{prefix}_{name}"


def login_role_name(database_url: str) -> str | None:
    """The user name in a database URL (the app's login role), if any."""
    return make_url(database_url).username


# --- roles ---------------------------------------------------------------------------
def create_roles_sql(prefix: str) -> list[str]:
    """Create the four roles if missing (roles are cluster-wide; another database of the
    same deployment may have created them already) and wire the membership."""
    stmts = []
    for name in ROLE_NAMES:
        rolname = role(prefix, name)
        attrs = "NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
        attrs += " NOINHERIT" if name == "super_admin" else " INHERIT"
        # Another database of the cluster may be creating the same role right now.
        stmts.append(
            "DO $$BEGIN "
            f"IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {quote_literal(rolname)}) "
            f"THEN CREATE ROLE {quote_ident(rolname)} {attrs}; END IF; "
            "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END$$"
        )
    base = quote_ident(role(prefix, "app_base"))
    for member in ("admin", "bot"):
        stmts.append(f"GRANT {base} TO {quote_ident(role(prefix, member))}")
    owner = quote_ident(role(prefix, "super_admin"))
    stmts += [
        f"GRANT USAGE, CREATE ON SCHEMA public TO {owner}",
        f"GRANT USAGE ON SCHEMA public TO {base}",
        # Let the migration's own login SET ROLE to the owner when it is not a superuser.
        "DO $$BEGIN "
        "IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = session_user) THEN "
        f"EXECUTE format('GRANT %I TO %I', {quote_literal(role(prefix, 'super_admin'))}, "
        "session_user); END IF; END$$",
    ]
    return stmts


def grant_login_sql(prefix: str, login: str | None) -> list[str]:
    """Make the app login a NOINHERIT member of admin and bot (if it exists and is an
    ordinary role: a superuser login would bypass row-level security anyway)."""
    if not login:
        return []
    admin, bot = quote_ident(role(prefix, "admin")), quote_ident(role(prefix, "bot"))
    lit = quote_literal(login)
    return [
        "DO $$BEGIN "
        f"IF EXISTS (SELECT FROM pg_roles WHERE rolname = {lit} AND NOT rolsuper) THEN "
        f"GRANT {admin}, {bot} TO {quote_ident(login)}; "
        f"ALTER ROLE {quote_ident(login)} NOINHERIT; "
        "END IF; END$$"
    ]


def drop_roles_sql(prefix: str) -> list[str]:
    """Revoke this database's grants and drop the roles; a role still used by another
    database of the cluster is kept (with a NOTICE) rather than failing the downgrade."""
    owner = quote_ident(role(prefix, "super_admin"))
    base = quote_ident(role(prefix, "app_base"))
    stmts = [
        f"REVOKE ALL ON SCHEMA public FROM {owner}",
        f"REVOKE ALL ON SCHEMA public FROM {base}",
    ]
    for name in reversed(ROLE_NAMES):
        rolname = role(prefix, name)
        stmts.append(
            "DO $$BEGIN "
            f"IF EXISTS (SELECT FROM pg_roles WHERE rolname = {quote_literal(rolname)}) THEN "
            f"BEGIN DROP ROLE {quote_ident(rolname)}; "
            "EXCEPTION WHEN dependent_objects_still_exist THEN "
            f"RAISE NOTICE 'role % kept: another database still uses it', "
            f"{quote_literal(rolname)}; END; END IF; END$$"
        )
    return stmts


def set_owner_role_sql(prefix: str) -> str:
    """Act as the owner for the rest of the transaction (objects created are its)."""
    return f"SET LOCAL ROLE {quote_ident(role(prefix, 'super_admin'))}"


RESET_ROLE_SQL = "RESET ROLE"


# --- row-level security ------------------------------------------------------------------
def enable_rls_sql(prefix: str, table: str, tenant_column: str = "bot_id") -> list[str]:
    """ENABLE + FORCE RLS on a (parent) table with the fleet's three policies."""
    t, col = quote_ident(table), quote_ident(tenant_column)
    bot = quote_ident(role(prefix, "bot"))
    fleet = ", ".join(quote_ident(role(prefix, n)) for n in ("admin", "super_admin"))
    return [
        f"ALTER TABLE {t} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {t} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY tenant_isolation ON {t} AS PERMISSIVE FOR ALL TO {bot} "
        f"USING ({col} = {TENANT_EXPR}) WITH CHECK ({col} = {TENANT_EXPR})",
        f"CREATE POLICY fleet_wide ON {t} AS PERMISSIVE FOR ALL TO {fleet} "
        "USING (true) WITH CHECK (true)",
    ]


def disable_rls_sql(table: str) -> list[str]:
    t = quote_ident(table)
    return [
        f"DROP POLICY IF EXISTS fleet_wide ON {t}",
        f"DROP POLICY IF EXISTS tenant_isolation ON {t}",
        f"ALTER TABLE {t} NO FORCE ROW LEVEL SECURITY",
        f"ALTER TABLE {t} DISABLE ROW LEVEL SECURITY",
    ]


# --- grants ----------------------------------------------------------------------------------
def grant_sql(privileges: str, tables: Iterable[str], grantee: str) -> str:
    names = ", ".join(quote_ident(t) for t in tables)
    return f"GRANT {privileges} ON TABLE {names} TO {quote_ident(grantee)}"


def revoke_all_sql(tables: Iterable[str], grantees: Iterable[str]) -> str:
    names = ", ".join(quote_ident(t) for t in tables)
    roles = ", ".join(quote_ident(g) for g in grantees)
    return f"REVOKE ALL ON TABLE {names} FROM {roles}"
