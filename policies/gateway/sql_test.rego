package gateway_test

import rego.v1

import data.gateway

test_read_only_queries_pass if {
	every sql in [
		"SELECT * FROM orders",
		"select id, total from orders where total > 10",
		"  select 1",
		"(select 1)",
		"SELECT 1;",
		"SELECT 1 ;  \n",
		"with recent as (select * from orders) select count(*) from recent",
		"EXPLAIN SELECT * FROM t",
		"explain analyze select 1",
		"SHOW TABLES",
		"select\tid\nfrom\r\nt",
		"select updated_at, deleted, created_by, drop_count, insertion from t",
		"select \"col\" from \"t\"",
		"select '\u00e9t\u00e9' from t",
		"select 1 -- no writes here",
	] {
		gateway.read_only_sql(sql, [])
	}
}

test_writes_and_ddl_refused if {
	every sql in [
		"INSERT INTO t VALUES (1)",
		"update t set a = 1",
		"DELETE FROM t",
		"drop table t",
		"TRUNCATE t",
		"create table t (a int)",
		"ALTER TABLE t ADD b int",
		"GRANT ALL ON t TO bob",
		"revoke all on t from bob",
		"MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE",
		"COPY t TO '/tmp/x'",
		"CALL proc()",
		"EXEC sp_who",
		"vacuum",
		"with x as (delete from t returning *) select * from x",
		"select * into backup from t",
		"select * from t for update",
		"explain analyze delete from t",
		"select 1; drop table t",
		"select 1;;",
		"select 1; select 2",
		"select 'a;b'",
		"SeLeCt 1; DrOp TaBlE t",
		"select 1 /* drop */",
		"select nextval('s')",
		"select drop2 from t",
		"",
		"   ",
		";",
		"1",
	] {
		not gateway.read_only_sql(sql, [])
	}
}

test_escaped_characters_refused if {
	every sql in [
		"select 'a\\b'",
		"select 1\u0000",
		"select 1\bdelete",
		"select 1\fdelete",
		"select\u001fdelete from t",
		"select 1\u000b",
	] {
		not gateway.read_only_sql(sql, [])
	}
}

test_sql_must_be_a_string if {
	every sql in [null, 1, ["select 1"], {"q": "select 1"}] {
		not gateway.read_only_sql(sql, [])
	}
}

test_non_ascii_capitals_are_not_keywords if {
	# ascii_lower leaves "\u0130" alone, so "\u0130NSERT" is not INSERT (nor is it to a database).
	gateway.read_only_sql("select \u0130NSERT from t", [])
}

test_deny_words_are_case_insensitive if {
	not gateway.read_only_sql("select pg_sleep(1)", ["Pg_Sleep"])
	gateway.read_only_sql("select pg_sleep_for(1)", ["pg_sleep"])
}
