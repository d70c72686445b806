"""Job runners: where a job runs (a local process, or a Kubernetes Job) and how the service follows it."""
