-- Every SQL function of ticket_ext, driven with hostile arguments (NULLs,
-- negatives, huge numbers, 1 MB strings, control characters, unknown ids,
-- wrong types through casts): each call either succeeds or fails with a
-- documented SQLSTATE (README "Errors"), never an internal error, and the
-- server keeps running.  Cases are generated: functions x argument
-- positions x hostile values.
\set ON_ERROR_STOP 1
\set QUIET 1
SET client_min_messages = warning;
SELECT plan(9);

SELECT ticket_ext.create_item(700, 50, 'hostile');
CREATE TEMP TABLE hostile_results (call text, sqlstate text, message text);

-- one hostile value per line: an SQL expression and the type it is cast to
CREATE TEMP TABLE hostile_values (expr text);
INSERT INTO hostile_values VALUES
  ('NULL'), ('0'), ('-1'), ('-9223372036854775808'), ('9223372036854775807'),
  ('2147483647'), ('-2147483648'), ('1e30'), ('''NaN'''), ('''abc'''), (''''''),
  ('repeat(''x'', 1048576)'), ('E''\x01\x02\t\n\r'''), ('''"quoted" \ back'''),
  ('convert_from(''\xc3\xa9\xe2\x82\xac''::bytea, ''UTF8'')'),
  ('''-infinity'''), ('''1 year'''), ('''-1 day'''), ('''00:00:00.000001'''),
  ('987654321'), ('700');

-- call templates: %1$s .. %5$s are replaced by hostile values (or defaults)
CREATE TEMP TABLE hostile_calls (template text, nargs int, casts text[]);
INSERT INTO hostile_calls VALUES
  ('ticket_reserve(%s::bigint, %s::int, %s::text, %s::interval, %s::text)', 5,
     '{bigint,int,text,interval,text}'),
  ('ticket_confirm(%s::bigint)', 1, '{bigint}'),
  ('ticket_release(%s::bigint)', 1, '{bigint}'),
  ('ticket_confirm(%s::bigint, %s::text)', 2, '{bigint,text}'),
  ('ticket_release(%s::bigint, %s::text)', 2, '{bigint,text}'),
  ('ticket_status(%s::bigint)', 1, '{bigint}'),
  ('ticket_status(%s::bigint, %s::text)', 2, '{bigint,text}'),
  ('ticket_available(%s::bigint)', 1, '{bigint}'),
  ('ticket_ext.create_item(%s::bigint, %s::bigint, %s::text)', 3, '{bigint,bigint,text}'),
  ('ticket_ext.set_capacity(%s::bigint, %s::bigint)', 2, '{bigint,bigint}'),
  ('ticket_ext.pause(%s::bigint)', 1, '{bigint}'),
  ('ticket_ext.resume(%s::bigint)', 1, '{bigint}'),
  ('ticket_ext.verify(%s::bigint)', 1, '{bigint}'),
  ('ticket_ext.resync(%s::bigint)', 1, '{bigint}'),
  ('ticket_ext.expire_holds(%s::int)', 1, '{int}');

-- sensible values for the other arguments while one is hostile
CREATE FUNCTION pg_temp.default_arg(t text) RETURNS text LANGUAGE sql AS $$
  SELECT CASE t WHEN 'bigint' THEN '700' WHEN 'int' THEN '1' WHEN 'interval' THEN '''1 minute'''
                ELSE '''h''' END $$;

DO $$
DECLARE
  c record;
  v record;
  pos int;
  args text[];
  stmt text;
BEGIN
  FOR c IN SELECT * FROM hostile_calls LOOP
    FOR pos IN 1 .. c.nargs LOOP
      FOR v IN SELECT expr FROM hostile_values LOOP
        args := ARRAY(SELECT pg_temp.default_arg(c.casts[i]) FROM generate_series(1, c.nargs) i);
        args[pos] := v.expr;
        stmt := 'SELECT * FROM ' || format(c.template, VARIADIC args);
        BEGIN
          EXECUTE stmt;
          INSERT INTO hostile_results VALUES (stmt, '00000', NULL);
        EXCEPTION WHEN OTHERS THEN
          INSERT INTO hostile_results VALUES (stmt, SQLSTATE, SQLERRM);
        END;
      END LOOP;
    END LOOP;
  END LOOP;
END $$;

SELECT cmp_ok((SELECT count(*) FROM hostile_results), '>=', 350::bigint,
              'hundreds of hostile calls were made');
SELECT is((SELECT count(*) FROM hostile_results
            WHERE sqlstate NOT IN ('00000',
              '22004', '22023', '22001', '42704', '55000', '23505', '25006', '25001', -- ours
              'TK001', 'TK002', 'TK003', 'TK004', 'TK005', 'TK006', 'TK007',
              '22P02', '22003', '22007', '22008', '22015', '22021', '54000', '42846', '42883' -- PostgreSQL's type checks
            )), 0::bigint,
          'every failure has a documented SQLSTATE (no internal error)');
SELECT is((SELECT count(*) FROM hostile_results WHERE sqlstate LIKE 'XX%' OR sqlstate LIKE '58%'), 0::bigint,
          'no internal or system error');
SELECT is((SELECT count(*) FROM hostile_results WHERE call LIKE '%(NULL::bigint%'
             AND call NOT LIKE '%verify%' AND call NOT LIKE '%resync%'   -- NULL = all items
             AND NOT (call LIKE '%ticket_status(%' AND sqlstate = '00000')  -- no row: no such hold
             AND sqlstate <> '22004'), 0::bigint, 'a NULL id always gives 22004');
SELECT is((SELECT count(*) FROM hostile_results
            WHERE call LIKE 'SELECT * FROM ticket_reserve(700::bigint, 1::int, repeat%' AND sqlstate <> '22001'), 0::bigint,
          'a 1 MB holder is refused with 22001');
SELECT is((SELECT count(*) FROM hostile_results
            WHERE call LIKE '%(987654321::bigint%' AND call NOT LIKE '%create_item%'
              AND NOT (call LIKE '%ticket_status(%' AND sqlstate = '00000')  -- no row: no such hold
              AND NOT (call LIKE '%resync%' AND sqlstate = '25001')  -- refused first: this
              AND sqlstate NOT IN ('42704', '22004', 'TK005')     -- TK005: this transaction
                                                                   -- reserved, and created that id
              AND NOT (call ~ 'ticket_(confirm|release)\(987654321::bigint, ' AND sqlstate = 'TK007')),
          0::bigint,
          'unknown item and hold ids give 42704 (TK007 where a holder is checked: no existence leak)');
SELECT is((SELECT count(*) FROM hostile_results
            WHERE call LIKE 'SELECT * FROM ticket_reserve(700::bigint, -1::int%'
              AND sqlstate <> '22023'
              AND NOT (sqlstate = 'TK006' AND call NOT LIKE '%NULL::text)')), 0::bigint,
          'a negative quantity gives 22023 (TK006 when its idempotency key names an earlier order)');
-- the hostile calls changed nothing they should not have
SELECT is((SELECT bool_and(ok) FROM ticket_ext.verify()), true, 'counters still equal the tables');
SELECT is((SELECT 1), 1, 'the server keeps running');

-- (on failure, show what was unexpected)
SELECT diag(sqlstate || ' ' || left(message, 100) || ' <- ' || left(call, 120))
  FROM hostile_results
 WHERE sqlstate NOT IN ('00000', '22004', '22023', '22001', '42704', '55000', '23505', '25006',
                        '25001', 'TK001', 'TK002', 'TK003', 'TK004', 'TK005', 'TK006', 'TK007', '22P02', '22003', '22007', '22008', '22015', '22021', '54000', '42846', '42883')
 LIMIT 20;
SELECT * FROM finish();
