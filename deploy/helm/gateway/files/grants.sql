-- The app role's privileges on the tables that exist, exactly as deploy/postgres/roles.sql
-- states them (that script includes this file). Run by the owner role after every
-- `gateway db migrate`, it grants UPDATE/DELETE on operational tables the migration
-- added, with no administrator and no CREATEROLE: an owner may grant on its own tables.
--
--   psql -v ON_ERROR_STOP=1 "$OWNER_DATABASE_URL" \
--        -v owner_role=gateway_owner -v app_role=gateway_app -f deploy/postgres/grants.sql
--
-- Idempotent. deploy/helm/gateway/files/grants.sql is a copy the chart ships (a chart
-- can only read files inside itself); tests/unit/test_deploy_helm.py keeps them equal.

\set ON_ERROR_STOP 1
SET gateway.owner_role = :'owner_role';
SET gateway.app_role = :'app_role';

DO $$
DECLARE
  owner_role text := current_setting('gateway.owner_role');
  app_role text := current_setting('gateway.app_role');
  t record;
BEGIN
  FOR t IN
    SELECT c.relname, pg_get_userbyid(c.relowner) AS owner
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
  LOOP
    IF t.owner = app_role THEN
      RAISE EXCEPTION 'table % is owned by the app role %: reassign it to % first',
        t.relname, app_role, owner_role;
    END IF;
    EXECUTE format('REVOKE ALL ON TABLE public.%I FROM %I', t.relname, app_role);
    IF t.relname LIKE 'audit\_%' THEN
      -- Append-only: no UPDATE, DELETE or TRUNCATE; not the owner, so no
      -- ALTER TABLE ... DISABLE TRIGGER either.
      EXECUTE format('GRANT SELECT, INSERT ON TABLE public.%I TO %I', t.relname, app_role);
    ELSIF t.relname = 'alembic_version' THEN
      EXECUTE format('GRANT SELECT ON TABLE public.%I TO %I', t.relname, app_role);
    ELSE
      EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE public.%I TO %I',
                     t.relname, app_role);
    END IF;
  END LOOP;
  FOR t IN
    SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind = 'S'
  LOOP
    EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE public.%I TO %I', t.relname, app_role);
  END LOOP;
END $$;
