"""Scale-out: scan jobs handed to Celery workers (one per GPU) through a Redis broker, when the settings say
`queue_backend = "celery"`; the one-machine default is the state database's own queue (bot/worker.py).

- app.py: the Celery application and its delivery guarantees (late acks, one task at a time per process).
- enqueue.py: hands a job the store queued (watcher, mentions) to the broker.
- tasks.py: what a worker does with a delivery: claim the job in the store, run it once, record the outcome.

The state database (db_path) stays the one record of jobs, scans and posts: a job is queued there first, then
sent to the broker, and a delivery runs it only if it can lease it there (Store.claim), so a duplicate or a
redelivered task never scans or posts twice.
"""
