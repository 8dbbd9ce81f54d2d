-- The counter's paused flag after every combination of pause, resume,
-- savepoints and rollback in one transaction equals the items row:
-- state() shows the row, verify's ok, and whether a reservation sells.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS ticket_ext;
RESET client_min_messages;
SELECT ticket_ext.create_item(41, 1000, 'pause state');
CREATE FUNCTION state() RETURNS TABLE (row_paused boolean, ok boolean, sells boolean)
LANGUAGE plpgsql AS $$
BEGIN
  row_paused := (SELECT paused FROM ticket_ext.items WHERE item_id = 41);
  ok := (SELECT v.ok FROM ticket_ext.verify(41) v);
  BEGIN
    sells := ticket_reserve(41) IS NOT NULL;
    RAISE EXCEPTION 'undo' USING ERRCODE = 'P0001';
  EXCEPTION
    WHEN raise_exception THEN NULL;
    WHEN SQLSTATE 'TK001' THEN sells := false;
  END;
  RETURN NEXT;
END $$;

-- paused; resume, then a pause rolled back to a savepoint; commit: resumed
SELECT ticket_ext.pause(41);
BEGIN;
SELECT ticket_ext.resume(41);
SAVEPOINT a;
SELECT ticket_ext.pause(41);
ROLLBACK TO SAVEPOINT a;
COMMIT;
SELECT * FROM state();

-- pause, then a resume rolled back to a savepoint; whole rollback: not paused
BEGIN;
SELECT ticket_ext.pause(41);
SAVEPOINT a;
SELECT ticket_ext.resume(41);
ROLLBACK TO SAVEPOINT a;
ROLLBACK;
SELECT * FROM state();

-- pause; savepoint; resume; rollback to savepoint; commit: paused
BEGIN;
SELECT ticket_ext.pause(41);
SAVEPOINT s;
SELECT ticket_ext.resume(41);
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT * FROM state();

-- paused; resume in a savepoint rolled back; commit: still paused
BEGIN;
SAVEPOINT a;
SELECT ticket_ext.resume(41);
ROLLBACK TO a;
COMMIT;
SELECT * FROM state();
SELECT ticket_ext.resume(41);

-- pause, resume, pause, rollback: not paused
BEGIN;
SELECT ticket_ext.pause(41);
SELECT ticket_ext.resume(41);
SELECT ticket_ext.pause(41);
ROLLBACK;
SELECT * FROM state();

-- pause, then resume in a released savepoint; commit: not paused
BEGIN;
SELECT ticket_ext.pause(41);
SAVEPOINT a;
SELECT ticket_ext.resume(41);
RELEASE a;
COMMIT;
SELECT * FROM state();

-- pause in an exception block that fails: not paused
DO $$ BEGIN BEGIN PERFORM ticket_ext.pause(41); RAISE EXCEPTION 'x'; EXCEPTION WHEN OTHERS THEN NULL; END; END $$;
SELECT * FROM state();

-- paused; resume; nested savepoints pause/resume, inner ones rolled back; commit: resumed
SELECT ticket_ext.pause(41);
BEGIN;
SELECT ticket_ext.resume(41);
SAVEPOINT a;
SELECT ticket_ext.pause(41);
SAVEPOINT b;
SELECT ticket_ext.resume(41);
ROLLBACK TO a;
COMMIT;
SELECT * FROM state();

-- resume; savepoint; pause; release; savepoint; resume; rollback to it; commit: paused
BEGIN;
SELECT ticket_ext.resume(41);
SAVEPOINT a;
SELECT ticket_ext.pause(41);
RELEASE a;
SAVEPOINT b;
SELECT ticket_ext.resume(41);
ROLLBACK TO b;
COMMIT;
SELECT * FROM state();
-- and the same rolled back entirely: still paused (it was before)
BEGIN;
SELECT ticket_ext.resume(41);
SAVEPOINT a;
SELECT ticket_ext.pause(41);
ROLLBACK TO a;
ROLLBACK;
SELECT * FROM state();
