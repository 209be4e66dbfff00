-- Runs on: sqlite. It sums decimal text exactly by hand; on BigQuery SUM(amount) over NUMERIC is exact already
-- (see the view won_revenue_by_month_owner).
-- Won revenue per owner and currency, over the deals that are won now, in SQLite's dialect: the query
-- `make demo` prints from demo.sqlite3 (run it yourself with
-- `cargo run --release --example sqlite_query -- demo.sqlite3 sql/queries/sqlite_won_revenue_by_owner.sql`,
-- or with the sqlite3 shell). Amounts in different currencies are never added together.
--
-- SQLite has no decimal type, and SUM over the stored decimal text would go through floating point. To keep the
-- totals exact, each amount is split into whole units and nanos (9 decimal places, as BigQuery's NUMERIC keeps),
-- the two are summed as integers, and the total is written back as decimal text. The sort uses the REAL value,
-- which is close enough to order by.
WITH parts AS (
  SELECT
    COALESCE(owner_name, '(no owner)') AS owner,
    COALESCE(currency, '') AS currency,
    CASE WHEN amount LIKE '-%' THEN -1 ELSE 1 END AS sign,
    ltrim(amount, '-+') AS digits
  FROM current_won_deals
  WHERE amount IS NOT NULL
),
split AS (
  SELECT
    owner,
    currency,
    sign * CAST(CASE WHEN instr(digits, '.') > 0 THEN substr(digits, 1, instr(digits, '.') - 1) ELSE digits END
                AS INTEGER) AS units,
    sign * CAST(substr(CASE WHEN instr(digits, '.') > 0 THEN substr(digits, instr(digits, '.') + 1) ELSE '' END
                       || '000000000', 1, 9) AS INTEGER) AS nanos
  FROM parts
),
sums AS (
  SELECT owner, currency, COUNT(*) AS deals, SUM(units) + SUM(nanos) / 1000000000 AS units,
         SUM(nanos) % 1000000000 AS nanos
  FROM split
  GROUP BY owner, currency
),
-- units and nanos of one sign (e.g. 5 units and -0.25 → 4 units and 0.75)
carried AS (
  SELECT owner, currency, deals,
         units + CASE WHEN units > 0 AND nanos < 0 THEN -1 WHEN units < 0 AND nanos > 0 THEN 1 ELSE 0 END AS units,
         nanos + CASE WHEN units > 0 AND nanos < 0 THEN 1000000000
                      WHEN units < 0 AND nanos > 0 THEN -1000000000 ELSE 0 END AS nanos
  FROM sums
)
SELECT
  owner,
  currency,
  deals,
  CASE WHEN units < 0 OR nanos < 0 THEN '-' ELSE '' END
    || rtrim(rtrim(abs(units) || '.' || printf('%09d', abs(nanos)), '0'), '.') AS won_revenue
FROM carried
ORDER BY units + nanos / 1e9 DESC, owner, currency;
