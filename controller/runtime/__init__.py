"""The Kafka runtime: every module that imports aiokafka (clients, ingest, state, DLQ, verdicts, actuator loop)."""
