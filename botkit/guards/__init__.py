"""The client-side guardrails: pure or nearly so, testable without a network."""
