"""Training jobs in a child process, and the nightly schedule.

- runner.JobRunner: one job at a time; snapshot -> `appliance train` child -> candidate.
  A job the daemon stopped or died under resumes at its next start.
- job_folder: a job's folder, and what is kept of it once the job ended.
- events: the child's JSON-lines progress events.
- records.StoreJobRecords: jobs persisted in the store.
- schedule.NightlySchedule: wakes once a day at a local time.
"""
