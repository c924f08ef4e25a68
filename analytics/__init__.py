"""Clinical analytics: glucose and blood-pressure metrics, trends, targets and review rules."""

# The public modules; other packages import these (tests/test_layers.py checks the
# direction).  Submodules load on first use, so importing the package stays cheap.
__all__ = [
    "flags",
    "metrics",
    "rules",
    "runner",
    "store",
    "summary",
    "targets",
]
