"""Follow-up's SQL, one module per table family. Every function takes the caller's
connection, so the caller owns the transaction.

- `projections`: the referrals and cases follow-up keeps from the topics;
- `timers`: deadlines, periodic reviews and follow-up timers, and their claiming;
- `followups`: the follow-up checks caseworkers complete;
- `reports`: the referral facts the closed-loop report is computed from;
- `erasures`: erased cases, and the end of what ran for them.
"""

from services.followup.store import erasures, followups, projections, reports, timers

__all__ = ["erasures", "followups", "projections", "reports", "timers"]
