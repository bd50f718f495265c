"""Notification rules, without I/O, one concern per module:

- `recipients`: the contact book (contact points by agency and service), who must be
  told about which event, and which events are urgent;
- `timing`: quiet hours in the recipient's time zone and the provider's rate limit;
- `sms_text`: the GSM-7 alphabet, SMS segments and the two-segment limit;
- `messages`: what a message may say (labels, local dates, links), in es or en;
- `status_reports`: a delivery's statuses, and what an SMS provider's status report
  does to a sent SMS.

Rendering the Jinja2 templates (files on disk) is `services.notifications.rendering`.
"""
