-- Campaigns: holdout assignment at delivery (plugins/crm_knowledge/export/holdout.py) and which scoring model
-- runs selected each campaign's customers. No PII: customer_id is the pipeline's pseudonymous id.
create schema if not exists scoring;

-- One row per measured campaign audience and customer: the arm the customer was randomised into when they
-- first entered the audience (a keyed hash of destination, audience and customer id, so re-runs and later
-- deltas give the same arm; a recorded row is never changed). A campaign is (destination, audience,
-- campaign_date): the customers who entered the audience in the delivery of that as-of date. Held-out
-- customers are never sent. Erasure deletes a forgotten customer's rows (privacy/purge.py: every scoring
-- table keyed by customer_id).
create table if not exists scoring.campaign_assignments (
    destination text not null,
    audience text not null,
    customer_id text not null,
    campaign_date date not null,
    arm text not null check (arm in ('treated', 'holdout')),
    holdout_share double precision not null check (holdout_share >= 0 and holdout_share < 1),
    assignment_bucket double precision not null check (assignment_bucket >= 0 and assignment_bucket < 1),
    export_id text not null,
    churn_probability double precision,
    model_run_ids jsonb not null default '{}',
    assigned_at timestamptz not null default now(),
    primary key (destination, audience, customer_id)
);
create index if not exists campaign_assignments_campaign
    on scoring.campaign_assignments (destination, audience, campaign_date);
create index if not exists campaign_assignments_customer on scoring.campaign_assignments (customer_id);

-- Which campaigns used each scoring model run's scores (counts only): the field record of a model.
create table if not exists scoring.model_run_campaigns (
    model_run_id text not null,
    model text not null,
    destination text not null,
    audience text not null,
    campaign_date date not null,
    assigned_customers bigint not null,
    holdout_customers bigint not null,
    recorded_at timestamptz not null default now(),
    primary key (model_run_id, destination, audience, campaign_date)
);
