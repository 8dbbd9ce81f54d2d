-- One simulated user (one pgbench transaction): picks a ticket type and
-- 1-:max_qty tickets; 70% pay, 15% cancel, 15% walk away and let the hold
-- expire.  Statements autocommit: fine for pgbouncer's transaction pooling.
-- With :festival (run_demo.sh --festival) the types are a Friday ticket, a
-- Saturday ticket and a weekend pass, and the user is one of :customers
-- customers (the same customer comes back): demo.buy answers -1 over the
-- per-customer limit (TK008) instead of failing.
\set type random(1, 3)
\set qty random(1, :max_qty)
\set fate random(1, 100)
\set customer random(1, :customers)
SELECT nextval('demo.users') AS uid \gset
\if :uid <= :users
\if :festival
SELECT demo.buy(:type, :qty, 'customer-' || :customer,
         CASE WHEN :fate > 85 THEN make_interval(secs => :abandon_secs) END,
         'order-' || :uid) AS h \gset
\else
SELECT coalesce(ticket_reserve(:type, :qty, 'user-' || :uid,
         CASE WHEN :fate > 85 THEN make_interval(secs => :abandon_secs) END,
         'order-' || :uid), 0) AS h \gset
\endif
\if :h = 0
SELECT nextval('demo.rejected');
\elif :h < 0
SELECT nextval('demo.over_limit');
\elif :fate <= 70
SELECT ticket_confirm(:h);
\elif :fate <= 85
SELECT ticket_release(:h);
\endif
\endif
