"""How a rollout changes traffic: embedded inference weights, a KServe InferenceService, or a GitOps repository."""
