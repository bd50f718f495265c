"""Follow-up: durable referral deadlines and their escalation, follow-up checks with
caseworkers, and the closed-loop report.

Its rooms, in the order a newcomer reads them to follow a referral:

- `handlers.py`: referral transitions and case.created from Kafka, each mapped to a
  use case of `commands.py`;
- `commands.py`: the use cases (apply a referral event to its deadlines, keep a
  case, list/read/complete follow-up checks, the report), raising the kit's
  domain errors;
- `domain.py`: the rules, no I/O (which deadline a transition starts or finishes,
  the escalation ladder, reopening, the report maths);
- `timers.py`: the loop that fires due timers (referral.overdue, followup.due);
- `store/`: the SQL (`projections`, `timers`, `followups`, `reports`);
- `api.py`: the HTTP API, one use case per route; `metrics.py`: the report as
  Prometheus metrics;
- `app.py`: settings (follow-up's own deadlines; the acknowledge deadline is
  referral's `respond_by`) and wiring.
"""
