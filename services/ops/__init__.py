"""The operations service: pipeline health, consumer lag, dead letters with redrive
and discard (audited), referral health; JSON API, command line and web console."""
