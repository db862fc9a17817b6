"""The HTTP server: metrics, health, the admin API, and the verdict endpoints for Argo Rollouts and Flagger."""
