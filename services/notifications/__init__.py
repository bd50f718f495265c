"""Notifications: tells caseworkers and focal points what to do, by SMS and email,
once, in their language, without a child's personal data.

Rooms: `domain/` (pure rules: recipients, timing, SMS text, message content),
`commands` (use cases), `store/` (SQL), `handlers` (events -> commands), `api`
(HTTP -> commands), `app` (wiring, settings). Sending is apart: `worker` (claim
loop), `sending` (one attempt), `outcomes` (recording outcomes and their events),
`contacts` (who a recipient is at send time), `rendering` (Jinja templates),
`channels/` (SMTP, Twilio). `contact_directory` keeps the replica of referral's
contact directory, the only source of contact points."""
