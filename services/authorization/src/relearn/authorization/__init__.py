"""Relearn authorization server: SMART on FHIR Backend Services, App Launch and device clients."""
