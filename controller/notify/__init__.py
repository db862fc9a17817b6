"""Notifications: decisions POSTed to the rollouts' webhooks."""
