"""FHIR R4 plumbing: resource declarations, a versioned store with search indexes, REST routes.

The public surface for services: import what a service needs from this package
(``from relearn.shared.fhir import FhirStore, NotFound, ResourceDefinition``); the submodules are the
implementation and may change. Names are resolved on first use, so importing a submodule (as the rest
of ``relearn.shared`` does) never imports the whole package.

Where each thing lives:
    definition.py     ResourceDefinition: what a service declares per resource type
    canonical.py      CANONICAL_URL: the base of Relearn's own CodeSystems, extensions, identifier systems
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
    routes.py         TypeApi: the REST interactions of one type
    transaction.py    BundleApi: batch and transaction Bundles (builds on routes.py)
    router.py         fhir_router(): both as one FastAPI router
    capability.py     capability_statement()
    handlers.py       install_error_handlers(): every error as an OperationOutcome
    publishing.py     publish_shipped(): a service's shipped CodeSystems into its store at startup
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from relearn.shared.lazy import lazy_exports

if TYPE_CHECKING:
    from relearn.shared.fhir import jsontext as jsontext
    from relearn.shared.fhir.bundle import INCLUDED_ELSEWHERE as INCLUDED_ELSEWHERE
    from relearn.shared.fhir.canonical import CANONICAL_URL as CANONICAL_URL
    from relearn.shared.fhir.canonical import code_system as code_system
    from relearn.shared.fhir.canonical import identifier_system as identifier_system
    from relearn.shared.fhir.canonical import structure_definition as structure_definition
    from relearn.shared.fhir.capability import capability_statement as capability_statement
    from relearn.shared.fhir.dates import as_utc as as_utc
    from relearn.shared.fhir.dates import format_instant as format_instant
    from relearn.shared.fhir.definition import PUBLISHED_INTERACTIONS as PUBLISHED_INTERACTIONS
    from relearn.shared.fhir.definition import Interaction as Interaction
    from relearn.shared.fhir.definition import ResourceDefinition as ResourceDefinition
    from relearn.shared.fhir.definition import Validator as Validator
    from relearn.shared.fhir.definition import published_code_systems as published_code_systems
    from relearn.shared.fhir.errors import BUSINESS_RULE as BUSINESS_RULE
    from relearn.shared.fhir.errors import Conflict as Conflict
    from relearn.shared.fhir.errors import FhirError as FhirError
    from relearn.shared.fhir.errors import Forbidden as Forbidden
    from relearn.shared.fhir.errors import Gone as Gone
    from relearn.shared.fhir.errors import InvalidRequest as InvalidRequest
    from relearn.shared.fhir.errors import InvalidResource as InvalidResource
    from relearn.shared.fhir.errors import Issue as Issue
    from relearn.shared.fhir.errors import MethodNotAllowed as MethodNotAllowed
    from relearn.shared.fhir.errors import NotAcceptable as NotAcceptable
    from relearn.shared.fhir.errors import NotFound as NotFound
    from relearn.shared.fhir.errors import PreconditionFailed as PreconditionFailed
    from relearn.shared.fhir.errors import Unauthorized as Unauthorized
    from relearn.shared.fhir.errors import UnprocessableEntity as UnprocessableEntity
    from relearn.shared.fhir.errors import UnsupportedMediaType as UnsupportedMediaType
    from relearn.shared.fhir.errors import field_path as field_path
    from relearn.shared.fhir.errors import informational_outcome as informational_outcome
    from relearn.shared.fhir.errors import invalid_request as invalid_request
    from relearn.shared.fhir.errors import operation_outcome as operation_outcome
    from relearn.shared.fhir.errors import validation_issues as validation_issues
    from relearn.shared.fhir.handlers import install_error_handlers as install_error_handlers
    from relearn.shared.fhir.http import check_body_type as check_body_type
    from relearn.shared.fhir.http import check_response_format as check_response_format
    from relearn.shared.fhir.paging import page_links as page_links
    from relearn.shared.fhir.publishing import publish_shipped as publish_shipped
    from relearn.shared.fhir.r4_search import OBSERVATION_PARAMS as OBSERVATION_PARAMS
    from relearn.shared.fhir.r4_search import PATIENT_PARAMS as PATIENT_PARAMS
    from relearn.shared.fhir.records import HistoryResult as HistoryResult
    from relearn.shared.fhir.records import ResourceChange as ResourceChange
    from relearn.shared.fhir.records import SearchResult as SearchResult
    from relearn.shared.fhir.records import StoredResource as StoredResource
    from relearn.shared.fhir.records import WriteHook as WriteHook
    from relearn.shared.fhir.response import FHIR_JSON as FHIR_JSON
    from relearn.shared.fhir.response import FhirResponse as FhirResponse
    from relearn.shared.fhir.response import RawJson as RawJson
    from relearn.shared.fhir.router import fhir_router as fhir_router
    from relearn.shared.fhir.search_params import SearchParam as SearchParam
    from relearn.shared.fhir.search_params import date as date
    from relearn.shared.fhir.search_params import number as number
    from relearn.shared.fhir.search_params import quantity as quantity
    from relearn.shared.fhir.search_params import reference as reference
    from relearn.shared.fhir.search_params import string as string
    from relearn.shared.fhir.search_params import token as token
    from relearn.shared.fhir.search_parse import DEFAULT_COUNT as DEFAULT_COUNT
    from relearn.shared.fhir.search_parse import MAX_COUNT as MAX_COUNT
    from relearn.shared.fhir.search_parse import OFFSET_PARAM as OFFSET_PARAM
    from relearn.shared.fhir.store import FhirStore as FhirStore
    from relearn.shared.fhir.tables import FhirResource as FhirResource
    from relearn.shared.fhir.transaction import BundleRequest as BundleRequest
    from relearn.shared.fhir.transaction import error_entry as error_entry
    from relearn.shared.fhir.transaction import parse_bundle as parse_bundle
    from relearn.shared.fhir.transaction import response_bundle as response_bundle
    from relearn.shared.fhir.transaction import status_line as status_line
    from relearn.shared.fhir.validation import ID_PATTERN as ID_PATTERN

# name -> the submodule that defines it (imported on first use, so importing a submodule of this
# package never pulls in the rest: no import cycles through this module).
_EXPORTS: dict[str, str] = {
    "CANONICAL_URL": "canonical",
    "code_system": "canonical",
    "identifier_system": "canonical",
    "structure_definition": "canonical",
    "Interaction": "definition",
    "ResourceDefinition": "definition",
    "published_code_systems": "definition",
    "OBSERVATION_PARAMS": "r4_search",
    "PATIENT_PARAMS": "r4_search",
    "SearchParam": "search_params",
    "token": "search_params",
    "reference": "search_params",
    "date": "search_params",
    "string": "search_params",
    "number": "search_params",
    "quantity": "search_params",
    "FhirStore": "store",
    "StoredResource": "records",
    "ResourceChange": "records",
    "WriteHook": "records",
    "SearchResult": "records",
    "HistoryResult": "records",
    "Issue": "errors",
    "FhirError": "errors",
    "BUSINESS_RULE": "errors",
    "invalid_request": "errors",
    "InvalidResource": "errors",
    "InvalidRequest": "errors",
    "Unauthorized": "errors",
    "Forbidden": "errors",
    "NotFound": "errors",
    "Gone": "errors",
    "MethodNotAllowed": "errors",
    "NotAcceptable": "errors",
    "UnsupportedMediaType": "errors",
    "Conflict": "errors",
    "PreconditionFailed": "errors",
    "UnprocessableEntity": "errors",
    "operation_outcome": "errors",
    "informational_outcome": "errors",
    "field_path": "errors",
    "validation_issues": "errors",
    "FHIR_JSON": "response",
    "FhirResponse": "response",
    "RawJson": "response",
    "check_body_type": "http",
    "check_response_format": "http",
    "page_links": "paging",
    "INCLUDED_ELSEWHERE": "bundle",
    "DEFAULT_COUNT": "search_parse",
    "MAX_COUNT": "search_parse",
    "OFFSET_PARAM": "search_parse",
    "ID_PATTERN": "validation",
    "capability_statement": "capability",
    "as_utc": "dates",
    "format_instant": "dates",
    "PUBLISHED_INTERACTIONS": "definition",
    "Validator": "definition",
    "fhir_router": "router",
    "FhirResource": "tables",
    "BundleRequest": "transaction",
    "error_entry": "transaction",
    "parse_bundle": "transaction",
    "response_bundle": "transaction",
    "status_line": "transaction",
    "publish_shipped": "publishing",
    "install_error_handlers": "handlers",
    "jsontext": "jsontext",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
