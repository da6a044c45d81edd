"""botkit: trading bots on perpetual futures with client-side risk guardrails."""

__version__ = "0.1.0"
