"""FHIR R4 plumbing: resource declarations, a versioned store with search indexes, REST routes.

Where each thing lives:
    definition.py     ResourceDefinition: what a service declares per resource type
    search_params.py  token()/reference()/date()/string()/number()/quantity() declarations
    r4_search.py      ready-made R4 search parameters (Observation, Patient)
    validation.py     R4B model + required code bindings + the definition's validators
    jsontext.py       JSON with exact decimals (parse, dump, embed stored text)
    tables.py         fhir_resource, fhir_resource_version, fhir_search_* tables
    indexing.py       resource -> search index rows
    search_parse.py   query parameters -> typed criteria (strict/lenient handling)
    search_sql.py     criteria -> SQL over the index tables
    store.py          FhirStore: create/read/vread/update/delete/history/search, write hooks
    records.py        StoredResource, ResourceChange, SearchResult, HistoryResult
    includes.py       _include / _revinclude lookups
    paging.py, bundle.py   searchset/history Bundles and their links
    http.py           media types, Prefer, If-Match, response headers
    routes.py         fhir_router(): the REST interactions as a FastAPI router
    capability.py     capability_statement()
    handlers.py       install_error_handlers(): every error as an OperationOutcome
    publishing.py     publish_shipped(): a service's shipped CodeSystems into its store at startup

Import from the submodules; this package imports nothing so that ``errors`` stays importable
from anywhere.
"""
