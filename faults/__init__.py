"""The fault suite (`make faults`): cases through all four services on a private stack
while the broker, PostgreSQL and each service are killed, paused and restarted; a
checker derives what every case must produce and reports what was lost, duplicated or
stalled, how long the pipeline took to resume, and whether `/readyz` told the truth.

Modules: `stack` (the private Kafka, PostgreSQL, services and providers), `expect`
(what a case must produce, from the product's own routing), `load` (the callers),
`inject` (the faults), `observe` (the sampler), `checker` (the findings), `report`
(table, JSON, verdict) and `run` (the command line).
"""
