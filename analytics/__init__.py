"""Clinical analytics: glucose and blood-pressure metrics, trends, targets and review rules."""
