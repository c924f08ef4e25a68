"""HomeVitals operations layer: settings, the local services and the ``homevitals`` CLI.

It sits on top of every component package and nothing imports it back.
"""

__version__ = "0.1.0"
