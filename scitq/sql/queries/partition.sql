-- Named queries of partitions and retention (65_retention.sql): partitions created
-- ahead, whole partitions dropped by age, and the list of them.

-- name: partition_ensure
SELECT * FROM scitq.partition_ensure_v1(
    p_output_width => %(output_width)s,
    p_output_ahead => %(output_ahead)s,
    p_event_days => %(event_days)s,
    p_event_ahead => %(event_ahead)s,
    p_now => %(now)s
);

-- name: partition_prune
-- %(succeeded_days)s, %(failed_days)s, %(event_days)s: NULL keeps those rows forever.
SELECT * FROM scitq.partition_prune_v1(
    make_interval(secs => %(succeeded_days)s::double precision * 86400),
    make_interval(secs => %(failed_days)s::double precision * 86400),
    make_interval(secs => %(event_days)s::double precision * 86400),
    %(now)s
);

-- name: partition_list
SELECT o.parent, o.partition, o.bounds, o.estimated_rows, o.bytes
FROM scitq.partition_overview o
ORDER BY o.parent, o.partition;
