"""HomeVitals web API: REST (``/api/v1``), FHIR R4 (``/fhir``) and the clinician/patient
dashboard (``/dashboard``).  Entry point: :func:`api.main.create_app`."""

# The public modules; other packages import these (tests/test_layers.py checks the
# direction).  Submodules load on first use, so importing the package stays cheap.
__all__ = [
    "bootstrap",
    "core",
    "dashboard",
    "deps",
    "fhir",
    "main",
    "routes",
    "schemas",
    "smart",
]
