"""Notifications: tells caseworkers and focal points what to do, by SMS and email,
once, in their language, without a child's personal data."""
