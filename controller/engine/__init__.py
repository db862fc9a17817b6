"""The engine: per-agent state (window, analysis, policy), summaries in and decisions out, shared by live and replay."""
