"""Follow-up service: durable deadlines, escalation, follow-up checks, closed-loop reports."""
