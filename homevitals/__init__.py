"""HomeVitals operations layer: settings, the local services and the ``homevitals`` CLI.

It sits on top of every component package and nothing imports it back.
"""

__version__ = "0.1.0"

# The public modules; other packages import these (tests/test_layers.py checks the
# direction).  Submodules load on first use, so importing the package stays cheap.
__all__ = [
    "cli",
    "cli_analytics",
    "cli_api",
    "cli_decode",
    "cli_ingest",
    "cli_services",
    "cli_simulate",
    "config",
    "demo",
    "redecode",
    "services",
]
