# ruff: noqa: E501  (the SQL reads better unwrapped)
"""Share of top-10 recommendations in the planted preferred categories of generated people.

    .venv/bin/python bench/recommend_truth.py DATA_DIR [DUCKDB_FILE [TABLE_PREFIX]]

DATA_DIR holds the generator's truth/ and a warehouse after a run; people with history only.
Default file: DATA_DIR/warehouse/warehouse.duckdb with marts.*; pass `ml.` as TABLE_PREFIX to
read the ML outputs directly (e.g. when phase 3 of dbt did not run).
"""

import sys

import duckdb

d = sys.argv[1]
db = sys.argv[2] if len(sys.argv) > 2 else f"{d}/warehouse/warehouse.duckdb"
con = duckdb.connect(db, read_only=True)
prefix = "" if "published" in db else "marts."
rprefix = prefix if len(sys.argv) < 4 else sys.argv[3]
q = f"""
with users as (select * from read_csv_auto('{d}/truth/users.csv')),
pref as (select user_id, unnest(string_split(preferred_categories, '|')) as category from users),
who as (select m.person_id, m.identifier as user_id from {prefix}identity_map m where identifier_type = 'user_id'),
hist as (select distinct person_id from {prefix}events where item_id is not null and person_id is not null),
top10 as (select r.person_id, r.item_id, i.category from {rprefix}recommendations r join {prefix}items i using (item_id) where r.rank <= 10),
scored as (
  select t.person_id, t.item_id,
         exists (select 1 from who w join pref p using (user_id) where w.person_id = t.person_id and p.category = t.category) as in_pref
  from top10 t join hist using (person_id)
  where t.person_id in (select person_id from who w join users u using (user_id))
)
select count(distinct person_id) as people, count(*) as recs, avg(in_pref::int) as share_in_preferred from scored
"""
print(con.sql(q))
print(
    con.sql(
        f"select algorithm, k, n_users, round(ndcg_at_k,3) ndcg, round(precision_at_k,3) p, round(map_at_k,3) map_k, round(catalog_coverage,3) cov, round(novelty,2) nov, round(fit_seconds,1) fit_s, is_chosen from {rprefix}recommendation_evaluation"
    )
)
print(con.sql(f"select algorithm, count(*) from {rprefix}recommendations group by all"))
print(
    con.sql(
        f"select experiment, variant, users, exposed_users, round(ctr,4) ctr, round(conversion_rate,4) conv, round(lift,3) lift, round(lift_ci_low,3) lo, round(lift_ci_high,3) hi, round(p_value,3) p, round(srm_p_value,3) srm_p, has_srm from {rprefix}experiment_results"
    )
)
