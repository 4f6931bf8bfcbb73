"""Pure rules of evaluation: local codes, normative values, deficits (no FastAPI, SQL, Kafka or HTTP)."""
