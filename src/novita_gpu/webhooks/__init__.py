"""Webhook delivery: SSRF guard, Standard Webhooks signing, the HTTP sender and the outbox worker."""
