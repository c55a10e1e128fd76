-- Privileges on the recruitment objects (70_recruitment.sql) that 90_roles.sql does not
-- give. 90_roles.sql gives scitq_admin EXECUTE on every function (the scheduler and the
-- CLI manage recruiters, instances and cloud operations) and revokes everything from
-- agents and readers. Agents get nothing of recruitment: a recruited agent only registers
-- and heartbeats like any other.

-- readers see recruiters, instances and cloud operations through their views only
GRANT SELECT ON
    scitq.recruiter_overview,
    scitq.instance_overview,
    scitq.cloud_operation_overview
TO scitq_reader;
