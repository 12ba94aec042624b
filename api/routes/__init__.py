"""One controller per resource: holes, jobs, models, system (health, metrics, audit)."""
