BEGIN;
SELECT ticket_reserve(1, 1, 'bench') AS h \gset
SELECT ticket_confirm(:h);
COMMIT;
