"""Intake: registration of children at risk by partner agencies, and the case.*
events every other service starts from.

Its rooms, in the order a newcomer reads them to follow a case:

- `api.py`: the partner HTTP API (register, read, withdraw consent) and the two
  internal reads for other Enlace services, one use case per route;
- `commands.py`: the use cases (idempotent registration with duplicate flagging,
  consent withdrawal, audited identity disclosure, caseworker contact), raising
  the kit's domain errors;
- `domain.py`: the rules, no I/O (the registration request, date checks, risk
  levels, duplicate keys, reference codes, the case.created event);
- `store.py`: the SQL;
- `app.py`: settings and wiring (clock, roles, routes).
"""
