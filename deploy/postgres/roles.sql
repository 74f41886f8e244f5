-- PostgreSQL roles for the gateway: an owner that runs migrations and the audit
-- administration (`gateway db migrate`, `gateway audit erase`, `gateway audit
-- rotate-key`), and an app role for `gateway serve` / `gateway worker` that can only
-- read and append to the audit tables. docs/audit.md, "PostgreSQL roles", explains why.
--
-- Run by a superuser or a database administrator with CREATEROLE, connected to the
-- gateway's database:
--
--   psql -v ON_ERROR_STOP=1 -d gateway \
--        -v owner_role=gateway_owner -v owner_password="$OWNER_PASSWORD" \
--        -v app_role=gateway_app     -v app_password="$APP_PASSWORD" \
--        -f deploy/postgres/roles.sql
--
-- Idempotent. Run it once before the first migration and again after every upgrade
-- (after `gateway db migrate`): the second run grants UPDATE/DELETE on operational
-- tables a new migration added. Until then such a table has only the default
-- SELECT, INSERT for the app role (see ALTER DEFAULT PRIVILEGES below), so a missed
-- re-run fails loudly with "permission denied", never by granting too much.
--
-- Tables live in the schema "public". Tables named audit_* are append-only for the
-- app role; alembic_version is read-only; every other table is operational.

\set ON_ERROR_STOP 1
-- For the DO blocks below, which psql variables do not reach.
SET gateway.owner_role = :'owner_role';
SET gateway.app_role = :'app_role';

-- The roles: created when missing, password (re)set on every run.
SELECT format('CREATE ROLE %I NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS', :'owner_role')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'owner_role') \gexec
SELECT format('CREATE ROLE %I NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS', :'app_role')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app_role') \gexec
ALTER ROLE :"owner_role" LOGIN PASSWORD :'owner_password';
ALTER ROLE :"app_role" LOGIN PASSWORD :'app_password';

-- A non-superuser administrator acts for the owner (default privileges and grants on
-- its tables) through membership in it. The app role is never a member of the owner.
SELECT format('GRANT %I TO %I', :'owner_role', current_user)
WHERE NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
  AND NOT pg_has_role(current_user, :'owner_role', 'USAGE') \gexec
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_setting('gateway.app_role')
             AND (rolsuper OR rolbypassrls)) THEN
    RAISE EXCEPTION 'role % is a superuser or bypasses row security: not fit as app role',
      current_setting('gateway.app_role');
  END IF;
  IF pg_has_role(current_setting('gateway.app_role'), current_setting('gateway.owner_role'),
                 'MEMBER') THEN
    RAISE EXCEPTION 'role % is a member of %: the app role must not act as the owner',
      current_setting('gateway.app_role'), current_setting('gateway.owner_role');
  END IF;
END $$;

-- Only the owner creates objects. (PostgreSQL before 15 lets every role create
-- tables in "public"; the app role must not own anything.)
SELECT format('GRANT CONNECT ON DATABASE %I TO %I, %I',
              current_database(), :'owner_role', :'app_role') \gexec
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO :"owner_role";
GRANT USAGE ON SCHEMA public TO :"app_role";

-- Tables the owner creates later (the next migration) start with SELECT, INSERT for
-- the app role: right for a new audit table, too little for an operational one until
-- this script runs again.
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner_role" IN SCHEMA public
  GRANT SELECT, INSERT ON TABLES TO :"app_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner_role" IN SCHEMA public
  GRANT USAGE, SELECT ON SEQUENCES TO :"app_role";

-- Tables that exist (a migrated database): exactly what the app role needs. The same
-- file is what the owner runs alone after a migration (the Helm chart's migration Job,
-- compose's `grants` service): granting on its own tables needs no administrator.
\ir grants.sql
