"""FHIR R4 facade: CapabilityStatement, Patient, Device, Observation, Flag (read/search)."""
