"""The movement-pattern catalogue (a reviewed, versioned data file) and its local FHIR CodeSystems."""

from relearn.plan.domain.catalogue.loader import (
    CATALOGUE_FILE,
    Catalogue,
    CatalogueError,
    load_catalogue,
    parse_catalogue,
)

__all__ = ["CATALOGUE_FILE", "Catalogue", "CatalogueError", "load_catalogue", "parse_catalogue"]
