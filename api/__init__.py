"""HomeVitals web API: REST (``/api/v1``), FHIR R4 (``/fhir``) and the clinician/patient
dashboard (``/dashboard``).  Entry point: :func:`api.main.create_app`."""
