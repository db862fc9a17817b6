"""Actuators: the backend protocol decisions are carried out through, in memory and on Kubernetes."""
