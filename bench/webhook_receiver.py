"""A partner's webhook receiver for `make bench` (its own process, as a partner's
system would be): answers 204 at once, and keeps, per delivery, its webhook-id and
how long after the event's time it arrived. GET /stats gives the counts; GET
/latencies the latencies in seconds (the bench reads them at the end).

    python -m bench.webhook_receiver --port 8095
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime

import orjson
from aiohttp import web


class Receiver:
    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.count = 0
        self.latencies: list[float] = []

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        arrived = time.time()
        self.count += 1
        self.ids.add(request.headers.get("webhook-id", ""))
        sent = datetime.fromisoformat(orjson.loads(body)["time"]).timestamp()
        self.latencies.append(arrived - sent)
        return web.Response(status=204)

    async def stats(self, _: web.Request) -> web.Response:
        return web.json_response({"count": self.count, "distinct": len(self.ids)})

    async def latencies_of(self, _: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.latencies), content_type="application/json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hooks", receiver.hook)
    app.router.add_get("/stats", receiver.stats)
    app.router.add_get("/latencies", receiver.latencies_of)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
