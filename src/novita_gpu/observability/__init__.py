"""Logs, metrics and health: what the service tells its operators about itself."""
