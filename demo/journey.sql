-- One simulated user (one pgbench transaction): picks a ticket type and
-- 1-4 tickets; 70% pay, 15% cancel, 15% walk away and let the hold expire.
-- Statements autocommit: fine for pgbouncer's transaction pooling.
\set type random(1, 3)
\set qty random(1, 4)
\set fate random(1, 100)
SELECT nextval('demo.users') AS uid \gset
\if :uid <= :users
SELECT coalesce(ticket_reserve(:type, :qty, 'user-' || :uid,
         CASE WHEN :fate > 85 THEN make_interval(secs => :abandon_secs) END,
         'order-' || :uid), 0) AS h \gset
\if :h = 0
SELECT nextval('demo.rejected');
\elif :fate <= 70
SELECT ticket_confirm(:h);
\elif :fate <= 85
SELECT ticket_release(:h);
\endif
\endif
