"""Apply deploy/kafka-access.yaml to the local broker, as the admin: the SCRAM users
(passwords generated once into .local/secrets/kafka/, 0600) and exactly the declared
ACLs. Idempotent; `make run` and `make test` run it through infra.sh.

  kafka_access.py                     users + ACLs of the production topic names
  kafka_access.py --namespace NS      ACLs of one namespace's topics (tests, bench)
  kafka_access.py --namespace NS --remove
"""

from __future__ import annotations

import argparse
import sys
import time

from services.kit.kafka_acl import admin_for, apply_access, load_access, remove_namespace
from services.kit.local_secrets import kafka_client, kafka_password


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bootstrap", default=None)
    parser.add_argument("--namespace", default="")
    parser.add_argument("--remove", action="store_true")
    args = parser.parse_args()
    t0 = time.monotonic()
    access = load_access()
    admin = admin_for(kafka_client("admin", args.bootstrap))
    if args.remove:
        removed = remove_namespace(admin, args.namespace)
        print(f"kafka access: {removed} ACLs of namespace {args.namespace!r} removed")
        return 0
    created, deleted = apply_access(admin, access, kafka_password, args.namespace)
    print(
        f"kafka access: {len(access.principals())} principals, "
        f"{len(access.grants(args.namespace))} ACLs ({created} created, {deleted} removed) "
        f"in {time.monotonic() - t0:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
