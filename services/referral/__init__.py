"""The referral service: the service directory, routing of new cases to services,
and the closed-loop referral lifecycle between agencies.

Its rooms, in the order a newcomer reads them to follow a case:

- `app.py`: settings and wiring (the context of the use cases, subscriptions,
  the directory worker, the HTTP API);
- `handlers.py`: `case.created` and `case.consent_withdrawn` from Kafka, each
  mapped to a use case of `commands/cases.py`;
- `commands/`: the use cases (routing a case, a lifecycle step, reading a referral
  with audited disclosure, referring by hand, the directory admin), raising the
  kit's domain errors;
- `domain/`: the rules, no I/O (directory, routing, lifecycle, disclosure);
- `api/`: the partner HTTP API, one use case per route;
- `store/`: the SQL; `directory_cache.py`: the directory this process routes with;
  `intake.py`: intake's identity API behind the use cases' port.
"""
