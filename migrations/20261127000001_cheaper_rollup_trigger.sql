-- The rollup trigger (20261124000002) runs with every statement that
-- finishes executions. Two of its helpers were SQL functions with a query
-- inside, which PostgreSQL cannot inline: it planned them again for every
-- statement, and ran the bucket's subquery for every row. Same results,
-- cheaper (docs/benchmarks.md, "What each change did"):
--
-- * plat_duration_bucket: width_bucket does the same search in C. It
--   answers 0 below the first bound and i for bounds[i] <= ms <
--   bounds[i+1]: one less than the 1-based bucket whose upper bound is the
--   first above ms. Checked equal for every ms from -5 to 400,000.
-- * plat_histogram: a PL/pgSQL loop over the pairs, planned once per
--   session, instead of a subquery per bucket planned per statement.
create or replace function plat_duration_bucket(ms integer) returns integer language sql immutable parallel safe as $$
    select width_bucket(coalesce(ms, 0), plat_duration_bounds()) + 1
$$;

create or replace function plat_histogram(buckets integer[], counts bigint[]) returns bigint[] language plpgsql immutable parallel safe as $$
declare
    histogram bigint[] := array_fill(0::bigint, array[cardinality(plat_duration_bounds()) + 1]);
begin
    for i in 1 .. coalesce(cardinality(buckets), 0) loop
        histogram[buckets[i]] := histogram[buckets[i]] + counts[i];
    end loop;
    return histogram;
end
$$;
