"""SMART App Launch / Backend Services for EHR integrations: system clients, scopes, the
client-credentials grant and ``/fhir/.well-known/smart-configuration``."""
