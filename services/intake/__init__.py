"""Intake: registration of children at risk by partner agencies, and the case.*
events every other service starts from.

Its rooms, in the order a newcomer reads them to follow a case:

- `api.py`: the partner HTTP API (register, read, withdraw consent; agency keys
  only) and the two internal reads, each for one Enlace service, one use case per
  route;
- `commands.py`: the use cases (idempotent registration with duplicate flagging,
  consent withdrawal, identity disclosure under a grant with its audit, the grants
  the referral events open and end, caseworker contact), raising the kit's domain
  errors;
- `domain.py`: the rules, no I/O (the registration request, date checks, risk
  levels, duplicate keys, reference codes, the case.created event, disclosure
  grants);
- `store.py`: the SQL;
- `handlers.py`: the referral events that open and end grants;
- `app.py`: settings and wiring (clock, roles, subscription, routes).
"""
