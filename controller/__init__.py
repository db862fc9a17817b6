"""vigil's controller: everything that does I/O (Kafka, Kubernetes, HTTP, the command line)."""

__version__ = "0.1.0"
